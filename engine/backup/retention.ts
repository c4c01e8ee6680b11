/**
 * Retention: a pure choice (what to delete from one database's listing) and the prune step
 * that applies it. Only complete backups whose manifest is readable count towards
 * RETENTION_COUNT; a backup goes with its drill report (`.verify.json`); orphan dumps and stray
 * manifests and reports go once they are older than a day (younger
 * ones may belong to a run still finishing). Backups are ordered by their own time
 * (`backupTime`: the key's, capped by S3's clock), which a copy in place cannot change; ages are
 * S3's clock, never this host's.
 */
import { databasePrefix, GLOBALS_FOLDER, globalsKeyTime } from '../store/backup-key.ts';
import { ManifestGoneError, PruneError, UnreadableManifestError } from '../errors.ts';
import type { EventSink } from '../events.ts';
import { gfsKeep, type GfsRules, type KeepReason } from './gfs.ts';
import { backupTime, newestFirst, type DatabaseListing, type ObjectLockState, type StoredBackup, type StoredObject } from '../store/s3-store.ts';
import type { BackupStore } from '../store/store.ts';

export const ORPHAN_MIN_AGE_MS = 24 * 60 * 60 * 1000;

export interface RetentionOptions {
  readonly retentionCount: number;
  /**
   * RETENTION_DAILY / _WEEKLY / _MONTHLY in RETENTION_TIME_ZONE (engine/backup/gfs.ts): a backup
   * is also kept when it is the newest of one of the newest N days, ISO weeks or months that hold
   * a readable complete backup. Absent (or all 0): RETENTION_COUNT alone.
   */
  readonly gfs?: Omit<GfsRules, 'count'> | undefined;
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
  /** Why each kept backup is kept: RETENTION_COUNT, a GFS rule, or `protected` (this run's own). */
  readonly keptBy: ReadonlyMap<string, readonly (KeepReason | 'protected')[]>;
  /** Dump keys of backups with an unreadable manifest that are left in place (not counted). */
  readonly unreadable: readonly string[];
  /** Every key to delete: old dumps with their manifests and drill reports, old orphans, stray manifests and reports. */
  readonly delete: readonly string[];
}

export function planRetention(listing: DatabaseListing, options: RetentionOptions): RetentionPlan {
  if (!Number.isInteger(options.retentionCount) || options.retentionCount < 1) {
    throw new PruneError(`retention count must be a whole number of at least 1, got ${options.retentionCount}`);
  }
  const minAge = options.orphanMinAgeMs ?? ORPHAN_MIN_AGE_MS;
  const unreadable = options.unreadable ?? new Set<string>();
  const protect = options.protect ?? new Set<string>();
  // Only readable complete backups take part in the rules: an unreadable one is never counted,
  // never a period's representative, so it can never stand in for a good backup that then goes.
  const readable = listing.complete.filter((b) => !unreadable.has(b.key));
  let keptBy: Map<string, (KeepReason | 'protected')[]>;
  try {
    keptBy = gfsKeep(
      readable.map((b) => ({ key: b.key, at: backupTime(b) })),
      { daily: 0, weekly: 0, monthly: 0, timeZone: 'UTC', ...options.gfs, count: options.retentionCount },
    );
  } catch (err) {
    throw new PruneError(`retention rules are invalid: ${(err as Error).message}`, { cause: err });
  }
  // An unreadable backup is left in place while it is newer than the oldest backup RETENTION_COUNT
  // keeps (all of them when fewer are readable): a newer pg-s3-backup may have written it.
  const countKept = readable.slice(0, options.retentionCount);
  const oldestCounted = countKept.length < options.retentionCount ? undefined : countKept[countKept.length - 1];
  const oldestCountedIndex = oldestCounted === undefined ? listing.complete.length : listing.complete.indexOf(oldestCounted);
  const kept: string[] = [];
  const leftUnreadable: string[] = [];
  const expired: (typeof listing.complete)[number][] = [];
  listing.complete.forEach((b, i) => {
    if (unreadable.has(b.key) && i < oldestCountedIndex) {
      leftUnreadable.push(b.key);
    } else if (keptBy.has(b.key)) {
      kept.push(b.key);
    } else if (protect.has(b.key)) {
      keptBy.set(b.key, ['protected']);
      kept.push(b.key);
    } else {
      // Kept by no rule: expired whether its manifest reads or not.
      expired.push(b);
    }
  });
  const now = (listing.serverTime ?? options.now).getTime();
  const old = (o: StoredObject) => o.lastModified !== undefined && now - o.lastModified.getTime() >= minAge && !protect.has(o.key);
  const keys = [
    // A backup goes with its drill report: a `.verify.json` left behind would outlive its dump.
    // A sharded backup's data archives go with it too.
    ...expired.flatMap((b) => [b.key, b.manifestKey, ...(b.drillReport ? [b.drillReport.key] : []), ...(b.parts ?? []).map((p) => p.key)]),
    ...listing.orphans.filter(old).map((o) => o.key),
    ...listing.strayManifests.filter(old).map((o) => o.key),
    ...(listing.strayReports ?? []).filter(old).map((o) => o.key),
  ];
  return { database: listing.database, kept, keptBy, unreadable: leftUnreadable, delete: keys };
}

