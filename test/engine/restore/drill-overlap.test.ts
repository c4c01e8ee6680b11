/**
 * The restore drill, `verify --latest` and `restore --latest` overlapping a backup run and its
 * prune (EventBridge Scheduler runs the schedules independently, either may start twice, and an
 * operator runs commands whenever): with RETENTION_COUNT=1, a backup that completes while the
 * newest one is downloaded deletes it. That backup was pruned, not found unrestorable: nothing may
 * say FAILED, "do not count on this backup" or "check network access". The overlap is injected
 * through the store (its `openDump` runs a whole backup first, whose prune deletes the backup
 * being read), against moto, real PostgreSQL and the layers.
 */
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runBackup } from '../../../engine/backup/backup.ts';
import { loadConfig, type Config } from '../../../engine/config.ts';
import { createDeps } from '../../../engine/deps.ts';
import type { EngineEvent } from '../../../engine/events.ts';
import type { Message } from '../../../engine/notify.ts';
import { toolCommand } from '../../../engine/pg/pg-dump.ts';
import { parseTargetUrl } from '../../../engine/pg/connection.ts';
import { DRILL_PICKS, runDrill, verifyNewest, verifyReportKeyFor, type DrillDatabaseReport, type DrillDeps } from '../../../engine/restore/drill.ts';
import { restoreBackup } from '../../../engine/restore/restore.ts';
import { verifyOnThrowawayServer } from '../../../engine/restore/verify.ts';
import { createSource } from '../../../engine/store/create.ts';
import { awsEnv, type TestClients } from '../../support/aws.ts';
import { createDatabase } from '../../support/fixtures.ts';
import type { TestAws } from '../../support/moto.ts';
import type { TestPostgres } from '../../support/postgres.ts';
import { startDrillServices, type DrillServices } from '../../support/services.ts';

let pgsrv: TestPostgres;
let aws: TestAws;
let c: TestClients;
let serverLayer: string;
let bucket: string;
let tempDir: string;
let config: Config;

let svc: DrillServices | undefined;

beforeAll(async () => {
  svc = await startDrillServices('drill-overlap');
  ({ pg: pgsrv, aws, c, bucket, serverLayer, tempDir } = svc);
  const dumpLayer = svc.layer;
  await createDatabase(pgsrv, 'shop');
  await pgsrv.query(
    `create table customers (id int primary key, name text);
     insert into customers select g, 'c' || g from generate_series(1, 300) g;`,
    [],
    'shop',
  );
  config = loadConfig({
    ...awsEnv(aws.endpoint),
    DATABASE_URL: pgsrv.urlFor('shop'),
    BACKUP_BUCKET: bucket,
    PG_DUMP_BIN: join(dumpLayer, 'bin', 'pg_dump'),
    DATABASES: 'shop',
    // One backup kept: each backup run's prune deletes the one before, the one the drill took.
    RETENTION_COUNT: '1',
  });
}, 900_000); // the first run builds the pg-server layer (up to 6 minutes cold, on a busy machine)

afterAll(async () => {
  await svc?.stop();
});

async function backupNow(): Promise<string> {
  const result = await runBackup({ reason: 'overlap test' }, config, createDeps(config, { events: () => {} }));
  expect(result.status).toBe('succeeded');
  return result.backups[0]!.key;
}

