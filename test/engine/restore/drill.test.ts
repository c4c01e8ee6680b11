/**
 * The restore drill end to end (issue 13), against moto and the real layers: a backup (the
 * engine with the pg_dump layer, row counts in the manifest) → the drill function's handler (the
 * throwaway server from the pg-server layer) → `<dump key>.verify.json`, metrics and alerts. Also:
 * a tampered dump (SHA-256 mismatch), a restore that does not give back what the manifest says
 * (a table lost, a count short), and a database over the temporary-space limit.
 */
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { chmodSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runBackup } from '../../../engine/backup/backup.ts';
import { loadConfig } from '../../../engine/config.ts';
import { createDeps } from '../../../engine/deps.ts';
import { type DrillMetrics } from '../../../engine/observability.ts';
import { noMetrics, silentLog, type MetricsSink } from '../../../lambda/powertools.ts';
import { ignoreEvents } from '../../../engine/events.ts';
import { verifyReportKeyFor, type DrillDatabaseReport } from '../../../engine/restore/drill.ts';
import { DRILL_MARGIN_MS } from '../../../engine/restore/drill-run.ts';
import type { EngineEvent } from '../../../engine/events.ts';
import { manifestKeyFor } from '../../../engine/store/backup-key.ts';
import { parseManifest } from '../../../engine/store/manifest.ts';
import { createDrillHandler, DrillFailedError } from '../../../lambda/drill-handler.ts';
import { awsEnv, createAlertInbox, createBucket, testClients, type AlertInbox, type TestClients } from '../../support/aws.ts';
import { createDatabase } from '../../support/fixtures.ts';
import { ensureLayer, ensureServerLayer } from '../../support/layer.ts';
import { startMoto, type TestAws } from '../../support/moto.ts';
import { startPostgres, type TestPostgres } from '../../support/postgres.ts';

let pgsrv: TestPostgres;
let aws: TestAws;
let c: TestClients;
let dumpLayer: string;
let serverLayer: string;
let bucket: string;
let inbox: AlertInbox;
let tempDir: string;
let env: Record<string, string>;
const keys: Record<string, string> = {};
const drills: DrillMetrics[] = [];
const metrics: MetricsSink = { backupFinished() {}, drillFinished: (m) => drills.push(m) };
const context = { awsRequestId: 'req-drill' };

beforeAll(async () => {
  [pgsrv, aws, dumpLayer, serverLayer] = await Promise.all([startPostgres(), startMoto(), ensureLayer(), ensureServerLayer()]);
  c = testClients(aws.endpoint);
  bucket = await createBucket(c);
  inbox = await createAlertInbox(c);
  Object.assign(process.env, awsEnv(aws.endpoint));
  tempDir = mkdtempSync(join(tmpdir(), 'pgs3b-drill-'));
  chmodSync(tempDir, 0o711); // as root the throwaway server runs as nobody (as in /tmp)
  for (const db of ['shop', 'tampered', 'lossy']) {
    await createDatabase(pgsrv, db);
    await pgsrv.query(
      `create table customers (id int primary key, name text);
       insert into customers select g, 'c' || g from generate_series(1, 1500) g;
       create table orders (id bigserial primary key, customer int references customers(id), total numeric(10,2));
       insert into orders (customer, total) select 1 + g % 1500, g * 1.5 from generate_series(1, 4000) g;
       create table audit (at timestamptz, what text);`,
      [],
      db,
    );
  }
  env = {
    ...awsEnv(aws.endpoint),
    DATABASE_URL: pgsrv.urlFor('shop'),
    BACKUP_BUCKET: bucket,
    ALERT_TOPIC_ARN: inbox.topicArn,
    PG_DUMP_BIN: join(dumpLayer, 'bin', 'pg_dump'),
    DATABASES: 'shop,tampered,lossy',
  };
  const config = loadConfig(env);
  const result = await runBackup({ reason: 'drill test' }, config, createDeps(config, { events: ignoreEvents }));
  expect(result.status).toBe('succeeded');
  for (const b of result.backups) keys[b.database] = b.key;
}, 900_000); // the first run builds the pg-server layer (up to 6 minutes cold, on a busy machine)

afterAll(async () => {
  await Promise.all([pgsrv?.stop(), aws?.stop()]);
  if (tempDir) rmSync(tempDir, { recursive: true, force: true });
});

function drillEnv(databases: string): Record<string, string> {
  const { DATABASE_URL: _url, ...rest } = env;
  return { ...rest, DATABASES: databases, PG_SERVER_LAYER: serverLayer };
}

