/**
 * The Lambda function's entry (lambda/handler.ts `handler`), invoked once as the runtime invokes
 * it, configured by the environment as in Lambda. `npm run bench:cli` bundles this file the way
 * the function is bundled (infra/constructs/backup-function.ts handlerBundling) and runs it with
 * plain node, to compare the CLI's host-mode backup with the function doing the same backup.
 */
import { handler } from '../lambda/handler.ts';

const t0 = Date.now();
const result = await handler({}, { awsRequestId: 'bench-cli', getRemainingTimeInMillis: () => 900_000 - (Date.now() - t0) });
process.stdout.write(`${JSON.stringify(result)}\n`);
