#!/usr/bin/env node
// The `pg-s3-backup` command (package.json `bin`). The CLI is TypeScript run as is: tsx (a runtime
// dependency) is registered as a module loader, so `npm ci` is all it needs — no build step.
import { register } from 'tsx/esm/api';

// The SDK warns on every run that its 2027 releases will need Node 22: not something an operator
// restoring a database can act on. Set the variable to "false" to see it.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
register();
const { runFromProcess } = await import('../cli/main.ts');
await runFromProcess();
