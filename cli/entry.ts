/**
 * The bundle's entry (scripts/cli-bundle.mjs builds dist/cli/pg-s3-backup.mjs from it): what
 * bin/pg-s3-backup.mjs and the Fargate image run. Only cli/main.ts loads here; each command's
 * module, the engine and the AWS clients load when that command runs.
 */
// The SDK warns on every run that its 2027 releases will need Node 22: not something an operator
// restoring a database can act on. Set the variable to "false" to see it.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const { runFromProcess } = await import('./main.ts');
await runFromProcess();
