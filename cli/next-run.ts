/**
 * When will EventBridge Scheduler next run a schedule? Pure: its expression and IANA zone → the
 * next instants. `cron(minutes hours day-of-month month day-of-week year)` is Scheduler's (and
 * Quartz's) form: croner evaluates it with Quartz weekday numbers (1 = Sunday) in the zone. One
 * difference is handled here: croner runs a fixed time that falls into a DST gap right after the
 * gap, as Vixie cron does, while Scheduler skips that night (see README, "Choosing the time").
 */
import { Cron } from 'croner';

export interface NextRuns {
  /** The next runs, soonest first. */
  readonly runs: readonly Date[];
  /** Nights whose fixed local time does not exist (DST gap): Scheduler skips them. */
  readonly skipped: readonly Date[];
}

const CRON = /^cron\((.+)\)$/;

/** `undefined` for expressions without a computable next run (`rate(…)`: it depends on when the schedule was created; `at(…)`). */
export function nextRuns(expression: string, timeZone: string, from: Date, count = 1): NextRuns | undefined {
  const m = CRON.exec(expression.trim());
  if (!m) return undefined;
  const fields = m[1]!.trim().split(/\s+/);
  if (fields.length !== 6) return undefined;
  const [minute, hour] = fields as [string, string];
  let cron: Cron;
  try {
    cron = new Cron(`0 ${fields.join(' ')}`, { timezone: timeZone, mode: '7-part', alternativeWeekdays: true, paused: true });
  } catch {
    return undefined;
  }
  // A fixed time (one minute, one hour) can fall into a gap; croner then returns a later time that day.
  const fixed = /^\d+$/.test(minute) && /^\d+$/.test(hour) ? { hour: Number(hour), minute: Number(minute) } : undefined;
  const runs: Date[] = [];
  const skipped: Date[] = [];
  let cursor = from;
  for (let i = 0; runs.length < count && i < count + 10; i++) {
    const next = cron.nextRun(cursor);
    if (!next) break;
    const local = wallClock(next, timeZone);
    if (fixed && (local.hour !== fixed.hour || local.minute !== fixed.minute)) skipped.push(next);
    else runs.push(next);
    cursor = next;
  }
  return { runs, skipped };
}

export function wallClock(at: Date, timeZone: string): { date: string; hour: number; minute: number; text: string } {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' })
      .formatToParts(at)
      .map((p) => [p.type, p.value]),
  ) as Record<string, string>;
  const date = `${parts.year}-${parts.month}-${parts.day}`;
  return { date, hour: Number(parts.hour), minute: Number(parts.minute), text: `${date} ${parts.hour}:${parts.minute}` };
}

/** "18 h 04 min", "3 min", "2 d 5 h". */
export function humanDelay(ms: number): string {
  const minutes = Math.max(0, Math.round(ms / 60_000));
  const d = Math.floor(minutes / 1440);
  const h = Math.floor((minutes % 1440) / 60);
  const min = minutes % 60;
  if (d > 0) return `${d} d ${h} h`;
  if (h > 0) return `${h} h ${String(min).padStart(2, '0')} min`;
  return `${min} min`;
}
