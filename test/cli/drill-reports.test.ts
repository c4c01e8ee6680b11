/**
 * The restore drill's reports (`<dump key>.verify.json`, written by the drill function) seen from
 * the CLI, against the real CLI, PostgreSQL and moto: `list` shows each backup's last drill result
 * (read only for the backups whose listing holds a report), and pruning deletes a backup's report
 * with it instead of leaving it behind for the lifecycle backstop.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { manifestKeyFor, verifyReportKeyFor } from '../../engine/store/backup-key.ts';
import { listKeys, putText } from '../support/aws.ts';
import { runCli, startCliServices, type CliServices, listedOf } from '../support/cli.ts';

let svc: CliServices;
/** Three backups of app, oldest first. */
const keys: string[] = [];

/** A report as engine/restore/drill.ts writes it (the fields list reads, and the rest of its shape). */
function report(key: string, status: 'ok' | 'failed' | 'skipped', drilledAt: string, failingTables: string[] = []): string {
  return JSON.stringify({
    kind: 'pg-s3-backup restore drill',
    status,
    database: 'app',
    key,
    drilledAt,
    rowCounts: 'exact',
    tables: [],
    failingTables,
    problems: [],
    warnings: [],
    requiredTempBytes: 1,
    availableTempBytes: 2,
    verify: undefined,
    whatToDo: undefined,
  });
}

beforeAll(async () => {
  svc = await startCliServices({ retentionCount: 10 });
  for (let i = 0; i < 3; i++) {
    const run = await runCli(['backup', '--database', 'app'], svc.env);
    expect(run.code, run.stderr).toBe(0);
    keys.push((run.result!.backups as { key: string }[])[0]!.key);
  }
  // The newest was drilled and passed; the middle one failed its drill; the oldest was never drilled.
  await putText(svc.clients, svc.bucket, verifyReportKeyFor(keys[2]!), report(keys[2]!, 'ok', '2026-12-02T03:04:05.678Z'));
  await putText(svc.clients, svc.bucket, verifyReportKeyFor(keys[1]!), report(keys[1]!, 'failed', '2026-12-01T03:05:00.000Z', ['public.orders: 4001 rows restored, the backup held 4000']));
});
afterAll(async () => {
  await svc?.stop();
});

describe('list shows the last drill of each backup', () => {
  it('--json has lastDrill (status, drilledAt, failingTables), null for a backup never drilled', async () => {
    const listed = await runCli(['list', '--json'], svc.env);
    expect(listed.code, listed.stderr).toBe(0);
    const rows = listedOf<{ key: string; lastDrill: unknown }>(listed);
    expect(rows.map((r) => r.key)).toEqual([keys[2], keys[1], keys[0]]);
    expect(rows.map((r) => r.lastDrill)).toEqual([
      { status: 'ok', drilledAt: '2026-12-02T03:04:05.678Z', failingTables: [] },
      { status: 'failed', drilledAt: '2026-12-01T03:05:00.000Z', failingTables: ['public.orders: 4001 rows restored, the backup held 4000'] },
      null,
    ]);
    // A report is not a backup: nothing new is listed, and no row carries a report's key.
    expect(rows.every((r) => !r.key.endsWith('.verify.json'))).toBe(true);
  });

  it('the table gets a DRILL column: ok|failed|skipped and when (UTC), empty for a backup never drilled', async () => {
    const listed = await runCli(['list'], svc.env);
    expect(listed.code, listed.stderr).toBe(0);
    const lines = listed.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^DATABASE\s+STARTED \(UTC\)\s+SIZE\s+SHA256\s+DRILL\s+KEY$/);
    expect(lines[1]).toMatch(new RegExp(`\\s+ok 2026-12-02 03:04Z\\s+${keys[2]!.replace(/\./g, '\\.')}$`));
    expect(lines[2]).toMatch(new RegExp(`\\s+failed 2026-12-01 03:05Z\\s+${keys[1]!.replace(/\./g, '\\.')}$`));
    expect(lines[3]).toMatch(new RegExp(`[0-9a-f]{16}\\s+${keys[0]!.replace(/\./g, '\\.')}$`));
  });

  it('an unreadable report is reported on stderr and shown as never drilled; the listing still succeeds', async () => {
    await putText(svc.clients, svc.bucket, verifyReportKeyFor(keys[0]!), 'not json');
    const listed = await runCli(['list', '--json'], svc.env);
    expect(listed.code, listed.stderr).toBe(0);
    expect((listedOf<{ lastDrill: unknown }>(listed))[2]!.lastDrill).toBeNull();
    expect(listed.stderr).toMatch(/drill result of .* not shown: drill report .*\.verify\.json is unreadable/);
  });
});

describe('pruning deletes a backup together with its drill report', () => {
  it('prune with RETENTION_COUNT=1 removes the two older backups, their manifests and their .verify.json; the kept backup keeps its report', async () => {
    expect(await listKeys(svc.clients, svc.bucket, 'pg-s3-backup/app/')).toHaveLength(9);
    const pruned = await runCli(['prune'], { ...svc.env, RETENTION_COUNT: '1' });
    expect(pruned.code, pruned.stderr).toBe(0);
    const left = await listKeys(svc.clients, svc.bucket, 'pg-s3-backup/app/');
    expect(left.sort()).toEqual([keys[2]!, manifestKeyFor(keys[2]!), verifyReportKeyFor(keys[2]!)].sort());
  });
});
