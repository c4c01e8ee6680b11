/**
 * `pg-s3-backup status`'s verdict, pure: what the bucket's listings (and the manifests and drill
 * reports read from them) say about each database at one instant. No I/O here: cli/status.ts reads
 * S3 (and the deployed stack's alarms) and hands the facts in, so every rule below is tested as a
 * unit with made-up listings and clocks.
 *
 * Ages are S3's time minus S3's time (the listing's `Date` header minus the manifest's
 * LastModified): a host whose clock is wrong can neither make a fresh backup look stale nor a stale
 * one fresh. A key time ahead of S3's clock is reported as skew (the host that took it had a wrong
 * clock), never trusted.
 */
import type { DrillSummary, StoredBackup } from './store/s3-store.ts';
import { clockSkewMs } from './store/s3-store.ts';
import type { Manifest } from './store/manifest.ts';

/**
 * How old the newest complete backup may be with one backup a day: the day plus two hours of slack
 * for a late or retried run and the 25-hour fall-back night (the dead-man alarms' window).
 */
export const DAILY_MAX_AGE_HOURS = 26;
/** Slack added to a schedule's interval (the daily case gives DAILY_MAX_AGE_HOURS). */
export const SCHEDULE_SLACK_HOURS = DAILY_MAX_AGE_HOURS - 24;
/** The size trend compares the newest backup with the median of this many before it. */
export const SIZE_WINDOW = 7;
/** A newest dump below this share of the median is flagged (data lost, a table emptied, a wrong database?). */
export const SIZE_DROP_RATIO = 0.5;
/** A newest dump above this multiple of the median is flagged (runaway growth, a bloated table). */
export const SIZE_GROWTH_RATIO = 2;

/** What was read of one backup: its manifest, or why it cannot be trusted. */
export type ReadBackup = (StoredBackup & { readonly manifest: Manifest }) | (StoredBackup & { readonly problem: string });

export interface DatabaseFacts {
  readonly database: string;
  /** Every complete backup (dump + manifest object) of the listing, in any order. */
  readonly complete: readonly StoredBackup[];
  /** The backups whose manifest was read (the newest few): trusted ones with their manifest, the others with the problem. */
  readonly read: readonly ReadBackup[];
  /** S3's clock when the listing was made; undefined: the caller's clock is used. */
  readonly serverTime: Date | undefined;
  /** The newest drill report found beside a backup: its summary, or why it could not be read. */
  readonly drill?: { readonly key: string; readonly summary: DrillSummary } | { readonly key: string; readonly problem: string } | undefined;
}

export interface StatusInput {
  readonly databases: readonly DatabaseFacts[];
  /** Databases that are expected (DATABASES) even if the bucket holds none of their backups. */
  readonly expected?: readonly string[];
  /** The caller's clock (used where S3's is unknown). */
  readonly now: Date;
  /** The newest complete backup may be this old (hours) before the database is stale. */
  readonly maxAgeHours: number;
}

export interface NewestBackup {
  readonly key: string;
  /** When S3 stored its manifest (the backup became complete). */
  readonly storedAt: string | null;
  /** When pg_dump started, by the clock of the host that took it. */
  readonly startedAt: string;
  readonly ageHours: number;
  readonly bytes: number;
  readonly durationMs: number;
  /** Where it ran (lambda, fargate, host); null in manifests written before the fan-out. */
  readonly runner: string | null;
}

export interface SizeTrend {
  readonly lastBytes: number;
  /** The median of up to SIZE_WINDOW readable backups before the newest. */
  readonly medianBytes: number;
  readonly previous: number;
  /** (last − median) / median, in percent, rounded. */
  readonly changePercent: number;
}

export interface DatabaseStatus {
  readonly database: string;
  /** ok: fresh and nothing to look at; attention: fresh, but something to look at; stale: older than allowed (or none). */
  readonly verdict: 'ok' | 'attention' | 'stale';
  readonly newest: NewestBackup | null;
  readonly completeBackups: number;
  readonly sizeTrend: SizeTrend | null;
  readonly lastDrill: { readonly key: string; readonly status: DrillSummary['status']; readonly drilledAt: string; readonly failingTables: readonly string[]; readonly ofNewest: boolean } | null;
  /** Backups whose key or manifest time is ahead of S3's clock beyond the tolerance: the host's clock was wrong. */
  readonly clockSkew: readonly { readonly key: string; readonly seconds: number }[];
  /** Backups whose manifest cannot be trusted (not complete: skipped by list, retention and --latest). */
  readonly unreadable: readonly { readonly key: string; readonly problem: string }[];
  /** One phrase per thing to look at, most serious first (empty when ok). */
  readonly problems: readonly string[];
}

export interface StatusReport {
  readonly maxAgeHours: number;
  readonly databases: readonly DatabaseStatus[];
  /** Databases whose newest complete backup is older than maxAgeHours, or that have none. */
  readonly stale: readonly string[];
}

const HOUR_MS = 3_600_000;

