/** `pg-s3-backup run`: a backup now, from where the CLI runs, through the Lambda's own pipeline. */
import type { Command } from 'commander';
import { runBackup } from '../engine/backup/backup.ts';
import type { Config } from '../engine/config.ts';
import { PgS3BackupError } from '../engine/errors.ts';
import { pingHeartbeat } from '../engine/heartbeat.ts';
import { configFailureMessage, deliverFailure } from './alert.ts';
import type { CliContext } from './context.ts';
import { collect, EXIT, ExitCode } from './options.ts';
import { describeRun } from './run-text.ts';

interface RunOpts {
  readonly database?: string[];
  readonly reason?: string;
  readonly dryRun?: boolean;
}

export function registerRun(program: Command, ctx: CliContext): void {
  program
    .command('run')
    .description('take a backup now from this machine (same pipeline as the Lambda function: dump, upload, manifest, prune, alerts)')
    .option('--database <name>', 'back up this database instead of DATABASES (repeatable)', collect)
    .option('--reason <text>', 'recorded in the manifest', 'cli')
    .option('--dry-run', 'take the backup, but only report what pruning would delete')
    .action(async (opts: RunOpts) => {
      const startedAt = new Date();
      let config: Config;
      try {
        config = ctx.cfg({ needsCredentials: true });
      } catch (err) {
        // Nothing ran, and cron only mails output nobody reads: alert (and fail the heartbeat)
        // wherever the parts of the configuration that still parse allow.
        if (err instanceof PgS3BackupError) await deliverFailure(ctx, configFailureMessage(err, startedAt));
        throw err;
      }
      const result = await runBackup({ databases: opts.database, reason: opts.reason, dryRun: opts.dryRun }, config, ctx.deps({ needsCredentials: true }), { signal: ctx.signal });
      if (config.heartbeatUrl) {
        // Before the result, which stays the last line of the output.
        await pingHeartbeat(config.heartbeatUrl, result.status === 'succeeded' ? 'success' : 'fail', {
          timeoutMs: config.heartbeatTimeoutMs,
          events: ctx.events,
          body: ctx.out.redact(describeRun(result)),
        });
      }
      ctx.out.result(result, describeRun(result));
      if (result.status !== 'succeeded') throw new ExitCode(EXIT.failure);
    });
}