async function keysUnder(database: string): Promise<string[]> {
  const res = await c.s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${config.prefix}${database}/` }));
  return (res.Contents ?? []).map((o) => o.Key!).sort();
}

/**
 * The drill wired as drill-run.ts wires it, but whose download of a dump first runs a whole
 * backup of the database (the backup schedule firing meanwhile) while `overlaps` says so: that
 * run's prune deletes the backup being drilled before its first byte is read.
 */
function overlappingDrill(overlaps: (opened: number) => boolean): { deps: DrillDeps; alerts: Message[]; events: EngineEvent[]; madeMeanwhile: string[] } {
  const engine = createDeps(config, { events: () => {} });
  const store = createSource(config, engine);
  const alerts: Message[] = [];
  const events: EngineEvent[] = [];
  const madeMeanwhile: string[] = [];
  let opened = 0;
  const deps: DrillDeps = {
    restore: {
      source: {
        readManifest: (key, dump) => store.readManifest(key, dump),
        openDump: async (key) => {
          if (overlaps(++opened)) madeMeanwhile.push(await backupNow());
          return store.openDump(key);
        },
      },
      pgRestore: toolCommand('pg_restore', config),
      spawn: engine.spawn,
      tempDir,
      events: () => {},
    },
    newestBackup: async (database) => (await store.latestBackup(database)).backup?.key,
    readManifest: (key) => store.readManifest(key),
    writeReport: (key, body) => store.writeReport(key, body),
    alert: async (m) => {
      alerts.push(m);
    },
    events: (e) => events.push(e),
  };
  return { deps, alerts, events, madeMeanwhile };
}

async function readReport(key: string): Promise<DrillDatabaseReport> {
  const res = await c.s3.send(new GetObjectCommand({ Bucket: bucket, Key: verifyReportKeyFor(key) }));
  return JSON.parse(await res.Body!.transformToString()) as DrillDatabaseReport;
}

it('a backup pruned while the drill downloads it (RETENTION_COUNT=1, a newer backup completed meanwhile) is no failed drill: the drill takes the newest and says so', async () => {
  const drilledFirst = await backupNow();
  const { deps, alerts, events, madeMeanwhile } = overlappingDrill((opened) => opened === 1);
  const { reports } = await runDrill(deps, { databases: ['shop'], server: { layerRoot: serverLayer, parentDir: tempDir } });
  expect(madeMeanwhile).toHaveLength(1);
  const newest = madeMeanwhile[0]!;
  const report = reports[0]!;
  expect({ status: report.status, key: report.key, problems: report.problems }).toEqual({ status: 'ok', key: newest, problems: [] });
  expect(report.tables.map((t) => [t.table, t.restoredRows, t.ok])).toEqual([['customers', 300, true]]);
  expect(report.warnings[0]).toBe(`backup ${drilledFirst} was deleted (by a prune, or by hand) while it was drilled: the drill took the newest backup again`);
  // No FAILED alert, no "do not count on this backup"; the report is beside the backup drilled, none beside the pruned one.
  expect(alerts).toEqual([]);
  expect(events.filter((e) => e.event === 'drill.finished').map((e) => (e as { status: string }).status)).toEqual(['ok']);
  expect((await readReport(newest)).status).toBe('ok');
  expect(await keysUnder('shop')).toEqual([newest, `${newest}.json`, verifyReportKeyFor(newest)].sort());
  expect(readdirSync(tempDir)).toEqual([]);
});

it(`a drill whose every pick is pruned before its restore (${DRILL_PICKS} times) is skipped, saying why and what to do, with no report and no FAILED`, async () => {
  await backupNow();
  const { deps, alerts, events, madeMeanwhile } = overlappingDrill(() => true);
  const { reports } = await runDrill(deps, { databases: ['shop'], server: { layerRoot: serverLayer, parentDir: tempDir } });
  expect(madeMeanwhile).toHaveLength(DRILL_PICKS);
  const report = reports[0]!;
  expect({ status: report.status, skipReason: report.skipReason, key: report.key, problems: report.problems }).toEqual({ status: 'skipped', skipReason: 'pruned while drilled', key: undefined, problems: [] });
  expect(report.warnings).toHaveLength(DRILL_PICKS);
  expect(alerts.map((a) => a.subject)).toEqual(['[pg-s3-backup] restore drill SKIPPED (pruned while drilled): shop']);
  expect(alerts[0]!.body).toMatch(/What to do: Each of the 3 backups the drill took was deleted before its restore[\s\S]*Schedule the drill apart from the backups/);
  expect(alerts[0]!.body).not.toMatch(/FAILED|Do not count on this backup/);
  expect(events.filter((e) => e.event === 'drill.finished').map((e) => (e as { status: string }).status)).toEqual(['skipped']);
  // The newest backup is there, with no report beside it: the next drill starts with this database.
  const newest = madeMeanwhile[DRILL_PICKS - 1]!;
  expect(await keysUnder('shop')).toEqual([newest, `${newest}.json`].sort());
  expect(readdirSync(tempDir)).toEqual([]);
});

it('verify --latest (verifyNewest) of a backup pruned while it is verified verifies the newest then, naming the one deleted: no FAILED report', async () => {
  const first = await backupNow();
  const { deps } = overlappingDrill((opened) => opened === 1);
  const store = createSource(config, createDeps(config, { events: () => {} }));
  const gone: string[] = [];
  const report = await verifyNewest(
    async () => (await store.latestBackup('shop')).backup!.key,
    (key) => verifyOnThrowawayServer(deps.restore, { key, server: { layerRoot: serverLayer, parentDir: tempDir } }),
    (key) => store.readManifest(key),
    (key) => gone.push(key),
  );
  const newest = (await store.latestBackup('shop')).backup!.key;
  expect(newest).not.toBe(first);
  expect({ status: report.status, key: report.key, problems: report.problems, sha256Verified: report.sha256Verified }).toEqual({ status: 'ok', key: newest, problems: [], sha256Verified: true });
  expect(report.warnings[0]).toBe(`backup ${first} was deleted (by a prune, or by hand) while it was verified: the newest backup was verified instead`);
  expect(gone).toEqual([first]);
  expect(readdirSync(tempDir)).toEqual([]);
});

it('restore --latest of a backup pruned before its download says so (DumpGoneError), not "check network access", and touches no target', async () => {
  const chosen = await backupNow();
  const { deps } = overlappingDrill((opened) => opened === 1);
  const target = parseTargetUrl(pgsrv.urlFor('shop_restored'));
  const err = await restoreBackup(deps.restore, { key: chosen, target, create: true }).then(
    () => undefined,
    (e: unknown) => e as Error & { hint?: string },
  );
  expect({ name: err?.name, message: err?.message, hint: err?.hint }).toEqual({
    name: 'DumpGoneError',
    message: `s3://${bucket}/${chosen} does not exist: the backup was deleted after it was chosen (by a prune running at the same time, or by hand), or it never completed`,
    hint: 'Run `pg-s3-backup list` for the backups there are (with --latest: run again, it takes the newest). A restore this stopped after its first pass (a sharded backup\'s data archives are read after its schema) left its target partly restored, unless --create made it (then it was dropped): restore again with --clean, or with --create into a new database.',
  });
  const [exists] = await pgsrv.query<{ n: string }>("select count(*) as n from pg_database where datname = 'shop_restored'", []);
  expect(Number(exists!.n)).toBe(0);
  expect(readdirSync(tempDir)).toEqual([]);
});

