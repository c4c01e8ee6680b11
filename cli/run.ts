/** `pg-s3-backup run`: a backup now, from where the CLI runs, through the Lambda's own pipeline. */
import type { Command } from 'commander';
import { runBackup, type RunResult } from '../engine/backup/backup.ts';
import type { Config } from '../engine/config.ts';
import { PgS3BackupError } from '../engine/errors.ts';
import { configFailureMessage, deliverFailure } from './alert.ts';
import type { CliContext } from './context.ts';
import { collect, EXIT, ExitCode } from './options.ts';
import { formatBytes, formatDuration } from './output.ts';

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
      const deps = ctx.deps({ needsCredentials: true });
      const result = await runBackup({ databases: opts.database, reason: opts.reason, dryRun: opts.dryRun }, config, deps, { signal: ctx.signal });
      // The dead-man's switch (HEARTBEAT_URL), before the result, which stays the last line of the output.
      await deps.alerts.send({ kind: 'run ended', status: result.status, summary: ctx.out.redact(describeRun(result)) });
      ctx.out.result(result, describeRun(result));
      if (result.status !== 'succeeded') throw new ExitCode(EXIT.failure);
    });
}

function describeRun(r: RunResult): string {
  const lines = [`backup ${r.status}`];
  for (const b of r.backups) lines.push(`  ${b.database}: ${formatBytes(b.bytes)} in ${formatDuration(b.durationMs)}, sha256 ${b.sha256}\n    ${b.key}`);
  for (const f of r.failures) lines.push(`  FAILED ${f.database} (${f.stage}): ${f.message}${f.hint ? `\n    what to do: ${f.hint}` : ''}`);
  if (r.pruned.length > 0) lines.push(`  ${r.dryRun ? 'would prune' : 'pruned'} ${r.pruned.length} object(s):`, ...r.pruned.map((k) => `    ${k}`));
  return lines.join('\n');
}
