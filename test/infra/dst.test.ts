import { describe, expect, it } from 'vitest';
import { checkDailyTime, instantsOfWallTime, isValidTimeZone, proposeSafeTimes } from '../../infra/dst.ts';

// A fixed start keeps the expected dates stable; the check itself looks 10 years ahead.
const from = new Date('2026-01-01T00:00:00Z');

describe('DST gap detection (EventBridge Scheduler skips a local time that does not exist)', () => {
  it('rejects 02:00 in Europe/Paris: skipped every last Sunday of March', () => {
    const r = checkDailyTime('Europe/Paris', 2, 0, { from });
    expect(r.skipped.slice(0, 3)).toEqual(['2026-03-29', '2027-03-28', '2028-03-26']);
    expect(r.skipped).toHaveLength(10);
  });

  it('accepts 01:00 and 03:00 in Europe/Paris, and 02:00 in UTC and Asia/Tokyo', () => {
    for (const [zone, hour] of [['Europe/Paris', 1], ['Europe/Paris', 3], ['UTC', 2], ['Asia/Tokyo', 2]] as const) {
      expect(checkDailyTime(zone, hour, 0, { from }).skipped, `${zone} ${hour}:00`).toEqual([]);
    }
  });

  it('sees gaps of other zones and shapes: New York 02:30, Lord Howe half-hour shift at 02:15', () => {
    expect(checkDailyTime('America/New_York', 2, 30, { from }).skipped[0]).toBe('2026-03-08');
    expect(checkDailyTime('Australia/Lord_Howe', 2, 15, { from }).skipped[0]).toBe('2026-10-04');
    expect(checkDailyTime('Australia/Lord_Howe', 2, 45, { from }).skipped).toEqual([]);
  });

  it('reports repeated (fall-back) times separately: they run once, nothing is skipped', () => {
    const paris = checkDailyTime('Europe/Paris', 2, 30, { from });
    expect(paris.repeated[0]).toBe('2026-10-25');
    const ny = checkDailyTime('America/New_York', 1, 30, { from });
    expect(ny.skipped).toEqual([]);
    expect(ny.repeated[0]).toBe('2026-11-01');
  });

  it('finds both instants of a repeated wall time and none in a gap', () => {
    expect(instantsOfWallTime(Date.UTC(2026, 9, 25, 2, 30), 'Europe/Paris').map((t) => new Date(t).toISOString())).toEqual([
      '2026-10-25T00:30:00.000Z',
      '2026-10-25T01:30:00.000Z',
    ]);
    expect(instantsOfWallTime(Date.UTC(2026, 2, 29, 2, 30), 'Europe/Paris')).toEqual([]);
    expect(instantsOfWallTime(Date.UTC(2026, 2, 29, 3, 0), 'Europe/Paris').map((t) => new Date(t).toISOString())).toEqual(['2026-03-29T01:00:00.000Z']);
  });

  it('proposes the nearest safe times before and after, never inside a gap or a repeated hour', () => {
    expect(proposeSafeTimes('Europe/Paris', 2, 0, { from })).toEqual(['01:00', '03:00']);
    // 01:xx repeats in New York (02:00 EDT falls back to 01:00 EST): the earlier proposal is 00:30.
    expect(proposeSafeTimes('America/New_York', 2, 30, { from })).toEqual(['00:30', '03:30']);
  });

  it('knows valid IANA zones', () => {
    expect(isValidTimeZone('Europe/Paris')).toBe(true);
    expect(isValidTimeZone('UTC')).toBe(true);
    expect(isValidTimeZone('Europe/Pariss')).toBe(false);
    expect(isValidTimeZone('')).toBe(false);
  });
});