export interface PruneResult {
  readonly database: string;
  readonly kept: readonly string[];
  /** Backups left in place because their manifest is unreadable (not counted as kept). */
  readonly unreadable: readonly string[];
  /** Deleted keys, or with `dryRun` the keys that would be deleted. */
  readonly deleted: readonly string[];
  /**
   * Backups (or leftovers) retention would delete but Object Lock protects: a retain-until date
   * still in the future (by S3's clock) or a legal hold. Left in place, reported; a later prune
   * deletes them once the lock has ended.
   */
  readonly locked: readonly LockedBackup[];
  readonly dryRun: boolean;
}

export interface LockedBackup {
  /** The dump's key (or the leftover's). */
  readonly key: string;
  /** The latest retain-until date among its objects (ISO), when a retention holds it. */
  readonly retainUntil?: string;
  readonly legalHold: boolean;
}

/** HeadObject calls in flight while checking Object Lock: a handful, so a long backlog stays quick. */
const LOCK_CHECK_CONCURRENCY = 8;

/**
 * Leaves out of `keys` every backup with an object under Object Lock at `now` (S3's clock): a
 * retain-until date after `now`, or a legal hold. A backup's objects (dump, manifest, reports
 * beside it) go or stay together, so a locked manifest never leaves its dump an orphan.
 */
export async function withoutLocked(store: BackupStore, keys: readonly string[], dumpKeys: ReadonlySet<string>, now: number): Promise<{ deletable: string[]; locked: LockedBackup[] }> {
  // Without Object Lock on the bucket no object can be locked: one call instead of one per key.
  if (keys.length === 0 || (await store.bucketHasObjectLock()) === false) return { deletable: [...keys], locked: [] };
  // Objects beside a dump are named `<dump key>.<something>.json` or `<dump key>.json`.
  const owner = (k: string) => [k.replace(/\.json$/, ''), k.replace(/\.[a-z]+\.json$/, '')].find((base) => base !== k && dumpKeys.has(base)) ?? k;
  const states = new Map<string, ObjectLockState>();
  const queue = [...keys];
  await Promise.all(
    Array.from({ length: Math.min(LOCK_CHECK_CONCURRENCY, queue.length) }, async () => {
      for (let k = queue.shift(); k !== undefined; k = queue.shift()) states.set(k, await store.objectLockState(k));
    }),
  );
  const held = new Map<string, LockedBackup>();
  for (const k of keys) {
    const s = states.get(k)!;
    const retained = s.retainUntil !== undefined && s.retainUntil.getTime() > now;
    if (!retained && !s.legalHold) continue;
    const o = owner(k);
    const before = held.get(o);
    const until = [before?.retainUntil, retained ? s.retainUntil!.toISOString() : undefined].filter((d): d is string => d !== undefined).sort().pop();
    held.set(o, { key: o, ...(until !== undefined ? { retainUntil: until } : {}), legalHold: (before?.legalHold ?? false) || s.legalHold });
  }
  return { deletable: keys.filter((k) => !held.has(owner(k))), locked: [...held.values()] };
}

