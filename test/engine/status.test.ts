/** `status`'s verdict, pure: listings, manifests and drill summaries at one instant → each database's status. */
import { describe, expect, it } from 'vitest';
import { formatStatus } from '../../cli/status.ts';
import { nextRuns } from '../../cli/next-run.ts';
import { computeStatus, DAILY_MAX_AGE_HOURS, maxAgeForRuns, type DatabaseFacts, type ReadBackup } from '../../engine/status.ts';
import { buildDumpKey, manifestKeyFor } from '../../engine/store/backup-key.ts';
import type { Manifest } from '../../engine/store/manifest.ts';
import type { StoredBackup } from '../../engine/store/s3-store.ts';
import { DEAD_MAN_HOURS } from '../../infra/constructs/backup-alerts.ts';

const H = 3_600_000;
const NOW = new Date('2026-12-06T05:00:00.000Z');

/** A complete backup of `database` taken `hoursAgo` by a right clock (key time = S3's stamp minus the dump's minute). */
function backup(database: string, hoursAgo: number, bytes: number, options: { readonly keyAheadHours?: number } = {}): StoredBackup & { manifest: Manifest } {
  const storedAt = new Date(NOW.getTime() - hoursAgo * H);
  const startedAt = new Date(storedAt.getTime() - 60_000 + (options.keyAheadHours ?? 0) * H);
  const key = buildDumpKey('p/', database, startedAt);
  const manifest: Manifest = {
    formatVersion: 2, database, key, bytes, sha256: 'a'.repeat(64), compression: 'zstd:1', pgDumpVersion: '18.1', serverVersion: '16.4',
    startedAt: startedAt.toISOString(), finishedAt: new Date(startedAt.getTime() + 55_000).toISOString(), durationMs: 55_000, reason: 'scheduled', toolVersion: '0.1.0', runner: 'lambda',
  };
  return { database, key, manifestKey: manifestKeyFor(key), startedAt, bytes, lastModified: storedAt, storedAt, manifest };
}

function facts(database: string, backups: ReadBackup[], extra: Partial<DatabaseFacts> = {}): DatabaseFacts {
  return { database, complete: backups, read: backups, serverTime: NOW, ...extra };
}

