/** `pg-s3-backup invoke`: an on-demand backup by the deployed function (Lambda Invoke, waits for the result). */
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import type { Command } from 'commander';
import { ConnectError, UsageError } from '../engine/errors.ts';
import type { CliContext } from './context.ts';
import { collect, EXIT, ExitCode } from './options.ts';
import { describeRun } from './run-text.ts';
import type { RunResult } from '../engine/backup/backup.ts';

function isRunResult(body: unknown): body is RunResult {
  const b = body as Partial<Record<keyof RunResult, unknown>> | null;
  return typeof b === 'object' && b !== null && typeof b.status === 'string' && Array.isArray(b.backups) && Array.isArray(b.failures) && Array.isArray(b.pruned);
}

interface InvokeOpts {
  readonly function?: string;
  readonly database?: string[];
  readonly reason?: string;
  readonly dryRun?: boolean;
}

/** The on-demand event of the contract: `{ databases?, reason?, dryRun? }`. */
export function invokePayload(opts: InvokeOpts): { databases?: string[]; reason: string; dryRun?: boolean } {
  return {
    ...(opts.database && opts.database.length > 0 ? { databases: opts.database } : {}),
    reason: opts.reason ?? 'on-demand',
    ...(opts.dryRun ? { dryRun: true } : {}),
  };
}

export function registerInvoke(program: Command, ctx: CliContext): void {
  program
    .command('invoke')
    .description('ask the deployed Lambda function for a backup now and print its result (waits up to 15 minutes)')
    .option('--function <name>', 'function name or ARN (default: BACKUP_FUNCTION_NAME; stack output FunctionName)')
    .option('--database <name>', 'back up this database instead of the configured ones (repeatable)', collect)
    .option('--reason <text>', 'recorded in the manifest', 'on-demand')
    .option('--dry-run', 'the function takes the backup but only reports what pruning would delete (the event\'s dryRun; `backup --dry-run` is the one that writes nothing)')
    .action(async (opts: InvokeOpts) => {
      const functionName = opts.function ?? ctx.env.BACKUP_FUNCTION_NAME?.trim();
      if (!functionName) {
        throw new UsageError('no function to invoke', { hint: 'Pass --function NAME or set BACKUP_FUNCTION_NAME (the stack output FunctionName).' });
      }
      const payload = invokePayload(opts);
      ctx.out.progress({ event: 'invoke.started', function: functionName, payload }, { line: `invoking ${functionName} (waits for the backup, up to 15 minutes)` });
      // A backup may run for the function's whole 15 minutes: the HTTP request must outlive it,
      // and no longer (without throwOnRequestTimeout the SDK only logs a breached timeout).
      const client = ctx.lambda?.() ?? new LambdaClient({ requestHandler: { connectionTimeout: 10_000, requestTimeout: 16 * 60_000, throwOnRequestTimeout: true }, maxAttempts: 1 });
      let res;
      try {
        res = await client.send(new InvokeCommand({ FunctionName: functionName, InvocationType: 'RequestResponse', Payload: Buffer.from(JSON.stringify(payload)) }));
      } catch (err) {
        throw new ConnectError(`invoking ${functionName} failed: ${(err as Error).name}: ${(err as Error).message}`, {
          cause: err,
          hint: 'Check the function name (stack output FunctionName), AWS_REGION, and the lambda:InvokeFunction permission.',
        });
      }
      const text = res.Payload ? Buffer.from(res.Payload).toString('utf8') : '';
      let body: unknown = text;
      try {
        body = text ? JSON.parse(text) : null;
      } catch {
        // Not JSON: shown as text.
      }
      if (res.FunctionError) {
        const e = (body ?? {}) as { errorType?: string; errorMessage?: string };
        ctx.out.error({
          name: e.errorType ?? 'FunctionError',
          stage: 'invoke',
          message: `the function reported a failure: ${e.errorMessage ?? text}`,
          hint: 'The function has published an alert; its CloudWatch logs (request id in the alert) have the details.',
        });
        throw new ExitCode(EXIT.failure);
      }
      // A backup's result reads as `run`'s does; anything else (an older function's answer) as it came.
      const shown = isRunResult(body) ? describeRun(body) : JSON.stringify(body, null, 2);
      ctx.out.result({ function: functionName, statusCode: res.StatusCode, result: body }, `${functionName} answered:\n${shown}`);
    });
}