/**
 * Prunes one database; never touches a key outside `<prefix><database>/`. Reads the manifest of
 * every backup the rules would keep, and plans again without the unreadable ones until all kept
 * backups read, so that a damaged (or future-format) manifest never stands in for a good backup
 * that would then be deleted. Never deletes a backup under Object Lock (skipped, reported).
 */
export async function pruneDatabase(
  store: BackupStore,
  database: string,
  options: Omit<RetentionOptions, 'unreadable'> & {
    readonly dryRun?: boolean | undefined;
    readonly events?: EventSink | undefined;
    /**
     * A backup not written yet, counted as if it were (a dry run's prediction: the backup a run
     * would take now ranks among the kept ones, so one more old backup goes). Kept, never read.
     */
    readonly incoming?: StoredBackup | undefined;
  },
): Promise<PruneResult> {
  const listed = await store.listBackups(database);
  const { incoming, ...rules } = options;
  let listing = incoming ? { ...listed, complete: [...listed.complete, incoming].map((b) => ({ b, key: b.key, at: backupTime(b) })).sort(newestFirst).map(({ b }) => b) } : listed;
  const protect = new Set([...(rules.protect ?? []), ...(incoming ? [incoming.key] : [])]);
  const unreadable = new Set<string>();
  // The incoming backup has no manifest to read yet.
  const checked = new Set<string>(incoming ? [incoming.key] : []);
  let plan = planRetention(listing, { ...rules, protect, unreadable });
  for (;;) {
    // The run's own backup is kept whatever its manifest says; every other kept one must read.
    const toCheck = plan.kept.filter((k) => !checked.has(k) && !(plan.keptBy.get(k)?.length === 1 && plan.keptBy.get(k)?.[0] === 'protected'));
    if (toCheck.length === 0) break;
    let found = false;
    for (const key of toCheck) {
      checked.add(key);
      try {
        // With the listing's size of the dump: a manifest that disagrees with its object is no backup.
        await store.readManifest(key, { bytes: listing.complete.find((b) => b.key === key)?.bytes });
      } catch (err) {
        if (err instanceof ManifestGoneError) {
          // Deleted since the listing, by a prune running at the same time (the schedule's and an
          // operator's): not a backup any more, so neither counted nor deleted again. The rules
          // run again without it; a dump it left behind is an orphan to the next prune.
          const gone = key;
          listing = { ...listing, complete: listing.complete.filter((b) => b.key !== gone) };
          found = true;
          continue;
        }
        if (!(err instanceof UnreadableManifestError)) throw err;
        unreadable.add(key);
        found = true;
        options.events?.({ event: 'prune.unreadable-manifest', stage: 'prune', database, key, problem: err.message });
      }
    }
    if (!found) break;
    plan = planRetention(listing, { ...rules, protect, unreadable });
  }
  const allowed = databasePrefix(store.prefix, database);
  const outside = plan.delete.find((k) => !k.startsWith(allowed));
  if (outside !== undefined) throw new PruneError(`refusing to prune ${outside}: it is outside ${allowed}`);
  const now = (listing.serverTime ?? options.now).getTime();
  const { deletable, locked } = await withoutLocked(store, plan.delete, new Set(listing.complete.map((b) => b.key)), now);
  if (locked.length > 0) {
    options.events?.({ event: 'prune.locked', stage: 'prune', database, locked: locked.length, keys: locked.map((l) => l.key) });
  }
  const dryRun = options.dryRun ?? false;
  const deleted = dryRun || deletable.length === 0 ? [...deletable] : await store.deleteKeys(database, deletable);
  options.events?.({
    event: dryRun ? 'prune.dry-run' : 'prune.done',
    stage: 'prune',
    database,
    kept: plan.kept.length,
    unreadable: plan.unreadable.length,
    locked: locked.length,
    deleted: deleted.length,
    keys: deleted,
  });
  return { database, kept: plan.kept, unreadable: plan.unreadable, deleted, locked, dryRun };
}