it('a backup that fails its drill on its own (a damaged dump) is reported FAILED, even when a prune deletes it right after: it is not taken for one pruned while drilled', async () => {
  const damaged = await backupNow();
  // One byte flipped in the middle, the size unchanged: the listing and the manifest still agree on it.
  const stored = Buffer.from(await (await c.s3.send(new GetObjectCommand({ Bucket: bucket, Key: damaged }))).Body!.transformToByteArray());
  const at = Math.floor(stored.length / 2);
  stored.writeUInt8(stored.readUInt8(at) ^ 0x01, at);
  await c.s3.send(new PutObjectCommand({ Bucket: bucket, Key: damaged, Body: stored }));
  const { deps, alerts, madeMeanwhile } = overlappingDrill(() => false);
  // A backup run's prune lands right after the drill's first read of the manifest: the next read finds it gone.
  let reads = 0;
  const prunedAfterFirstRead: DrillDeps = {
    ...deps,
    readManifest: async (key) => {
      if (++reads === 2) madeMeanwhile.push(await backupNow());
      return deps.readManifest(key);
    },
  };
  const { reports } = await runDrill(prunedAfterFirstRead, { databases: ['shop'], server: { layerRoot: serverLayer, parentDir: tempDir } });
  const report = reports[0]!;
  expect({ status: report.status, key: report.key }).toEqual({ status: 'failed', key: damaged });
  expect(report.problems.map((p) => p.message).join('\n')).toMatch(/SHA-256|sha256|does not match/i);
  expect(report.warnings.filter((w) => /deleted .* while it was drilled/.test(w))).toEqual([]);
  expect(alerts.map((a) => a.subject)).toEqual(['[pg-s3-backup] restore drill FAILED: shop']);
  expect(readdirSync(tempDir)).toEqual([]);
});

it('a backup pruned while drilled is not drilled again with less time left than a database\'s drill is given to start: skipped, saying so, not FAILED', async () => {
  const first = await backupNow();
  const { deps, alerts, madeMeanwhile } = overlappingDrill((opened) => opened === 1);
  // Time enough to start the first pick (runDrill asks twice: for the run's budget, then before the database), too little for another one.
  let asked = 0;
  const timeLeftMs = () => (++asked <= 2 ? 120_000 : 30_000);
  const { reports } = await runDrill(deps, { databases: ['shop'], server: { layerRoot: serverLayer, parentDir: tempDir }, timeLeftMs });
  expect(madeMeanwhile, JSON.stringify(reports)).toHaveLength(1);
  const report = reports[0]!;
  expect({ status: report.status, skipReason: report.skipReason, key: report.key, problems: report.problems }).toEqual({ status: 'skipped', skipReason: 'pruned while drilled', key: undefined, problems: [] });
  expect(report.warnings).toEqual([`backup ${first} was deleted (by a prune, or by hand) while it was drilled`]);
  expect(report.whatToDo).toMatch(/^The backup the drill took was deleted before its restore was done, and too little of the drill run was left to restore the newest \(30 s\)/);
  expect(alerts.map((a) => a.subject)).toEqual(['[pg-s3-backup] restore drill SKIPPED (pruned while drilled): shop']);
  expect(readdirSync(tempDir)).toEqual([]);
});