async function readReport(key: string): Promise<DrillDatabaseReport> {
  const res = await c.s3.send(new GetObjectCommand({ Bucket: bucket, Key: verifyReportKeyFor(key) }));
  return JSON.parse(await res.Body!.transformToString()) as DrillDatabaseReport;
}

async function rewrite(key: string, change: (body: Buffer) => Buffer): Promise<() => Promise<void>> {
  const res = await c.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const original = Buffer.from(await res.Body!.transformToByteArray());
  await c.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: change(Buffer.from(original)) }));
  return async () => {
    await c.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: original }));
  };
}

it('backup → drill → report: the newest backup restores into a throwaway server and every table holds the manifest\'s count', async () => {
  drills.length = 0;
  const handler = createDrillHandler(drillEnv('shop'), { log: silentLog, metrics }, { tempDir });
  const result = await handler({ source: 'aws.scheduler', 'detail-type': 'Scheduled Event' }, context);
  expect(result).toEqual({ status: 'ok', databases: [{ database: 'shop', key: keys.shop, status: 'ok', failingTables: [] }], notReached: [] });
  const report = await readReport(keys.shop!);
  expect(report).toMatchObject({ kind: 'pg-s3-backup restore drill', status: 'ok', database: 'shop', key: keys.shop, rowCounts: 'exact', failingTables: [], problems: [] });
  expect(report.tables.map((t) => [`${t.schema}.${t.table}`, t.expectedRows, t.restoredRows, t.ok])).toEqual([
    ['public.audit', 0, 0, true],
    ['public.customers', 1500, 1500, true],
    ['public.orders', 4000, 4000, true],
  ]);
  expect(report.verify).toMatchObject({ status: 'ok', sha256Verified: true, timingsMs: { server: expect.any(Number), restore: expect.any(Number) } });
  expect(drills).toEqual([{ database: 'shop', succeeded: true, failed: false, durationMs: expect.any(Number) }]);
  // Nothing left in the temporary folder: no dump, no server.
  expect(readdirSync(tempDir)).toEqual([]);
});

it('a tampered dump fails the drill (SHA-256 mismatch): nothing restored, report written, alert sent, the handler throws', async () => {
  drills.length = 0;
  const restore = await rewrite(keys.tampered!, (b) => {
    b.writeUInt8(b.readUInt8(b.length - 20) ^ 0xff, b.length - 20);
    return b;
  });
  try {
    const handler = createDrillHandler(drillEnv('tampered'), { log: silentLog, metrics }, { tempDir });
    const err = await handler({}, context).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DrillFailedError);
    const report = await readReport(keys.tampered!);
    expect(report.status).toBe('failed');
    expect(report.verify?.sha256Verified).toBe(false);
    expect(report.problems.map((p) => p.message).join('\n')).toMatch(/does not match its manifest/);
    expect(drills).toEqual([{ database: 'tampered', succeeded: false, failed: true, durationMs: expect.any(Number) }]);
    const alerts = await inbox.receive(1, 20_000);
    expect(alerts[0]?.subject).toBe('[pg-s3-backup] restore drill FAILED: tampered');
    expect(alerts[0]?.message).toMatch(/does not match its manifest[\s\S]*What to do:/);
  } finally {
    await restore();
  }
  expect(readdirSync(tempDir)).toEqual([]);
});

it('a restore that does not give back what the manifest says fails with the failing tables named', async () => {
  // The manifest says one more order than the dump holds, and a table the dump does not have.
  const restore = await rewrite(manifestKeyFor(keys.lossy!), (b) => {
    const m = parseManifest(b.toString());
    const tables = m.tables!.map((t) => (t.table === 'orders' ? { ...t, rows: 4001 } : t));
    return Buffer.from(JSON.stringify({ ...m, tables: [...tables, { schema: 'public', table: 'invoices', rows: 10, bytes: 8192 }] }));
  });
  try {
    const handler = createDrillHandler(drillEnv('lossy'), { log: silentLog, metrics }, { tempDir });
    const err = await handler({}, context).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DrillFailedError);
    expect((err as Error).message).toMatch(/lossy .*public\.orders: 4000 rows restored, the backup held 4001.*public\.invoices: missing after the restore/);
    const report = await readReport(keys.lossy!);
    expect(report.failingTables).toEqual(['public.orders: 4000 rows restored, the backup held 4001', 'public.invoices: missing after the restore']);
    expect(report.verify?.sha256Verified).toBe(true);
    const alerts = await inbox.receive(1, 20_000);
    expect(alerts[0]?.subject).toBe('[pg-s3-backup] restore drill FAILED: lossy');
    expect(alerts[0]?.message).toMatch(/Failing tables:\n {2}- public\.orders: 4000 rows restored, the backup held 4001\n {2}- public\.invoices: missing after the restore/);
  } finally {
    await restore();
  }
});

