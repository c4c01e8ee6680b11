/**
 * `pg-s3-backup`: the operators' front door to the same core as the Lambda handler.
 * Exit codes: 0 success, 1 failure, 2 usage error (commander's parse errors included).
 */
import { Command, CommanderError } from 'commander';
import { PgS3BackupError } from '../engine/errors.ts';
import { TOOL_VERSION } from '../engine/version.ts';
import { CliContext, type CliIo } from './context.ts';
import { registerAlert } from './alert.ts';
import { registerDoctor } from './doctor.ts';
import { registerInvoke } from './invoke.ts';
import { registerList } from './list.ts';
import { registerPrune } from './prune.ts';
import { registerRestore } from './restore.ts';
import { registerRun } from './run.ts';
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
  registerRestore(program, ctx);
  registerVerify(program, ctx);
  registerPrune(program, ctx);
  registerDoctor(program, ctx);
  registerAlert(program, ctx);
  return program;
}

/** Runs the CLI on `argv` (without node and script) and returns the exit code. */
export async function main(argv: readonly string[], io: CliIo): Promise<number> {
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

// Run as a program (bin/pg-s3-backup.mjs imports this module).
export async function runFromProcess(): Promise<void> {
  // `pg-s3-backup list | head`: the reader left, which is no error of ours.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    process.exit(process.exitCode ?? EXIT.ok);
  });
  const code = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env });
  process.exitCode = code;
}