/** Newest first by S3's clock (the manifest's LastModified, else the dump's), then by key. */
function byStoredDesc(a: StoredBackup, b: StoredBackup): number {
  const at = (x: StoredBackup) => (x.storedAt ?? x.lastModified ?? x.startedAt).getTime();
  return at(b) - at(a) || (a.key < b.key ? 1 : a.key > b.key ? -1 : 0);
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

const round1 = (n: number) => Math.round(n * 10) / 10;

export function databaseStatus(facts: DatabaseFacts, now: Date, maxAgeHours: number): DatabaseStatus {
  const reference = facts.serverTime ?? now;
  const read = [...facts.read].sort(byStoredDesc);
  const readable = read.filter((b): b is StoredBackup & { manifest: Manifest } => 'manifest' in b);
  const unreadable = read.filter((b): b is StoredBackup & { problem: string } => 'problem' in b).map((b) => ({ key: b.key, problem: b.problem }));
  const newestBackup = readable[0];
  const newest: NewestBackup | null = newestBackup
    ? {
        key: newestBackup.key,
        storedAt: newestBackup.storedAt?.toISOString() ?? null,
        startedAt: newestBackup.manifest.startedAt,
        ageHours: round1((reference.getTime() - (newestBackup.storedAt ?? newestBackup.startedAt).getTime()) / HOUR_MS),
        bytes: newestBackup.bytes,
        durationMs: newestBackup.manifest.durationMs,
        runner: newestBackup.manifest.runner ?? null,
      }
    : null;

  const before = readable.slice(1, 1 + SIZE_WINDOW).map((b) => b.bytes);
  const sizeTrend: SizeTrend | null =
    newestBackup && before.length > 0
      ? (() => {
          const m = median(before);
          return { lastBytes: newestBackup.bytes, medianBytes: m, previous: before.length, changePercent: m > 0 ? Math.round(((newestBackup.bytes - m) / m) * 100) : 0 };
        })()
      : null;

  // Skew is told from the listing alone for every backup (a key time after S3 stored it), and in
  // both directions for the backups whose manifest was read (its finishedAt against S3's stamp).
  const manifests = new Map(readable.map((b) => [b.key, b.manifest]));
  const clockSkew = [...facts.complete]
    .sort(byStoredDesc)
    .map((b) => ({ key: b.key, ms: clockSkewMs(b, manifests.get(b.key)) }))
    .filter((s): s is { key: string; ms: number } => s.ms !== undefined)
    .map((s) => ({ key: s.key, seconds: Math.round(s.ms / 1000) }));

  const drill = facts.drill && 'summary' in facts.drill
    ? { key: facts.drill.key, status: facts.drill.summary.status, drilledAt: facts.drill.summary.drilledAt, failingTables: facts.drill.summary.failingTables, ofNewest: facts.drill.key === newest?.key }
    : null;

  const problems: string[] = [];
  const stale = newest === null || newest.ageHours > maxAgeHours;
  if (newest === null) {
    problems.push(facts.complete.length === 0 ? 'no complete backup' : 'no complete backup with a readable manifest');
  } else if (stale) {
    problems.push(`newest complete backup is ${formatHours(newest.ageHours)} old (allowed: ${formatHours(maxAgeHours)})`);
  }
  if (unreadable.length > 0) problems.push(`${unreadable.length} backup(s) with an unreadable manifest`);
  if (clockSkew.length > 0) problems.push(`${clockSkew.length} backup(s) taken with a wrong clock (time ahead of S3's)`);
  if (drill?.status === 'failed') problems.push(`last drill failed${drill.failingTables.length ? `: ${drill.failingTables.slice(0, 3).join('; ')}` : ''}`);
  if (drill?.status === 'skipped') problems.push('last drill skipped (too large for the drill\'s temporary space)');
  if (facts.drill && 'problem' in facts.drill) problems.push(`drill report unreadable: ${facts.drill.problem}`);
  if (sizeTrend && sizeTrend.medianBytes > 0) {
    const ratio = sizeTrend.lastBytes / sizeTrend.medianBytes;
    if (ratio < SIZE_DROP_RATIO) problems.push(`newest dump is ${Math.round((1 - ratio) * 100)} % smaller than the median of the ${sizeTrend.previous} before it`);
    else if (ratio > SIZE_GROWTH_RATIO) problems.push(`newest dump is ${round1(ratio)}× the median of the ${sizeTrend.previous} before it`);
  }
  return {
    database: facts.database,
    verdict: stale ? 'stale' : problems.length > 0 ? 'attention' : 'ok',
    newest,
    completeBackups: facts.complete.length,
    sizeTrend,
    lastDrill: drill,
    clockSkew,
    unreadable,
    problems,
  };
}

/** Every database of the bucket and every expected one, sorted by name. */
export function computeStatus(input: StatusInput): StatusReport {
  const byName = new Map(input.databases.map((d) => [d.database, d]));
  for (const name of input.expected ?? []) {
    if (!byName.has(name)) byName.set(name, { database: name, complete: [], read: [], serverTime: undefined });
  }
  const databases = [...byName.values()].sort((a, b) => (a.database < b.database ? -1 : a.database > b.database ? 1 : 0)).map((d) => databaseStatus(d, input.now, input.maxAgeHours));
  return { maxAgeHours: input.maxAgeHours, databases, stale: databases.filter((d) => d.verdict === 'stale').map((d) => d.database) };
}

/**
 * How old the newest backup may be under a schedule whose runs are `runs` (consecutive instants,
 * soonest first): the usual interval between two runs plus SCHEDULE_SLACK_HOURS. The median
 * interval, so that a DST night (23 or 25 hours) does not change a daily schedule's 26 hours.
 * Undefined with fewer than two runs.
 */
export function maxAgeForRuns(runs: readonly Date[]): number | undefined {
  if (runs.length < 2) return undefined;
  const gaps = runs.slice(1).map((r, i) => (r.getTime() - runs[i]!.getTime()) / HOUR_MS);
  return Math.round(median(gaps)) + SCHEDULE_SLACK_HOURS;
}

/** "5.2 h", "3 d 4 h". */
export function formatHours(hours: number): string {
  if (hours < 48) return `${round1(hours)} h`;
  return `${Math.floor(hours / 24)} d ${Math.round(hours % 24)} h`;
}
