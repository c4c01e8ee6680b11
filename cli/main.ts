/**
 * `pg-s3-backup`: the operators' front door to the same core as the Lambda handler.
 * Exit codes: 0 success, 1 failure, 2 usage error (commander's parse errors included).
 */
import { Command, CommanderError } from 'commander';
import { constants } from 'node:os';
import { InterruptedError, PgS3BackupError } from '../engine/errors.ts';
import { TOOL_VERSION } from '../engine/version.ts';
import { CliContext, type CliIo } from './context.ts';
import { registerAlert } from './alert.ts';
import { registerDoctor } from './doctor.ts';
import { registerInvoke } from './invoke.ts';
import { registerList } from './list.ts';
import { registerPrune } from './prune.ts';
import { registerRestore } from './restore.ts';
import { registerRun } from './run.ts';
import { registerStatus } from './status.ts';
import { EXIT, ExitCode } from './options.ts';
import { registerVerify } from './verify.ts';

export function buildProgram(ctx: CliContext): Command {
  const program = new Command('pg-s3-backup')
    .description('PostgreSQL backups in S3: back up, list, verify and restore (the same core as the Lambda function)')
    .version(TOOL_VERSION)
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText(
      'after',
      '\nConfiguration comes from the environment: BACKUP_BUCKET, BACKUP_PREFIX, RETENTION_COUNT, DB_SECRET_ID or DATABASE_URL,\n' +
        'DATABASES, PG_DUMP_BIN, S3_FORCE_PATH_STYLE, AWS_REGION, AWS_ENDPOINT_URL_S3, … (see docs/operations.md).\n' +
        'Exit codes: 0 success, 1 failure, 2 usage error.',
    );
  registerRun(program, ctx);
  registerInvoke(program, ctx);
  registerList(program, ctx);
  registerStatus(program, ctx);
  registerRestore(program, ctx);
  registerVerify(program, ctx);
  registerPrune(program, ctx);
  registerDoctor(program, ctx);
  registerAlert(program, ctx);
  return program;
}

/** 128 + the signal's number, as shells report a process a signal ended (130 for SIGINT, 143 for SIGTERM). */
export function signalExitCode(signal: NodeJS.Signals): number {
  return 128 + (constants.signals[signal] ?? 15);
}

/** Runs the CLI on `argv` (without node and script) and returns the exit code. */
export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  const code = await mainInner(argv, io);
  // An interrupted command has cleaned up (pg_dump stopped, upload aborted, temp files and scratch
  // database removed, alert sent) and says so by its exit status, whatever it ended with.
  const reason = io.signal?.aborted ? (io.signal.reason as unknown) : undefined;
  return reason instanceof InterruptedError ? signalExitCode(reason.signal) : code;
}

async function mainInner(argv: readonly string[], io: CliIo): Promise<number> {
  const ctx = new CliContext(io);
  const program = buildProgram(ctx);
  const configure = (cmd: Command) => {
    cmd.exitOverride().configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(ctx.out.redact(s)),
    });
    cmd.commands.forEach(configure);
  };
  configure(program);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return EXIT.ok;
  } catch (err) {
    if (err instanceof ExitCode) return err.code;
    if (err instanceof CommanderError) {
      // --help and --version end through here too, with exit code 0.
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    if (err instanceof PgS3BackupError) {
      ctx.out.error(err);
      return err.stage === 'usage' ? EXIT.usage : EXIT.failure;
    }
    const e = err instanceof Error ? err : new Error(String(err));
    ctx.out.error({ name: e.name, message: e.message, hint: 'This is unexpected: run again with PG_S3_BACKUP_DEBUG=1 for the stack trace, and report it.' });
    if (io.env.PG_S3_BACKUP_DEBUG) io.stderr.write(ctx.out.redact(`${e.stack ?? ''}\n`));
    return EXIT.failure;
  }
}

/** A second signal this soon after the first is the same stop delivered twice, not an operator insisting. */
const DUPLICATE_SIGNAL_MS = 2000;

/** The longest an interrupted command may spend cleaning up before it exits anyway. */
export const INTERRUPT_GRACE_MS = 60_000;

// Run as a program (bin/pg-s3-backup.mjs imports this module).
export async function runFromProcess(): Promise<void> {
  const interrupt = new AbortController();
  let forced: NodeJS.Timeout | undefined;
  let firstAt = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupt.signal.aborted) {
      // The same stop reaching us twice (systemd signals the group, backup.sh passes it on).
      if (Date.now() - firstAt < DUPLICATE_SIGNAL_MS) return;
      // A second signal: the operator insists. Children got SIGTERM with the first one.
      process.exit(signalExitCode(signal));
    }
    firstAt = Date.now();
    process.stderr.write(`pg-s3-backup: ${signal} received: stopping pg_dump, aborting the upload (another ${signal} exits at once)\n`);
    interrupt.abort(new InterruptedError(signal));
    forced = setTimeout(() => process.exit(signalExitCode(signal)), INTERRUPT_GRACE_MS);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // `pg-s3-backup list | head`: the reader left, which is no error of ours. While an interrupted
  // command cleans up (host mode's log reader may have been stopped with it) the output is lost,
  // but the clean-up must go on.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    if (!interrupt.signal.aborted) process.exit(process.exitCode ?? EXIT.ok);
  });
  process.stderr.on('error', () => {});
  const code = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env, signal: interrupt.signal });
  if (forced) clearTimeout(forced);
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  process.exitCode = code;
}
