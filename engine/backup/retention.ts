/**
 * Retention: a pure choice (what to delete from one database's listing) and the prune step
 * that applies it. Only complete backups count towards RETENTION_COUNT; orphan dumps and stray
 * manifests go once they are older than a day (younger ones may belong to a run still finishing).
 */
import { databasePrefix, GLOBALS_FOLDER, isGlobalsKey } from '../store/backup-key.ts';
import { PruneError } from '../errors.ts';
import type { Log } from '../observability.ts';
import { deleteKeys, listBackups, listObjects, type DatabaseListing, type S3Store, type StoredObject } from '../store/s3-store.ts';

export const ORPHAN_MIN_AGE_MS = 24 * 60 * 60 * 1000;

export interface RetentionPlan {
  readonly database: string;
  /** Dump keys of the complete backups kept, newest first. */
  readonly kept: readonly string[];
  /** Every key to delete: old dumps with their manifests, old orphans and stray manifests. */
  readonly delete: readonly string[];
}

export function planRetention(listing: DatabaseListing, options: { readonly retentionCount: number; readonly now: Date; readonly orphanMinAgeMs?: number }): RetentionPlan {
  if (!Number.isInteger(options.retentionCount) || options.retentionCount < 1) {
    throw new PruneError(`retention count must be a whole number of at least 1, got ${options.retentionCount}`);
  }
  const minAge = options.orphanMinAgeMs ?? ORPHAN_MIN_AGE_MS;
  const kept = listing.complete.slice(0, options.retentionCount);
  const expired = listing.complete.slice(options.retentionCount);
  const old = (o: StoredObject) => o.lastModified !== undefined && options.now.getTime() - o.lastModified.getTime() >= minAge;
  const keys = [
    ...expired.flatMap((b) => [b.key, b.manifestKey]),
    ...listing.orphans.filter(old).map((o) => o.key),
    ...listing.strayManifests.filter(old).map((o) => o.key),
  ];
  return { database: listing.database, kept: kept.map((b) => b.key), delete: keys };
}

export interface PruneResult {
  readonly database: string;
  readonly kept: readonly string[];
  /** Deleted keys, or with `dryRun` the keys that would be deleted. */
  readonly deleted: readonly string[];
  readonly dryRun: boolean;
}

/** Prunes one database; never touches a key outside `<prefix><database>/`. */
export async function pruneDatabase(
  store: S3Store,
  database: string,
  options: { readonly retentionCount: number; readonly now: Date; readonly dryRun?: boolean | undefined; readonly log?: Log; readonly orphanMinAgeMs?: number },
): Promise<PruneResult> {
  const listing = await listBackups(store, database);
  const plan = planRetention(listing, options);
  const allowed = databasePrefix(store.prefix, database);
  const outside = plan.delete.find((k) => !k.startsWith(allowed));
  if (outside !== undefined) throw new PruneError(`refusing to prune ${outside}: it is outside ${allowed}`);
  const dryRun = options.dryRun ?? false;
  const deleted = dryRun || plan.delete.length === 0 ? [...plan.delete] : await deleteKeys(store, database, plan.delete);
  options.log?.info(dryRun ? 'prune (dry run): would delete' : 'pruned', {
    stage: 'prune',
    database,
    kept: plan.kept.length,
    deleted: deleted.length,
    keys: deleted,
  });
  return { database, kept: plan.kept, deleted, dryRun };
}

/**
 * Keeps the newest `retentionCount` globals files (`<prefix>_globals/`, BACKUP_GLOBALS): the run
 * prunes them after a globals backup, `pg-s3-backup prune` always does. Reported under the
 * database name `_globals`.
 */
export async function pruneGlobals(
  store: S3Store,
  options: { readonly retentionCount: number; readonly dryRun?: boolean | undefined; readonly log?: Log },
): Promise<PruneResult> {
  const keys: string[] = [];
  for await (const o of listObjects(store, `${store.prefix}${GLOBALS_FOLDER}/`)) if (isGlobalsKey(store.prefix, o.key)) keys.push(o.key);
  // Their keys embed the UTC time: key order is time order.
  const newestFirst = keys.sort().reverse();
  const kept = newestFirst.slice(0, options.retentionCount);
  const old = newestFirst.slice(options.retentionCount);
  const dryRun = options.dryRun ?? false;
  // `_globals` is a folder name like a database's: deleteKeys checks every key stays inside it.
  const deleted = dryRun || old.length === 0 ? old : await deleteKeys(store, GLOBALS_FOLDER, old);
  options.log?.info(dryRun ? 'prune (dry run): would delete' : 'pruned', { stage: 'prune', database: GLOBALS_FOLDER, kept: kept.length, deleted: deleted.length, keys: deleted });
  return { database: GLOBALS_FOLDER, kept, deleted, dryRun };
}
