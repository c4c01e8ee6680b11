/**
 * GFS retention (engine/backup/gfs.ts), pure: named cases for the calendar's corners (zones,
 * DST, month ends, leap years, ISO week-years, gaps, duplicates) and properties over many
 * generated histories (fast-check), each checked against the definition, not the implementation.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { gfsKeep, isoWeek, isTimeZone, periodLabels, type GfsBackup, type GfsRules } from '../../../engine/backup/gfs.ts';

const b = (iso: string, key = iso): GfsBackup => ({ key, at: new Date(iso) });
const rules = (r: Partial<GfsRules>): GfsRules => ({ count: 0, daily: 0, weekly: 0, monthly: 0, timeZone: 'UTC', ...r });
const keptKeys = (backups: readonly GfsBackup[], r: Partial<GfsRules>) => [...gfsKeep(backups, rules(r)).keys()].sort();

describe('ISO weeks', () => {
  it.each([
    // [date, ISO week-year, week]
    ['2026-01-01', 2026, 1], // a Thursday: week 1
    ['2026-12-28', 2026, 53], // 2026 has 53 weeks (it starts on a Thursday)
    ['2026-12-31', 2026, 53],
    ['2027-01-01', 2026, 53], // Friday 1 January belongs to the previous year's last week
    ['2027-01-03', 2026, 53], // Sunday
    ['2027-01-04', 2027, 1], // Monday
    ['2024-12-30', 2025, 1], // Monday 30 December is week 1 of the next year
    ['2025-12-29', 2026, 1],
    ['2021-01-03', 2020, 53],
    ['2028-02-29', 2028, 9], // leap day
    ['2023-01-01', 2022, 52], // a Sunday: last day of the previous year's week 52
    ['2023-01-02', 2023, 1],
  ] as const)('%s is week %i-W%i', (date, year, week) => {
    const [y, m, d] = date.split('-').map(Number) as [number, number, number];
    expect(isoWeek(y, m, d)).toEqual({ year, week });
  });

  it('agrees with a day-by-day count over 30 years: weeks start on Monday and number 1 … 52/53 without gaps', () => {
    let prev = isoWeek(2000, 1, 3); // Monday 3 January 2000 is week 1
    expect(prev).toEqual({ year: 2000, week: 1 });
    for (let t = Date.UTC(2000, 0, 4); t < Date.UTC(2030, 0, 1); t += 86_400_000) {
      const d = new Date(t);
      const cur = isoWeek(d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate());
      if (d.getUTCDay() === 1) {
        const next = prev.week >= 52 && cur.week === 1 ? { year: prev.year + 1, week: 1 } : { year: prev.year, week: prev.week + 1 };
        expect(cur, d.toISOString()).toEqual(next);
      } else {
        expect(cur, d.toISOString()).toEqual(prev);
      }
      prev = cur;
    }
  });
});

describe('period labels in a time zone', () => {
  it('takes the local date of the zone: near midnight Pacific/Auckland and UTC disagree', () => {
    // 11:30 UTC on 1 March 2026 is 00:30 on 2 March in Auckland (NZDT, UTC+13).
    expect(periodLabels(new Date('2026-03-01T11:30:00Z'), 'UTC').day).toBe('2026-03-01');
    expect(periodLabels(new Date('2026-03-01T11:30:00Z'), 'Pacific/Auckland').day).toBe('2026-03-02');
    expect(periodLabels(new Date('2026-03-01T10:30:00Z'), 'Pacific/Auckland').day).toBe('2026-03-01');
    // Sunday 31 May 2026 23:30 in Los Angeles is Monday 1 June 06:30 UTC: another week and month in UTC.
    const at = new Date('2026-06-01T06:30:00Z');
    expect(periodLabels(at, 'America/Los_Angeles')).toEqual({ day: '2026-05-31', week: '2026-W22', month: '2026-05' });
    expect(periodLabels(at, 'UTC')).toEqual({ day: '2026-06-01', week: '2026-W23', month: '2026-06' });
  });

  it('knows IANA zones and refuses anything else', () => {
    expect(isTimeZone('Pacific/Auckland')).toBe(true);
    expect(isTimeZone('UTC')).toBe(true);
    expect(isTimeZone('Mars/Olympus')).toBe(false);
    expect(isTimeZone('')).toBe(false);
    expect(() => gfsKeep([], rules({ timeZone: 'Mars/Olympus' }))).toThrow(/time zone/);
    expect(() => gfsKeep([], rules({ daily: -1 }))).toThrow(/daily/);
  });
});

describe('gfsKeep: named cases', () => {
  it('keeps the newest backup of each of the newest N days; duplicates in one day keep only the newest', () => {
    const history = [b('2026-03-10T02:00:00Z'), b('2026-03-10T14:00:00Z'), b('2026-03-10T23:59:59Z'), b('2026-03-09T02:00:00Z'), b('2026-03-08T02:00:00Z')];
    expect(keptKeys(history, { daily: 2 })).toEqual(['2026-03-09T02:00:00Z', '2026-03-10T23:59:59Z']);
    // count keeps the newest N whatever their day; the union with daily.
    expect(keptKeys(history, { count: 2, daily: 2 })).toEqual(['2026-03-09T02:00:00Z', '2026-03-10T14:00:00Z', '2026-03-10T23:59:59Z']);
    const reasons = gfsKeep(history, rules({ count: 2, daily: 2 }));
    expect(reasons.get('2026-03-10T23:59:59Z')).toEqual(['count', 'daily']);
    expect(reasons.get('2026-03-10T14:00:00Z')).toEqual(['count']);
  });

  it('buckets days in the configured zone: two backups an hour apart around Auckland midnight are two days there, one in UTC', () => {
    const history = [b('2026-03-01T10:30:00Z', 'before-midnight-nz'), b('2026-03-01T11:30:00Z', 'after-midnight-nz'), b('2026-02-28T10:30:00Z', 'day-before')];
    expect(keptKeys(history, { daily: 2, timeZone: 'UTC' })).toEqual(['after-midnight-nz', 'day-before']);
    expect(keptKeys(history, { daily: 2, timeZone: 'Pacific/Auckland' })).toEqual(['after-midnight-nz', 'before-midnight-nz']);
  });

  it('counts a 25-hour and a 23-hour day as one day each (DST in Auckland and New York)', () => {
    // Auckland leaves DST on Sunday 5 April 2026 (03:00 NZDT → 02:00 NZST): a backup every hour
    // of 4–6 April local time is three local days, 24 + 25 + 24 backups.
    const nz: GfsBackup[] = [];
    for (let t = Date.parse('2026-04-03T11:00:00Z'); t < Date.parse('2026-04-06T12:00:00Z'); t += 3_600_000) nz.push(b(new Date(t).toISOString()));
    const nzDays = new Map<string, number>();
    for (const x of nz) nzDays.set(periodLabels(x.at!, 'Pacific/Auckland').day, (nzDays.get(periodLabels(x.at!, 'Pacific/Auckland').day) ?? 0) + 1);
    expect(Object.fromEntries(nzDays)).toEqual({ '2026-04-04': 24, '2026-04-05': 25, '2026-04-06': 24 });
    const kept = gfsKeep(nz, rules({ daily: 3, timeZone: 'Pacific/Auckland' }));
    // Each day's representative is its last hour: 23:00 local, i.e. 11:00 UTC on the 5th (NZST, +12)…
    expect([...kept.keys()].sort()).toEqual(['2026-04-04T10:00:00.000Z', '2026-04-05T11:00:00.000Z', '2026-04-06T11:00:00.000Z']);
    // New York springs forward on Sunday 8 March 2026: that day has 23 hours.
    const ny: GfsBackup[] = [];
    for (let t = Date.parse('2026-03-07T05:00:00Z'); t < Date.parse('2026-03-10T04:00:00Z'); t += 3_600_000) ny.push(b(new Date(t).toISOString()));
    const nyDays = new Map<string, number>();
    for (const x of ny) nyDays.set(periodLabels(x.at!, 'America/New_York').day, (nyDays.get(periodLabels(x.at!, 'America/New_York').day) ?? 0) + 1);
    expect(Object.fromEntries(nyDays)).toEqual({ '2026-03-07': 24, '2026-03-08': 23, '2026-03-09': 24 });
    expect(gfsKeep(ny, rules({ daily: 10, timeZone: 'America/New_York' })).size).toBe(3);
  });

  it('keeps the last backup of each month across month ends of every length, leap years included', () => {
    // Nightly at 02:00 UTC from 25 January to 5 March: the month representatives are 31 January,
    // the last day of February (28 in 2027, 29 in 2028) and the newest of March.
    for (const [year, lastFeb] of [
      [2027, 28],
      [2028, 29],
    ] as const) {
      const history: GfsBackup[] = [];
      for (let t = Date.UTC(year, 0, 25, 2); t <= Date.UTC(year, 2, 5, 2); t += 86_400_000) history.push(b(new Date(t).toISOString()));
      expect(keptKeys(history, { monthly: 3 })).toEqual([`${year}-01-31T02:00:00.000Z`, `${year}-02-${lastFeb}T02:00:00.000Z`, `${year}-03-05T02:00:00.000Z`]);
      // Two months: January's goes.
      expect(keptKeys(history, { monthly: 2 })).toEqual([`${year}-02-${lastFeb}T02:00:00.000Z`, `${year}-03-05T02:00:00.000Z`]);
    }
  });

  it('keeps a month-end backup in the zone\'s month: 31 January 23:30 in Auckland is 31 January there, not 1 February', () => {
    const history = [b('2027-01-31T10:30:00Z', 'jan31-nz'), b('2027-01-31T11:30:00Z', 'feb1-nz'), b('2027-02-15T02:00:00Z', 'feb15')];
    expect(keptKeys(history, { monthly: 2, timeZone: 'Pacific/Auckland' })).toEqual(['feb15', 'jan31-nz']);
    expect(keptKeys(history, { monthly: 2, timeZone: 'UTC' })).toEqual(['feb1-nz', 'feb15']);
  });

  it('takes weeks Monday to Sunday across the year boundary (ISO week-years)', () => {
    // Nightly from Monday 21 December 2026 to Wednesday 6 January 2027: the ISO weeks are
    // 2026-W52 (21–27 Dec), 2026-W53 (28 Dec – 3 Jan), 2027-W01 (4–6 Jan).
    const history: GfsBackup[] = [];
    for (let t = Date.UTC(2026, 11, 21, 2); t <= Date.UTC(2027, 0, 6, 2); t += 86_400_000) history.push(b(new Date(t).toISOString()));
    expect(keptKeys(history, { weekly: 3 })).toEqual(['2026-12-27T02:00:00.000Z', '2027-01-03T02:00:00.000Z', '2027-01-06T02:00:00.000Z']);
    // 1 January 2027 is in the same week as 31 December 2026: one representative for both.
    const labels = ['2026-12-31T02:00:00.000Z', '2027-01-01T02:00:00.000Z'].map((iso) => periodLabels(new Date(iso), 'UTC').week);
    expect(labels).toEqual(['2026-W53', '2026-W53']);
  });

  it('gaps: counts days that hold a backup, so a backup every third day with daily=7 keeps 7 backups spanning 19 days', () => {
    const history: GfsBackup[] = [];
    for (let i = 0; i < 20; i++) history.push(b(new Date(Date.UTC(2026, 5, 30, 2) - i * 3 * 86_400_000).toISOString()));
    const kept = keptKeys(history, { daily: 7 });
    expect(kept).toHaveLength(7);
    expect(kept).toEqual(history.slice(0, 7).map((x) => x.key).sort());
    // And never more than N per rule, however long the history.
    expect(keptKeys(history, { daily: 7, weekly: 2 }).length).toBeLessThanOrEqual(9);
  });

  it('grandfather-father-son over a year of nightly backups keeps exactly the expected set', () => {
    const history: GfsBackup[] = [];
    for (let t = Date.UTC(2026, 0, 1, 2); t <= Date.UTC(2026, 11, 31, 2); t += 86_400_000) history.push(b(new Date(t).toISOString().slice(0, 10), new Date(t).toISOString().slice(0, 10)));
    const kept = keptKeys(history, { count: 3, daily: 7, weekly: 4, monthly: 12 });
    // Daily: 25–31 Dec (count's 29–31 inside). Weekly (Sundays, and Thursday 31 Dec for 2026-W53):
    // 31 Dec, 27 Dec, 20 Dec, 13 Dec. Monthly: the last day of each month.
    const monthEnds = ['2026-01-31', '2026-02-28', '2026-03-31', '2026-04-30', '2026-05-31', '2026-06-30', '2026-07-31', '2026-08-31', '2026-09-30', '2026-10-31', '2026-11-30'];
    const expected = [...monthEnds, '2026-12-13', '2026-12-20', '2026-12-25', '2026-12-26', '2026-12-27', '2026-12-28', '2026-12-29', '2026-12-30', '2026-12-31'];
    expect(kept).toEqual(expected.sort());
  });

  it('a backup with no S3 time belongs to no period: only the count can keep it', () => {
    const history = [b('2026-03-10T02:00:00Z'), { key: 'no-time', at: undefined }];
    expect(keptKeys(history, { daily: 5, weekly: 5, monthly: 5 })).toEqual(['2026-03-10T02:00:00Z']);
    expect(keptKeys(history, { count: 2 })).toEqual(['2026-03-10T02:00:00Z', 'no-time']);
  });
});

// ---------------------------------------------------------------------------------------------
// Properties over generated histories.

const ZONES = ['UTC', 'Pacific/Auckland', 'America/Los_Angeles', 'Europe/Paris', 'Australia/Lord_Howe', 'Asia/Kathmandu', 'America/Santiago', 'Pacific/Kiritimati', 'Pacific/Pago_Pago'];
const START = Date.UTC(2023, 10, 1);
const SPAN = 3 * 366 * 86_400_000;

/** Histories: up to 120 backups at any instant over three years (clustered or spread), unique keys. */
const history = fc
  .array(fc.oneof(fc.integer({ min: 0, max: SPAN }), fc.integer({ min: 0, max: 40 }).map((d) => d * 86_400_000 + 23 * 3_600_000)), { maxLength: 120 })
  .map((offsets) => offsets.map((o, i): GfsBackup => ({ key: `k${i}`, at: new Date(START + o) })));