/**
 * Keeps the newest `retentionCount` globals files (`<prefix>_globals/`, BACKUP_GLOBALS) by their
 * time (`backupTime`), plus those the GFS rules keep (so a monthly database
 * backup has the roles of its month beside it), and never the one this run wrote (`protect`) or
 * one under Object Lock: the run prunes them after a globals backup, `pg-s3-backup prune` always
 * does. Reported under the database name `_globals`.
 */
export async function pruneGlobals(
  store: BackupStore,
  options: {
    readonly retentionCount: number;
    readonly gfs?: Omit<GfsRules, 'count'> | undefined;
    readonly now?: Date | undefined;
    readonly dryRun?: boolean | undefined;
    readonly events?: EventSink | undefined;
    readonly protect?: ReadonlySet<string>;
    /** A globals key not written yet, counted as if it were (a dry run's prediction); kept. */
    readonly incoming?: string | undefined;
  },
): Promise<PruneResult> {
  const files: { key: string; at: number }[] = [];
  const incomingAt = options.incoming === undefined ? undefined : globalsKeyTime(store.prefix, options.incoming);
  if (options.incoming !== undefined && incomingAt) files.push({ key: options.incoming, at: incomingAt.getTime() });
  let serverTime: Date | undefined;
  for await (const o of store.listObjects(`${store.prefix}${GLOBALS_FOLDER}/`, (d) => (serverTime = d))) {
    const startedAt = globalsKeyTime(store.prefix, o.key);
    // As the databases' backups: the key's time capped by S3's, which a copy in place cannot change.
    if (startedAt) files.push({ key: o.key, at: backupTime({ startedAt, storedAt: o.lastModified }).getTime() });
  }
  const newestFirst = files.sort((a, b) => b.at - a.at || (a.key < b.key ? 1 : a.key > b.key ? -1 : 0));
  const protect = new Set([...(options.protect ?? []), ...(options.incoming === undefined ? [] : [options.incoming])]);
  const keep = gfsKeep(
    newestFirst.map((f) => ({ key: f.key, at: new Date(f.at) })),
    { daily: 0, weekly: 0, monthly: 0, timeZone: 'UTC', ...options.gfs, count: options.retentionCount },
  );
  const kept = newestFirst.filter((f) => keep.has(f.key) || protect.has(f.key)).map((f) => f.key);
  const old = newestFirst.filter((f) => !keep.has(f.key) && !protect.has(f.key)).map((f) => f.key);
  const now = (serverTime ?? options.now ?? new Date()).getTime();
  const { deletable, locked } = await withoutLocked(store, old, new Set(), now);
  const dryRun = options.dryRun ?? false;
  // `_globals` is a folder name like a database's: deleteKeys checks every key stays inside it.
  const deleted = dryRun || deletable.length === 0 ? deletable : await store.deleteKeys(GLOBALS_FOLDER, deletable);
  options.events?.({ event: dryRun ? 'prune.dry-run' : 'prune.done', stage: 'prune', database: GLOBALS_FOLDER, kept: kept.length, locked: locked.length, deleted: deleted.length, keys: deleted });
  return { database: GLOBALS_FOLDER, kept, unreadable: [], deleted, locked, dryRun };
}
