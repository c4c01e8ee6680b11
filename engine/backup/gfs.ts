/**
 * Grandfather-father-son retention, pure: which of one database's complete backups to keep.
 *
 * A backup is kept when any rule keeps it:
 * - `count` (RETENTION_COUNT): the newest `count` backups;
 * - `daily` / `weekly` / `monthly` (RETENTION_DAILY / _WEEKLY / _MONTHLY): the representative of
 *   each of the newest N calendar days / ISO weeks (Monday to Sunday, the ISO week-numbering year)
 *   / months that hold at least one backup. A period's representative is its newest backup.
 *
 * Periods are calendar periods in `timeZone` (an IANA zone: the schedule's), of the backup's time
 * (engine/store/s3-store.ts, `backupTime`: when pg_dump started by the key, capped by S3's clock),
 * which copying its objects in place cannot change.
 *
 * Gaps: "the newest N periods" counts periods that hold a backup, not calendar periods back from
 * today (as restic's and borg's --keep-daily do). A week without backups therefore does not make
 * `daily: 7` keep fewer than 7 backups, nor more: each rule keeps at most N backups, and a database
 * whose backups stopped keeps its last N days of backups instead of losing them to the calendar.
 * So the oldest backup a rule keeps can be older than N periods when backups were missed; the
 * lifecycle backstop (infra/config.ts) is sized for nightly backups and is the slow limit.
 */

export type KeepReason = 'count' | 'daily' | 'weekly' | 'monthly';

export interface GfsRules {
  /** The newest `count` backups, whatever their periods (RETENTION_COUNT). */
  readonly count: number;
  readonly daily: number;
  readonly weekly: number;
  readonly monthly: number;
  /** IANA time zone the calendar periods are taken in. */
  readonly timeZone: string;
}

export interface GfsBackup {
  readonly key: string;
  /** The backup's time (`backupTime`); without it a backup belongs to no period (only `count` can keep it). */
  readonly at: Date | undefined;
}

/** The calendar labels of an instant in a zone: `YYYY-MM-DD`, ISO week `GGGG-Www`, `YYYY-MM` (ordered like the periods). */
export interface PeriodLabels {
  readonly day: string;
  readonly week: string;
  readonly month: string;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    // en-US with the gregorian calendar and latin digits: numeric parts parse the same everywhere.
    f = new Intl.DateTimeFormat('en-US-u-ca-gregory-nu-latn', { timeZone, year: 'numeric', month: 'numeric', day: 'numeric' });
    formatters.set(timeZone, f);
  }
  return f;
}

/** The zone check lives below the configuration, which checks RETENTION_TIME_ZONE with it. */
import { isTimeZone } from '../settings/values.ts';
export { isTimeZone };

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/** The local calendar date of `at` in `timeZone`. */
export function localDate(at: Date, timeZone: string): { year: number; month: number; day: number } {
  const parts = formatter(timeZone).formatToParts(at);
  const part = (type: string) => Number(parts.find((p) => p.type === type)?.value);
  return { year: part('year'), month: part('month'), day: part('day') };
}

/**
 * ISO 8601 week of a calendar date: weeks start on Monday, week 1 holds the year's first
 * Thursday, so 29–31 December may be week 1 of the next year and 1–3 January week 52 or 53 of the
 * previous one.
 */
export function isoWeek(year: number, month: number, day: number): { year: number; week: number } {
  const date = new Date(Date.UTC(year, month - 1, day));
  const weekday = date.getUTCDay() === 0 ? 7 : date.getUTCDay(); // Monday 1 … Sunday 7
  // The Thursday of this week decides the week-numbering year.
  const thursday = new Date(date.getTime() + (4 - weekday) * 86_400_000);
  const weekYear = thursday.getUTCFullYear();
  const firstOfYear = Date.UTC(weekYear, 0, 1);
  const week = Math.floor((thursday.getTime() - firstOfYear) / 86_400_000 / 7) + 1;
  return { year: weekYear, week };
}

export function periodLabels(at: Date, timeZone: string): PeriodLabels {
  const { year, month, day } = localDate(at, timeZone);
  const w = isoWeek(year, month, day);
  return { day: `${pad(year, 4)}-${pad(month)}-${pad(day)}`, week: `${pad(w.year, 4)}-W${pad(w.week)}`, month: `${pad(year, 4)}-${pad(month)}` };
}

function checkRules(rules: GfsRules): void {
  for (const name of ['count', 'daily', 'weekly', 'monthly'] as const) {
    const n = rules[name];
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`GFS rule ${name} must be a whole number of at least 0, got ${n}`);
  }
  if (!isTimeZone(rules.timeZone)) throw new RangeError(`GFS time zone ${JSON.stringify(rules.timeZone)} is not an IANA time zone`);
}

/**
 * The backups to keep, each with every rule that keeps it (in the order count, daily, weekly,
 * monthly). `backups` may come in any order: they are taken newest first by `at` (a stable sort,
 * so backups with the same time keep the caller's order: the listing's, by key).
 */
export function gfsKeep(backups: readonly GfsBackup[], rules: GfsRules): Map<string, KeepReason[]> {
  checkRules(rules);
  const ordered = [...backups].sort((a, b) => (b.at?.getTime() ?? -Infinity) - (a.at?.getTime() ?? -Infinity) || 0);
  const kept = new Map<string, KeepReason[]>();
  const keep = (key: string, reason: KeepReason) => {
    const reasons = kept.get(key);
    if (reasons) {
      if (!reasons.includes(reason)) reasons.push(reason);
    } else kept.set(key, [reason]);
  };
  for (const b of ordered.slice(0, rules.count)) keep(b.key, 'count');

  const periods: [Exclude<KeepReason, 'count'>, keyof PeriodLabels][] = [
    ['daily', 'day'],
    ['weekly', 'week'],
    ['monthly', 'month'],
  ];
  const labelled = ordered.filter((b) => b.at !== undefined).map((b) => ({ key: b.key, labels: periodLabels(b.at!, rules.timeZone) }));
  for (const [reason, field] of periods) {
    const n = rules[reason];
    if (n === 0) continue;
    // Newest first, so the first backup seen in a period is its representative.
    const representative = new Map<string, string>();
    for (const b of labelled) if (!representative.has(b.labels[field])) representative.set(b.labels[field], b.key);
    // The newest N periods by the calendar (labels sort like their periods), not by arrival.
    const newest = [...representative.keys()].sort().reverse().slice(0, n);
    for (const label of newest) keep(representative.get(label)!, reason);
  }
  const order: KeepReason[] = ['count', 'daily', 'weekly', 'monthly'];
  for (const reasons of kept.values()) reasons.sort((a, b) => order.indexOf(a) - order.indexOf(b));
  return kept;
}