it('a database over the temporary-space limit is skipped with a warning alert that says what to do', async () => {
  drills.length = 0;
  const handler = createDrillHandler(drillEnv('shop'), { log: silentLog, metrics }, { tempDir, freeBytes: () => 100 * 1024 ** 2 });
  const result = await handler({ databases: ['shop'] }, context);
  expect(result.status).toBe('skipped');
  const report = await readReport(keys.shop!);
  expect(report).toMatchObject({ status: 'skipped', availableTempBytes: 100 * 1024 ** 2 });
  expect(report.requiredTempBytes).toBeGreaterThan(512 * 1024 ** 2);
  expect(report.whatToDo).toMatch(/ephemeral storage.*verify --latest --database <name> --local --temp-dir/);
  expect(drills).toEqual([{ database: 'shop', succeeded: false, failed: false, durationMs: expect.any(Number) }]);
  const alerts = await inbox.receive(1, 20_000);
  expect(alerts[0]?.subject).toBe('[pg-s3-backup] restore drill SKIPPED (too large): shop');
  expect(alerts[0]?.message).toMatch(/What to do: Raise the drill function's ephemeral storage/);
});

it('stops at its time budget before the timeout, names the databases it did not reach (event, alert, result), and the next run starts with them', async () => {
  const names = ['budget_a', 'budget_b', 'budget_c'];
  for (const db of names) {
    await createDatabase(pgsrv, db);
    await pgsrv.query('create table t (id int primary key); insert into t select generate_series(1, 100)', [], db);
  }
  const config = loadConfig({ ...env, DATABASES: names.join(',') });
  const backup = await runBackup({ reason: 'drill budget test' }, config, createDeps(config, { events: ignoreEvents }));
  expect(backup.status).toBe('succeeded');
  const keyOf = new Map(backup.backups.map((b) => [b.database, b.key]));
  const hasReport = async (database: string) =>
    c.s3.send(new GetObjectCommand({ Bucket: bucket, Key: verifyReportKeyFor(keyOf.get(database)!) })).then(
      () => true,
      () => false,
    );

  /**
   * Lambda's remaining time as the drill sees it: plenty until the first database is finished,
   * then only the margin and a few seconds: too little to start another database.
   */
  const run = async () => {
    const events: EngineEvent[] = [];
    let finished = false;
    const handler = createDrillHandler(drillEnv(names.join(',')), { log: silentLog, metrics: noMetrics, events: (e) => {
      events.push(e);
      if (e.event === 'drill.finished') finished = true;
    } }, { tempDir });
    const result = await handler({}, { awsRequestId: 'req-budget', getRemainingTimeInMillis: () => (finished ? DRILL_MARGIN_MS + 5_000 : 14 * 60_000) });
    return { result, events };
  };

  // Never drilled: name order. One database fits; the other two are named, not drilled, not reported.
  const first = await run();
  expect(first.result).toMatchObject({ status: 'incomplete', databases: [{ database: 'budget_a', status: 'ok' }], notReached: ['budget_b', 'budget_c'] });
  expect(first.events).toContainEqual(expect.objectContaining({ event: 'drill.budget-exhausted', notReached: ['budget_b', 'budget_c'] }));
  expect(await Promise.all(names.map(hasReport))).toEqual([true, false, false]);
  const [alert] = await inbox.receive(1, 20_000);
  expect(alert!.subject).toBe('[pg-s3-backup] restore drill stopped at its time budget: 2 database(s) not drilled');
  expect(alert!.message).toMatch(/1 database\(s\) drilled .* 2 not reached:\n {2}- budget_b\n {2}- budget_c\n/);
  expect(alert!.message).toMatch(/The next drill starts with them/);

  // The next run starts with the databases the first did not reach; the one drilled goes last.
  const second = await run();
  expect(second.result).toMatchObject({ status: 'incomplete', databases: [{ database: 'budget_b', status: 'ok' }], notReached: ['budget_c', 'budget_a'] });
  expect(await Promise.all(names.map(hasReport))).toEqual([true, true, false]);
  await inbox.receive(1, 20_000);
  expect(readdirSync(tempDir)).toEqual([]);
});