describe('computeStatus', () => {
  it('measures the age with S3\'s clock (the listing\'s Date), not the caller\'s, and marks a database stale past maxAgeHours', () => {
    const app = facts('app', [backup('app', 3, 1000)]);
    const ledger = facts('ledger', [backup('ledger', 30, 1000)]);
    // The caller's clock is a year ahead: ages still come from S3's.
    const r = computeStatus({ databases: [ledger, app], now: new Date(NOW.getTime() + 365 * 24 * H), maxAgeHours: 26 });
    expect(r.databases.map((d) => [d.database, d.verdict, d.newest?.ageHours])).toEqual([['app', 'ok', 3], ['ledger', 'stale', 30]]);
    expect(r.stale).toEqual(['ledger']);
    expect(r.databases[1]!.problems).toEqual(['newest complete backup is 30 h old (allowed: 26 h)']);
    // Without S3's clock, the caller's is the reference.
    expect(computeStatus({ databases: [{ ...app, serverTime: undefined }], now: new Date(NOW.getTime() + 24 * H), maxAgeHours: 26 }).databases[0]!.newest!.ageHours).toBe(27);
  });

  it('takes the newest readable backup by S3\'s stamp, reports unreadable manifests, and calls a database with none readable stale', () => {
    const good = backup('app', 2, 1000);
    const broken = { ...backup('app', 1, 1000), problem: 'manifest s3://b/x.json is unreadable: not JSON' };
    const { manifest: _m, ...brokenListed } = broken;
    const r = computeStatus({ databases: [facts('app', [brokenListed as ReadBackup, good])], now: NOW, maxAgeHours: 26 });
    expect(r.databases[0]).toMatchObject({ verdict: 'attention', newest: { key: good.key, ageHours: 2 }, unreadable: [{ key: broken.key, problem: broken.problem }], problems: ['1 backup(s) with an unreadable manifest'] });
    const none = computeStatus({ databases: [facts('app', [brokenListed as ReadBackup])], now: NOW, maxAgeHours: 26 });
    expect(none.databases[0]).toMatchObject({ verdict: 'stale', newest: null, problems: ['no complete backup with a readable manifest', '1 backup(s) with an unreadable manifest'] });
    expect(none.stale).toEqual(['app']);
  });

  it('lists an expected database (DATABASES) that has no backup at all as stale', () => {
    const r = computeStatus({ databases: [facts('app', [backup('app', 1, 10)])], expected: ['app', 'billing'], now: NOW, maxAgeHours: 26 });
    expect(r.databases.map((d) => d.database)).toEqual(['app', 'billing']);
    expect(r.databases[1]).toMatchObject({ verdict: 'stale', newest: null, completeBackups: 0, problems: ['no complete backup'] });
  });

  it('compares the newest dump with the median of the 7 before it, and flags a drop by half or a doubling', () => {
    const steady = [1, 2, 3, 4, 5, 6, 7, 8].map((d) => backup('app', d * 24, 1000 + d));
    const shrunk = [backup('app', 1, 400), ...steady];
    const r = computeStatus({ databases: [facts('app', shrunk)], now: NOW, maxAgeHours: 26 });
    // The 7 before the newest: 1001…1007, median 1004 (the eighth is outside the window).
    expect(r.databases[0]!.sizeTrend).toEqual({ lastBytes: 400, medianBytes: 1004, previous: 7, changePercent: -60 });
    expect(r.databases[0]!.problems).toEqual(['newest dump is 60 % smaller than the median of the 7 before it']);
    const grown = computeStatus({ databases: [facts('app', [backup('app', 1, 2500), ...steady.slice(0, 2)])], now: NOW, maxAgeHours: 26 }).databases[0]!;
    expect(grown.sizeTrend).toMatchObject({ medianBytes: 1001.5, previous: 2 });
    expect(grown.problems).toEqual(['newest dump is 2.5× the median of the 2 before it']);
    const normal = computeStatus({ databases: [facts('app', [backup('app', 1, 1100), ...steady])], now: NOW, maxAgeHours: 26 }).databases[0]!;
    expect(normal).toMatchObject({ verdict: 'ok', problems: [], sizeTrend: { changePercent: 10 } });
    expect(computeStatus({ databases: [facts('app', [backup('app', 1, 5)])], now: NOW, maxAgeHours: 26 }).databases[0]!.sizeTrend).toBeNull();
  });

  it('flags backups taken by a clock ahead of S3\'s beyond the tolerance, from the listing alone', () => {
    const skewed = backup('app', 5, 1000, { keyAheadHours: 48 });
    const { manifest: _m, ...listedOnly } = skewed;
    const r = computeStatus({ databases: [{ database: 'app', complete: [backup('app', 1, 1000), listedOnly], read: [backup('app', 1, 1000)], serverTime: NOW }], now: NOW, maxAgeHours: 26 });
    expect(r.databases[0]!.clockSkew).toEqual([{ key: skewed.key, seconds: 48 * 3600 - 60 }]);
    expect(r.databases[0]).toMatchObject({ verdict: 'attention', problems: ['1 backup(s) taken with a wrong clock (time ahead of S3\'s)'] });
  });

  it('reports the last drill: failed and skipped need a look, and says whether it drilled the newest backup', () => {
    const [b1, b2] = [backup('app', 1, 1000), backup('app', 25, 1000)];
    const at = (drill: DatabaseFacts['drill']) => computeStatus({ databases: [facts('app', [b1, b2], { drill })], now: NOW, maxAgeHours: 26 }).databases[0]!;
    expect(at({ key: b1.key, summary: { status: 'ok', drilledAt: '2026-12-06T04:00:00.000Z', failingTables: [] } })).toMatchObject({ verdict: 'ok', lastDrill: { status: 'ok', ofNewest: true } });
    expect(at({ key: b2.key, summary: { status: 'failed', drilledAt: '2026-12-05T04:00:00.000Z', failingTables: ['public.t: 3 rows restored, the backup held 4'] } })).toMatchObject({
      verdict: 'attention', lastDrill: { status: 'failed', ofNewest: false }, problems: ['last drill failed: public.t: 3 rows restored, the backup held 4'],
    });
    expect(at({ key: b1.key, summary: { status: 'skipped', drilledAt: '2026-12-06T04:00:00.000Z', failingTables: [] } }).problems).toEqual(['last drill skipped (too large for the drill\'s temporary space)']);
    expect(at({ key: b1.key, problem: 'drill report s3://b/k.verify.json is unreadable' })).toMatchObject({ lastDrill: null, problems: ['drill report unreadable: drill report s3://b/k.verify.json is unreadable'] });
    expect(at(undefined)).toMatchObject({ verdict: 'ok', lastDrill: null });
  });
});