const ruleSet = fc.record({
  count: fc.integer({ min: 0, max: 10 }),
  daily: fc.integer({ min: 0, max: 14 }),
  weekly: fc.integer({ min: 0, max: 8 }),
  monthly: fc.integer({ min: 0, max: 24 }),
  timeZone: fc.constantFrom(...ZONES),
});
const RUNS = { numRuns: 300 };

/** The definition, checked from outside: each rule's kept set, by brute force over the history. */
function byDefinition(h: readonly GfsBackup[], r: GfsRules, field: 'day' | 'week' | 'month', n: number): Set<string> {
  const newestFirst = [...h].sort((x, y) => y.at!.getTime() - x.at!.getTime());
  const labels = [...new Set(newestFirst.map((x) => periodLabels(x.at!, r.timeZone)[field]))].sort().reverse().slice(0, n);
  return new Set(labels.map((label) => newestFirst.find((x) => periodLabels(x.at!, r.timeZone)[field] === label)!.key));
}

describe('gfsKeep: properties over generated histories', () => {
  it('keeps exactly the union of the rules, each as defined (newest N, newest of each of the newest N periods)', () => {
    fc.assert(
      fc.property(history, ruleSet, (h, r) => {
        const kept = gfsKeep(h, r);
        const newestFirst = [...h].sort((x, y) => y.at!.getTime() - x.at!.getTime());
        const count = new Set(newestFirst.slice(0, r.count).map((x) => x.key));
        const daily = byDefinition(h, r, 'day', r.daily);
        const weekly = byDefinition(h, r, 'week', r.weekly);
        const monthly = byDefinition(h, r, 'month', r.monthly);
        // Backups sharing an instant may swap places in the count rule: compare its size, and the rest exactly.
        expect([...kept].filter(([, why]) => why.includes('count'))).toHaveLength(count.size);
        for (const [key, why] of kept) {
          expect(why.length).toBeGreaterThan(0);
          if (why.includes('daily')) expect(daily.has(key)).toBe(true);
          if (why.includes('weekly')) expect(weekly.has(key)).toBe(true);
          if (why.includes('monthly')) expect(monthly.has(key)).toBe(true);
        }
        for (const key of [...daily, ...weekly, ...monthly]) expect(kept.has(key), key).toBe(true);
        for (const key of kept.keys()) expect(h.some((x) => x.key === key)).toBe(true);
        // No more than the rules allow.
        expect(kept.size).toBeLessThanOrEqual(r.count + r.daily + r.weekly + r.monthly);
      }),
      RUNS,
    );
  });

  it('is idempotent: pruning what it kept deletes nothing more (tomorrow\'s run with no new backup keeps all)', () => {
    fc.assert(
      fc.property(history, ruleSet, (h, r) => {
        const kept = gfsKeep(h, r);
        const again = gfsKeep(h.filter((x) => kept.has(x.key)), r);
        expect([...again.keys()].sort()).toEqual([...kept.keys()].sort());
      }),
      RUNS,
    );
  });

  it('is monotonic: raising any rule never drops a backup another setting kept', () => {
    fc.assert(
      fc.property(history, ruleSet, fc.constantFrom('count', 'daily', 'weekly', 'monthly'), fc.integer({ min: 1, max: 5 }), (h, r, rule, more) => {
        const kept = gfsKeep(h, r);
        const wider = gfsKeep(h, { ...r, [rule]: r[rule] + more });
        for (const key of kept.keys()) expect(wider.has(key)).toBe(true);
      }),
      RUNS,
    );
  });

  it('always keeps the newest backup when any rule is on, and never depends on the order it is given', () => {
    fc.assert(
      fc.property(history, ruleSet, (h, r) => {
        fc.pre(h.length > 0 && r.count + r.daily + r.weekly + r.monthly > 0);
        const distinct = new Set(h.map((x) => x.at!.getTime())).size === h.length;
        const kept = gfsKeep(h, r);
        const newest = [...h].sort((x, y) => y.at!.getTime() - x.at!.getTime())[0]!;
        if (distinct) {
          expect(kept.has(newest.key)).toBe(true);
          expect([...gfsKeep([...h].reverse(), r).keys()].sort()).toEqual([...kept.keys()].sort());
        }
      }),
      RUNS,
    );
  });

  it('a new backup never makes it keep fewer backups of the newest day, week or month than before (nightly histories)', () => {
    // A nightly history at the schedule's local time, one more night added: the kept set may move
    // forward by at most one backup per rule.
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 800 }), ruleSet, (nights, r) => {
        fc.pre(r.daily + r.weekly + r.monthly > 0);
        const h: GfsBackup[] = [];
        for (let i = 0; i < nights; i++) h.push({ key: `n${i}`, at: new Date(START + i * 86_400_000 + 2 * 3_600_000) });
        const before = gfsKeep(h, r);
        const after = gfsKeep([...h, { key: 'new', at: new Date(START + nights * 86_400_000 + 2 * 3_600_000) }], r);
        expect(after.has('new')).toBe(true);
        const dropped = [...before.keys()].filter((k) => !after.has(k));
        expect(dropped.length).toBeLessThanOrEqual(4);
      }),
      { numRuns: 100 },
    );
  });
});
