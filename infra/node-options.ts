/**
 * Options node runs with wherever pg-s3-backup runs: both functions and both Fargate tasks
 * (NODE_OPTIONS below; on Lambda with the exec wrapper below), the CLI (its launcher's first line,
 * bin/pg-s3-backup.mjs), the host script (scripts/backup.sh) and the container image when run by
 * hand (infra/container/Dockerfile); test/infra/node-options.test.ts holds them to this one value.
 * The bench runs the engine with it.
 *
 * `--max-semi-space-size=1` (MiB; node 24's default grows it to 16): a restore streams S3's
 * body as TLS records of 16 KiB, each a new buffer, and with a large young generation V8 kept
 * promoting them and running full mark-compacts. With it, on the bench's 1 GB sharded restore
 * (406 MiB streamed), the engine's node spent 36 % less CPU (2.85 → 1.82 CPU-s) and peaked 48 MiB
 * lower (166 → 118 MiB); a dump's CPU was unchanged (1.8–1.9 CPU-s, ±5 %). docs/performance.md
 * ("node's young generation") has the runs. It cannot be set once node runs (v8.setFlagsFromString
 * does not resize the heap), hence the launchers.
 */
export const NODE_HEAP_OPTIONS = '--max-semi-space-size=1';

/** NODE_OPTIONS of the functions and the Fargate tasks: their stack traces point into the TypeScript sources. */
export const RUNNER_NODE_OPTIONS = `--enable-source-maps ${NODE_HEAP_OPTIONS}`;

/**
 * Lambda's Node.js runtime puts a young-generation size of its own on node's command line (a
 * twentieth of the function's memory), which wins over NODE_OPTIONS: both functions run node
 * through this script (AWS_LAMBDA_EXEC_WRAPPER; infra/lambda-exec-wrapper.sh, shipped beside the
 * handler), which leaves that option out so that RUNNER_NODE_OPTIONS decides.
 */
export const LAMBDA_EXEC_WRAPPER_FILE = 'node-exec-wrapper.sh';
/** Where Lambda unpacks a function's code (LAMBDA_TASK_ROOT). */
export const LAMBDA_TASK_ROOT = '/var/task';
