/**
 * `pg-s3-backup backup` (alias `run`, its first name): a backup now, from where the CLI runs,
 * through the Lambda's own pipeline; with `--dry-run`, what that backup would do, writing nothing.
 */
import type { Command } from 'commander';
import { runBackup, type RunResult } from '../engine/backup/backup.ts';
import { planBackup, type BackupPlan } from '../engine/backup/plan.ts';
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

function describePlan(p: BackupPlan): string {
  const lines = [`dry run: nothing was written${p.status === 'ready' ? '' : '; the backup would FAIL'}${p.pgDumpVersion ? ` (pg_dump ${p.pgDumpVersion})` : ''}`];
  for (const b of p.backups) {
    lines.push(`  ${b.database}: server ${b.serverVersion}${b.databaseBytes === null ? '' : `, ${formatBytes(b.databaseBytes)} on disk`}\n    would write ${b.key}`);
    if (p.prune) lines.push(b.wouldPrune.length === 0 ? '    pruning would delete nothing' : `    pruning would delete ${b.wouldPrune.length} object(s):`, ...b.wouldPrune.map((k) => `      ${k}`));
    for (const l of b.locked) lines.push(`    left in place, under Object Lock: ${l.key}`);
  }
  if (p.globals) lines.push(`  globals: would write ${p.globals.key}`, ...(p.prune && p.globals.wouldPrune.length > 0 ? [`    pruning would delete ${p.globals.wouldPrune.length} object(s):`, ...p.globals.wouldPrune.map((k) => `      ${k}`)] : []));
  if (p.staleUploads.length > 0) lines.push(`  would abort ${p.staleUploads.length} stale multipart upload(s):`, ...p.staleUploads.map((k) => `    ${k}`));
  if (!p.prune) lines.push('  --no-prune: no prune step (the lifecycle rule still expires old backups)');
  for (const f of p.failures) lines.push(`  FAILED ${f.database} (${f.stage}): ${f.message}${f.hint ? `\n    what to do: ${f.hint}` : ''}`);
  return lines.join('\n');
}

function describeRun(r: RunResult): string {
  const lines = [`backup ${r.status}`];
  for (const b of r.backups) lines.push(`  ${b.database}: ${formatBytes(b.bytes)} in ${formatDuration(b.durationMs)}, sha256 ${b.sha256}\n    ${b.key}`);
  for (const f of r.failures) lines.push(`  FAILED ${f.database} (${f.stage}): ${f.message}${f.hint ? `\n    what to do: ${f.hint}` : ''}`);
  if (r.pruned.length > 0) lines.push(`  ${r.dryRun ? 'would prune' : 'pruned'} ${r.pruned.length} object(s):`, ...r.pruned.map((k) => `    ${k}`));
  return lines.join('\n');
}
