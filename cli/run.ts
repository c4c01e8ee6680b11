/**
 * `pg-s3-backup backup` (alias `run`, its first name): a backup now, from where the CLI runs,
 * through the Lambda's own pipeline; with `--dry-run`, what that backup would do, writing nothing.
 */
import type { Command } from 'commander';
import { runBackup } from '../engine/backup/backup.ts';
import { planBackup } from '../engine/backup/plan.ts';
import type { Config } from '../engine/config.ts';
import { PgS3BackupError } from '../engine/errors.ts';
import { configFailureMessage, deliverFailure } from './alert.ts';
import type { CliContext } from './context.ts';
import { collect, EXIT, ExitCode } from './options.ts';
import { describePlan, describeRun } from './run-text.ts';

interface RunOpts {
  readonly database?: string[];
  readonly reason?: string;
  readonly dryRun?: boolean;
  /** false with --no-prune. */
  readonly prune: boolean;
}

export function registerRun(program: Command, ctx: CliContext): void {
  program
    .command('backup')
    .alias('run')
    .description('take a backup now from this machine (same pipeline as the Lambda function: dump, upload, manifest, prune, alerts); `run` is another name for it')
    .option('--database <name>', 'back up this database instead of DATABASES (repeatable)', collect)
    .option('--reason <text>', 'recorded in the manifest', 'cli')
    .option('--dry-run', 'write nothing: connect, check each server against pg_dump, and report the keys it would write and what pruning would delete (no upload, no manifest, no alert, no heartbeat)')
    .option('--no-prune', 'take the backup but skip the prune step (retention and stale uploads); the bucket\'s lifecycle rule (backstopExpirationDays) still expires old backups')
    .action(async (opts: RunOpts) => {
      const startedAt = new Date();
      let config: Config;
      try {
        config = ctx.cfg({ needsCredentials: true });
      } catch (err) {
        // Nothing ran, and cron only mails output nobody reads: alert (and fail the heartbeat)
        // wherever the parts of the configuration that still parse allow. A dry run tells only
        // whoever ran it.
        if (err instanceof PgS3BackupError && !opts.dryRun) await deliverFailure(ctx, configFailureMessage(err, startedAt));
        throw err;
      }
      if (opts.dryRun) {
        const plan = await planBackup({ databases: opts.database, prune: opts.prune }, config, ctx.deps({ needsCredentials: true }), { signal: ctx.signal });
        ctx.out.result(plan, describePlan(plan));
        if (plan.status !== 'ready') throw new ExitCode(EXIT.failure);
        return;
      }
      const deps = ctx.deps({ needsCredentials: true });
      const result = await runBackup({ databases: opts.database, reason: opts.reason, prune: opts.prune }, config, deps, { signal: ctx.signal });
      // The dead-man's switch (HEARTBEAT_URL), before the result, which stays the last line of the output.
      await deps.alerts.send({ kind: 'run ended', status: result.status, summary: ctx.out.redact(describeRun(result)) });
      ctx.out.result(result, describeRun(result));
      if (result.status !== 'succeeded') throw new ExitCode(EXIT.failure);
    });
}
