/**
 * `pg-s3-backup prune`: the engine's retention step, by hand (keep the newest RETENTION_COUNT per
 * database, and the GFS rules' daily/weekly/monthly backups; nothing under Object Lock is deleted).
 */
import type { Command } from 'commander';
import { pruneDatabase, pruneGlobals, type PruneResult } from '../engine/backup/retention.ts';
import type { StaleUploadsResult } from '../engine/store/stale-uploads.ts';
import type { CliContext } from './context.ts';
import { databaseLabel } from './events.ts';
import { collect } from './options.ts';

interface PruneOpts {
  readonly database?: string[];
  readonly dryRun?: boolean;
}

export function registerPrune(program: Command, ctx: CliContext): void {
  program
    .command('prune')
    .description('delete complete backups kept by no retention rule (RETENTION_COUNT, RETENTION_DAILY/WEEKLY/MONTHLY) per database, and day-old incomplete leftovers; never one under Object Lock')
    .option('--database <name>', 'only this database (repeatable; default: every database in the bucket, and the globals files)', collect)
    .option('--dry-run', 'only report what would be deleted')
    .action(async (opts: PruneOpts) => {
      const config = ctx.cfg({ needsCredentials: false });
      const store = ctx.store();
      const databases = opts.database ?? (await store.listDatabases());
      const results: PruneResult[] = [];
      for (const database of databases) {
        results.push(await pruneDatabase(store, database, { retentionCount: config.retentionCount, gfs: config.gfs, now: new Date(ctx.now()), dryRun: opts.dryRun, events: ctx.events }));
      }
      // The globals files (BACKUP_GLOBALS) follow the same retention as run applies to them.
      if (!opts.database) {
        const globals = await pruneGlobals(store, { retentionCount: config.retentionCount, gfs: config.gfs, now: new Date(ctx.now()), dryRun: opts.dryRun, events: ctx.events });
        if (globals.kept.length + globals.deleted.length > 0) results.push(globals);
      }
      // Multipart uploads nobody will complete (an abort that failed, a killed process): the whole
      // prefix, whatever the databases asked for, since their keys are not backups of anyone.
      const uploads = await store.sweepStaleUploads({ minAgeMs: config.staleUploadAgeMs, dryRun: opts.dryRun, events: ctx.events });
      const summary = { retentionCount: config.retentionCount, gfs: config.gfs, dryRun: opts.dryRun === true, databases: results, staleUploads: uploads };
      ctx.out.result(summary, describePrune(summary));
    });
}

function describePrune(s: { retentionCount: number; gfs: { daily: number; weekly: number; monthly: number; timeZone: string }; dryRun: boolean; databases: readonly PruneResult[]; staleUploads: StaleUploadsResult }): string {
  const uploads = s.staleUploads.aborted.length === 0
    ? []
    : [`${s.dryRun ? 'would abort' : 'aborted'} ${s.staleUploads.aborted.length} stale multipart upload(s):`, ...s.staleUploads.aborted.map((u) => `  ${u.key} (upload id ${u.uploadId}, started ${u.initiated})`)];
  if (s.databases.length === 0) return ['no backups found: nothing to prune', ...uploads].join('\n');
  const verb = s.dryRun ? 'would delete' : 'deleted';
  const rules = [`RETENTION_COUNT=${s.retentionCount}`, ...(s.gfs.daily + s.gfs.weekly + s.gfs.monthly > 0 ? [`daily ${s.gfs.daily}, weekly ${s.gfs.weekly}, monthly ${s.gfs.monthly} in ${s.gfs.timeZone}`] : [])].join('; ');
  return [
    ...s.databases.map((r) =>
      [
        `${databaseLabel(r.database)}: kept ${r.kept.length} (${rules}), ${verb} ${r.deleted.length} object(s)`,
        ...r.deleted.map((k) => `  ${k}`),
        ...r.locked.map((l) => `  left in place, under Object Lock${l.retainUntil ? ` until ${l.retainUntil}` : ''}${l.legalHold ? ' (legal hold)' : ''}: ${l.key}`),
        ...r.unreadable.map((k) => `  left in place, not counted (unreadable manifest): ${k}`),
      ].join('\n'),
    ),
    ...uploads,
  ].join('\n');
}
