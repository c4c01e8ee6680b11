/** The pure parts of the check and `doctor`: next run of a schedule, privilege verdicts, the report text, the check event. */
import { describe, expect, it } from 'vitest';
import { formatReport } from '../../cli/doctor.ts';
import { humanDelay, nextRuns } from '../../cli/next-run.ts';
import { fail, pass, report, warn } from '../../engine/check/check.ts';
import { privilegeChecks, type PrivilegeFacts } from '../../engine/check/privileges.ts';
import { buildCheckProbeKey, checkProbePattern, parseKey } from '../../engine/store/backup-key.ts';
import { parseCheckEvent } from '../../lambda/handler.ts';

describe('nextRuns (EventBridge Scheduler cron in an IANA zone)', () => {
  it('gives the next local time, in the zone', () => {
    const r = nextRuns('cron(0 3 * * ? *)', 'Europe/Paris', new Date('2026-12-02T10:00:00Z'), 2)!;
    expect(r.runs.map((d) => d.toISOString())).toEqual(['2026-12-03T02:00:00.000Z', '2026-12-04T02:00:00.000Z']);
    expect(r.skipped).toEqual([]);
  });

  it('skips the night whose time does not exist (spring forward), as Scheduler does', () => {
    const r = nextRuns('cron(30 2 * * ? *)', 'Europe/Paris', new Date('2027-03-27T12:00:00Z'))!;
    expect(r.runs.map((d) => d.toISOString())).toEqual(['2027-03-29T00:30:00.000Z']);
    expect(r.skipped.map((d) => d.toISOString())).toEqual(['2027-03-28T01:00:00.000Z']);
  });

  it('reads day-of-week as Scheduler does (1 = Sunday) and knows rate() has no computable next run', () => {
    // 2-6 = Monday to Friday; 2026-12-04 is a Friday.
    expect(nextRuns('cron(30 2 ? * 2-6 *)', 'America/New_York', new Date('2026-12-04T12:00:00Z'))!.runs[0]!.toISOString()).toBe('2026-12-07T07:30:00.000Z');
    expect(nextRuns('rate(1 day)', 'UTC', new Date())).toBeUndefined();
    expect(nextRuns('cron(0 3 * *)', 'UTC', new Date())).toBeUndefined();
  });

  it('says delays in hours and minutes', () => {
    expect(humanDelay(16 * 3600_000)).toBe('16 h 00 min');
    expect(humanDelay(3 * 60_000)).toBe('3 min');
    expect(humanDelay(50 * 3600_000)).toBe('2 d 2 h');
  });
});

const facts: PrivilegeFacts = {
  role: 'backup',
  superuser: false,
  bypassRls: false,
  serverVersionNum: 130011,
  loCompatPrivileges: false,
  relations: 10,
  unreadable: [{ name: 'sales.orders', schema: 'sales', schemaUsage: false }],
  unreadableCount: 1,
  rlsBlocked: [],
  rlsBlockedCount: 0,
  largeObjects: 5,
  unreadableLargeObjects: ['16400', '16401', '16402', '16403', '16404'],
  unreadableLargeObjectCount: 5,
};

describe('privilegeChecks', () => {
  it('before PostgreSQL 14 proposes per-schema grants (no pg_read_all_data), names the schema without USAGE', () => {
    const [tables, rls, lo] = privilegeChecks('app', facts);
    expect(tables).toMatchObject({ ok: false, detail: expect.stringContaining('no USAGE on schema(s) sales') });
    expect(tables!.fix).toContain('GRANT USAGE ON SCHEMA sales TO backup; GRANT SELECT ON ALL TABLES IN SCHEMA sales TO backup;');
    expect(rls).toMatchObject({ ok: true });
    expect(lo).toMatchObject({ ok: false, detail: expect.stringContaining('OIDs 16400, 16401, 16402, 16403, 16404)') });
    expect(lo!.fix).toContain("EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO backup', o)");
  });

  it('passes a superuser, and lo_compat_privileges', () => {
    const su = privilegeChecks('app', { ...facts, superuser: true, unreadable: [], unreadableCount: 0, unreadableLargeObjects: [], unreadableLargeObjectCount: 0 });
    expect(su.every((c) => c.ok)).toBe(true);
    expect(su[1]!.detail).toContain('superuser');
    const compat = privilegeChecks('app', { ...facts, loCompatPrivileges: true, unreadableLargeObjects: [], unreadableLargeObjectCount: 0 });
    expect(compat[2]).toMatchObject({ ok: true, detail: expect.stringContaining('lo_compat_privileges') });
  });
});

describe('the probe key', () => {
  it('lives under <prefix>_check/probe-*, never parses as a backup, and the IAM pattern covers it', () => {
    const key = buildCheckProbeKey('pg-s3-backup/', new Date('2026-12-02T01:02:03.004Z'), 'ab12');
    expect(key).toBe('pg-s3-backup/_check/probe-20261202T010203004Z-ab12');
    expect(parseKey('pg-s3-backup/', key)).toBeUndefined();
    expect(key.startsWith(checkProbePattern('pg-s3-backup/').slice(0, -1))).toBe(true);
    // A database named _check keeps its dumps under _check/<YYYY>/: outside the pattern.
    expect('pg-s3-backup/_check/2026/12/02/_check-20261202T010203004Z.dump'.startsWith(checkProbePattern('pg-s3-backup/').slice(0, -1))).toBe(false);
    expect(() => buildCheckProbeKey('p/', new Date(), '../x')).toThrow(RangeError);
  });
});

describe('formatReport and the check event', () => {
  it('marks each check, says what to do under warnings and failures, and tallies', () => {
    const text = formatReport(report([pass('a', 'fine'), warn('b', 'meh', 'do b'), fail('c', 'broken', 'do c')]), 'title');
    expect(text).toBe(['title', '', '✓ a: fine', '! b: meh', '    what to do: do b', '✗ c: broken', '    what to do: do c', '', "3 checks: 1 passed, 1 warning(s), 1 failed — tonight's backup would not work as it should"].join('\n'));
  });

  it('recognises {"check": true} and rejects other uses of "check"', () => {
    expect(parseCheckEvent({ check: true })).toEqual({ databases: undefined });
    expect(parseCheckEvent({ check: true, databases: ['a'] })).toEqual({ databases: ['a'] });
    expect(parseCheckEvent({ reason: 'x' })).toBeUndefined();
    expect(parseCheckEvent(undefined)).toBeUndefined();
    expect(() => parseCheckEvent({ check: false })).toThrow(/invalid check event/);
    expect(() => parseCheckEvent({ check: true, dryRun: true })).toThrow(/unknown field\(s\) "dryRun"/);
  });
});