describe('maxAgeForRuns (the allowed age from the deployed schedule)', () => {
  it('is a daily schedule\'s 26 hours, the dead-man alarms\' window, across a DST change; a weekly one\'s 170', () => {
    expect(DAILY_MAX_AGE_HOURS).toBe(DEAD_MAN_HOURS);
    // Paris leaves summer time on 2027-10-31: one gap of that week is 25 hours.
    const daily = nextRuns('cron(0 2 * * ? *)', 'Europe/Paris', new Date('2027-10-27T12:00:00Z'), 8)!.runs;
    expect(daily.slice(1).map((r, i) => (r.getTime() - daily[i]!.getTime()) / H)).toContain(25);
    expect(maxAgeForRuns(daily)).toBe(26);
    expect(maxAgeForRuns(nextRuns('cron(0 3 ? * 1 *)', 'Europe/Paris', NOW, 8)!.runs)).toBe(170);
    expect(maxAgeForRuns(nextRuns('cron(0 */6 * * ? *)', 'UTC', NOW, 8)!.runs)).toBe(8);
    expect(maxAgeForRuns([NOW])).toBeUndefined();
  });
});

describe('formatStatus (the screen)', () => {
  it('shows one row per database, what needs a look under it, the alarms, and the verdict', () => {
    const report = computeStatus({ databases: [facts('app', [backup('app', 3, 2048)]), facts('ledger', [backup('ledger', 30, 1000)])], now: NOW, maxAgeHours: 26 });
    const text = formatStatus(report, {
      bucket: 'b', prefix: 'p/', maxAgeFrom: 'schedule cron(0 2 * * ? *) in Europe/Paris',
      deployed: { stack: 'PgS3Backup', state: 'found', alarms: [{ name: 'DeadMan0', state: 'ALARM', reason: 'no data', since: '2026-12-06T04:00:00.000Z' }, { name: 'Errors', state: 'OK', reason: '', since: null }], dashboardUrl: 'https://dash' },
    });
    const lines = text.split('\n');
    expect(lines[0]).toBe('pg-s3-backup status: s3://b/p/ — 2 database(s), newest backup allowed 26 h old (schedule cron(0 2 * * ? *) in Europe/Paris)');
    expect(lines[2]).toMatch(/^DATABASE +STATE +NEWEST \(UTC\) +AGE +SIZE +VS MEDIAN +DURATION +RUNNER +LAST DRILL$/);
    expect(lines[3]).toMatch(/^app +OK +2026-12-06 02:00Z +3 h +2\.0 KiB +- +55\.0 s +lambda +never$/);
    expect(lines[4]).toMatch(/^ledger +STALE +2026-12-04 23:00Z +30 h /);
    expect(text).toContain('✗ ledger:\n    newest complete backup is 30 h old (allowed: 26 h)');
    expect(text).toContain('stack PgS3Backup: 2 alarm(s): 1 OK, 1 in ALARM, 0 insufficient data\n    ALARM DeadMan0 since 2026-12-06 04:00Z: no data\ndashboard: https://dash');
    expect(lines.at(-1)).toMatch(/^STALE: ledger — run a backup now/);
  });
});
