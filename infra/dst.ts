/**
 * Daylight-saving checks for a daily local time, pure (Intl only, no clock read unless given).
 *
 * EventBridge Scheduler evaluates cron expressions in the schedule's IANA zone. On the
 * spring-forward night a local time inside the gap (02:30 in Europe/Paris) does not exist and the
 * run is skipped; on the fall-back night a repeated local time (02:30 in Europe/Paris) runs once.
 * Skipping a nightly backup silently is not acceptable, so synth rejects a time that falls into a
 * gap; a repeated time is harmless (one run) and is only reported.
 */

const DAY_MS = 86_400_000;

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(timeZone, f);
  }
  return f;
}

/** True when Intl knows the IANA zone (the same database EventBridge Scheduler uses). */
export function isValidTimeZone(timeZone: string): boolean {
  try {
    formatterFor(timeZone);
    return true;
  } catch {
    return false;
  }
}

/** The wall clock of `instant` in `timeZone`, expressed as milliseconds of a UTC date with the same fields. */
function wallClockMs(instant: number, timeZone: string): number {
  const parts: Record<string, number> = {};
  for (const p of formatterFor(timeZone).formatToParts(new Date(instant))) {
    if (p.type !== 'literal') parts[p.type] = Number(p.value);
  }
  return Date.UTC(parts.year!, parts.month! - 1, parts.day!, parts.hour!, parts.minute!, parts.second!);
}

/** The zone's offset from UTC at `instant`, in milliseconds (Paris in summer: +2 h). */
function offsetAt(instant: number, timeZone: string): number {
  const whole = Math.floor(instant / 1000) * 1000;
  return wallClockMs(whole, timeZone) - whole;
}

/**
 * The instants at which the local wall time `wall` (a UTC-encoded date with the local fields)
 * occurs in `timeZone`: none in a gap, two on a repeated hour, one otherwise.
 */
export function instantsOfWallTime(wall: number, timeZone: string): number[] {
  // At most one transition happens within two days, so the offsets a day before and a day after
  // cover every offset that can apply at `wall`.
  const candidates = new Set([offsetAt(wall - DAY_MS, timeZone), offsetAt(wall + DAY_MS, timeZone)]);
  const found = new Set<number>();
  for (const offset of candidates) {
    const instant = wall - offset;
    if (wallClockMs(instant, timeZone) === wall) found.add(instant);
  }
  return [...found].sort((a, b) => a - b);
}

export interface DailyTimeReport {
  /** Local dates (YYYY-MM-DD) on which the time does not exist: the run would be skipped. */
  readonly skipped: readonly string[];
  /** Local dates on which the time happens twice: Scheduler runs once. */
  readonly repeated: readonly string[];
}

export interface DailyTimeOptions {
  /** First day checked (default: now). */
  readonly from?: Date;
  /** How many years ahead are checked (default 10: zones change their rules, look well ahead). */
  readonly years?: number;
}

function isoDate(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** Checks every day of the coming `years` for a daily run at `hour:minute` local time in `timeZone`. */
export function checkDailyTime(timeZone: string, hour: number, minute: number, options: DailyTimeOptions = {}): DailyTimeReport {
  const from = options.from ?? new Date();
  const years = options.years ?? 10;
  const start = Date.UTC(from.getUTCFullYear(), from.getUTCMonth(), from.getUTCDate());
  const end = Date.UTC(from.getUTCFullYear() + years, from.getUTCMonth(), from.getUTCDate());
  const skipped: string[] = [];
  const repeated: string[] = [];
  for (let day = start; day < end; day += DAY_MS) {
    const wall = day + hour * 3_600_000 + minute * 60_000;
    const n = instantsOfWallTime(wall, timeZone).length;
    if (n === 0) skipped.push(isoDate(day));
    else if (n > 1) repeated.push(isoDate(day));
  }
  return { skipped, repeated };
}

/** `HH:MM`. */
export function formatHourMinute(hour: number, minute: number): string {
  return `${String(hour).padStart(2, '0')}:${String(minute).padStart(2, '0')}`;
}

/**
 * The nearest earlier and later times (same minute, whole hours away) that never fall into a gap
 * nor repeat in the checked years, as `HH:MM`.
 */
export function proposeSafeTimes(timeZone: string, hour: number, minute: number, options: DailyTimeOptions = {}): string[] {
  const safe = (h: number): boolean => {
    const r = checkDailyTime(timeZone, h, minute, options);
    return r.skipped.length === 0 && r.repeated.length === 0;
  };
  const out: string[] = [];
  for (let d = 1; d < 24; d++) {
    const h = (hour - d + 24) % 24;
    if (safe(h)) {
      out.push(formatHourMinute(h, minute));
      break;
    }
  }
  for (let d = 1; d < 24; d++) {
    const h = (hour + d) % 24;
    if (safe(h)) {
      if (!out.includes(formatHourMinute(h, minute))) out.push(formatHourMinute(h, minute));
      break;
    }
  }
  return out;
}
