/**
 * Retention: a pure choice (what to delete from one database's listing) and the prune step
 * that applies it. Only complete backups whose manifest is readable count towards
 * RETENTION_COUNT; orphan dumps and stray manifests go once they are older than a day (younger
 * ones may belong to a run still finishing). Order and ages are S3's clock, never this host's.
 */
import { databasePrefix, GLOBALS_FOLDER, isGlobalsKey } from '../store/backup-key.ts';
import { PruneError, UnreadableManifestError } from '../errors.ts';
import type { Log } from '../observability.ts';
import { deleteKeys, listBackups, listObjects, readManifest, type DatabaseListing, type S3Store, type StoredObject } from '../store/s3-store.ts';

export const ORPHAN_MIN_AGE_MS = 24 * 60 * 60 * 1000;

export interface RetentionOptions {
  readonly retentionCount: number;
  /**
   * This host's clock, used only when the listing carries no S3 time (`listing.serverTime`): ages
   * compare S3's LastModified with S3's clock, so a host whose clock is wrong cannot age objects.
   */
  readonly now: Date;
  readonly orphanMinAgeMs?: number;
  /**
   * Dump keys whose manifest is unreadable (not JSON, unknown formatVersion, describes another
   * object): never counted towards the retention count, and never deleted while they are newer
   * than the oldest backup kept — a newer pg-s3-backup may have written them.
   */
  readonly unreadable?: ReadonlySet<string>;
  /** Dump keys that are never deleted, whatever their rank: the backups this run just wrote. */
  readonly protect?: ReadonlySet<string>;
}

export interface RetentionPlan {
  readonly database: string;
  /** Dump keys of the complete, readable backups kept, newest first (protected ones included). */
  readonly kept: readonly string[];
  /** Dump keys of backups with an unreadable manifest that are left in place (not counted). */
  readonly unreadable: readonly string[];
  /** Every key to delete: old dumps with their manifests, old orphans and stray manifests. */
  readonly delete: readonly string[];
}

export function planRetention(listing: DatabaseListing, options: RetentionOptions): RetentionPlan {
  if (!Number.isInteger(options.retentionCount) || options.retentionCount < 1) {
    throw new PruneError(`retention count must be a whole number of at least 1, got ${options.retentionCount}`);
  }
  const minAge = options.orphanMinAgeMs ?? ORPHAN_MIN_AGE_MS;
  const unreadable = options.unreadable ?? new Set<string>();
  const protect = options.protect ?? new Set<string>();
  const kept: string[] = [];
  const leftUnreadable: string[] = [];
  const expired: (typeof listing.complete)[number][] = [];
  let counted = 0;
  for (const b of listing.complete) {
    if (counted < options.retentionCount) {
      if (unreadable.has(b.key)) {
        leftUnreadable.push(b.key);
      } else {
        kept.push(b.key);
        counted++;
      }
    } else if (protect.has(b.key)) {
      kept.push(b.key);
    } else {
      // Past the newest N readable backups: expired whether its manifest reads or not.
      expired.push(b);
    }
  }
  const now = (listing.serverTime ?? options.now).getTime();
  const old = (o: StoredObject) => o.lastModified !== undefined && now - o.lastModified.getTime() >= minAge && !protect.has(o.key);
  const keys = [
    ...expired.flatMap((b) => [b.key, b.manifestKey]),
    ...listing.orphans.filter(old).map((o) => o.key),
    ...listing.strayManifests.filter(old).map((o) => o.key),
  ];
  return { database: listing.database, kept, unreadable: leftUnreadable, delete: keys };
}

export interface PruneResult {
  readonly database: string;
  readonly kept: readonly string[];
  /** Backups left in place because their manifest is unreadable (not counted as kept). */
  readonly unreadable: readonly string[];
  /** Deleted keys, or with `dryRun` the keys that would be deleted. */
  readonly deleted: readonly string[];
  readonly dryRun: boolean;
}

/**
 * Prunes one database; never touches a key outside `<prefix><database>/`. Reads the manifests of
 * the newest backups until RETENTION_COUNT of them are readable, so that a damaged (or
 * future-format) manifest never stands in for a good backup that would then be deleted.
 */
export async function pruneDatabase(
  store: S3Store,
  database: string,
  options: Omit<RetentionOptions, 'unreadable'> & { readonly dryRun?: boolean | undefined; readonly log?: Log | undefined },
): Promise<PruneResult> {
  const listing = await listBackups(store, database);
  const unreadable = new Set<string>();
  let readable = 0;
  for (const b of listing.complete) {
    if (readable >= options.retentionCount) break;
    try {
      await readManifest(store, b.key);
      readable++;
    } catch (err) {
      if (!(err instanceof UnreadableManifestError)) throw err;
      unreadable.add(b.key);
      options.log?.warn('backup with an unreadable manifest: not counted by retention', { stage: 'prune', database, key: b.key, problem: err.message });
    }
  }
  const plan = planRetention(listing, { ...options, unreadable });
  const allowed = databasePrefix(store.prefix, database);
  const outside = plan.delete.find((k) => !k.startsWith(allowed));
  if (outside !== undefined) throw new PruneError(`refusing to prune ${outside}: it is outside ${allowed}`);
  const dryRun = options.dryRun ?? false;
  const deleted = dryRun || plan.delete.length === 0 ? [...plan.delete] : await deleteKeys(store, database, plan.delete);
  options.log?.info(dryRun ? 'prune (dry run): would delete' : 'pruned', {
    stage: 'prune',
    database,
    kept: plan.kept.length,
    unreadable: plan.unreadable.length,
    deleted: deleted.length,
    keys: deleted,
  });
  return { database, kept: plan.kept, unreadable: plan.unreadable, deleted, dryRun };
}

/**
 * Keeps the newest `retentionCount` globals files (`<prefix>_globals/`, BACKUP_GLOBALS) by S3's
 * clock (the key's time is the host's), and never the one this run wrote (`protect`): the run
 * prunes them after a globals backup, `pg-s3-backup prune` always does. Reported under the
 * database name `_globals`.
 */
export async function pruneGlobals(
  store: S3Store,
  options: { readonly retentionCount: number; readonly dryRun?: boolean | undefined; readonly log?: Log | undefined; readonly protect?: ReadonlySet<string> },
): Promise<PruneResult> {
  const files: { key: string; at: number }[] = [];
  for await (const o of listObjects(store, `${store.prefix}${GLOBALS_FOLDER}/`)) {
    if (isGlobalsKey(store.prefix, o.key)) files.push({ key: o.key, at: o.lastModified?.getTime() ?? 0 });
  }
  const newestFirst = files.sort((a, b) => b.at - a.at || (a.key < b.key ? 1 : a.key > b.key ? -1 : 0)).map((f) => f.key);
  const protect = options.protect ?? new Set<string>();
  const kept = [...newestFirst.slice(0, options.retentionCount), ...newestFirst.slice(options.retentionCount).filter((k) => protect.has(k))];
  const old = newestFirst.slice(options.retentionCount).filter((k) => !protect.has(k));
  const dryRun = options.dryRun ?? false;
  // `_globals` is a folder name like a database's: deleteKeys checks every key stays inside it.
  const deleted = dryRun || old.length === 0 ? old : await deleteKeys(store, GLOBALS_FOLDER, old);
  options.log?.info(dryRun ? 'prune (dry run): would delete' : 'pruned', { stage: 'prune', database: GLOBALS_FOLDER, kept: kept.length, deleted: deleted.length, keys: deleted });
  return { database: GLOBALS_FOLDER, kept, unreadable: [], deleted, dryRun };
}
