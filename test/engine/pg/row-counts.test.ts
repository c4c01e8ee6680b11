/**
 * Row counts in the manifest (issue 13): counted in the dump's own exported snapshot, so they are
 * exactly what the dump holds even while the database is being written; ROW_COUNTS=estimate and
 * off; version 1 manifests (no counts) stay readable.
 */
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runBackup } from '../../../engine/backup/backup.ts';
import { loadConfig } from '../../../engine/config.ts';
import { createDeps } from '../../../engine/deps.ts';
import { ignoreEvents } from '../../../engine/events.ts';
import { manifestKeyFor } from '../../../engine/store/backup-key.ts';
import { MANIFEST_FORMAT_VERSION, parseManifest, type Manifest } from '../../../engine/store/manifest.ts';
import { createSource } from '../../../engine/store/create.ts';
import { awsEnv } from '../../support/aws.ts';
import { createDatabase, pgRestore } from '../../support/fixtures.ts';
import { startBackupServices, type BackupServices } from '../../support/services.ts';

let svc: BackupServices;

beforeAll(async () => {
  svc = await startBackupServices();
  Object.assign(process.env, awsEnv(svc.aws.endpoint));
  await createDatabase(svc.pg, 'busy');
  await svc.pg.query(
    `create table orders (id bigserial primary key, note text);
     insert into orders (note) select repeat('x', 200) from generate_series(1, 200000);
     create table empty_one (id int);
     create table parted (id int, at date) partition by range (at);
     create table parted_2024 partition of parted for values from ('2024-01-01') to ('2025-01-01');
     insert into parted select g, '2024-03-01' from generate_series(1, 300) g;
     create extension if not exists pg_trgm;
     analyze`,
    [],
    'busy',
  );
});

afterAll(async () => {
  await svc?.stop();
});

async function backup(extra: Record<string, string>): Promise<Manifest> {
  const config = loadConfig({
    ...awsEnv(svc.aws.endpoint),
    DATABASE_URL: svc.pg.urlFor('busy'),
    BACKUP_BUCKET: svc.bucket,
    PG_DUMP_BIN: join(svc.layer, 'bin', 'pg_dump'),
    ...extra,
  });
  const deps = createDeps(config, { events: ignoreEvents });
  const result = await runBackup({ reason: 'row counts test' }, config, deps);
  expect(result.status).toBe('succeeded');
  return createSource(config, deps).readManifest(result.backups[0]!.key);
}

it('ROW_COUNTS=exact (the default): every table with data, counted in the dump\'s snapshot while rows keep arriving; the restore holds exactly those counts', async () => {
  // A writer inserts all along the backup: counts taken outside the dump's snapshot would differ.
  const writer = new pg.Client({ connectionString: svc.pg.urlFor('busy') });
  await writer.connect();
  let writing = true;
  const inserts = (async () => {
    while (writing) await writer.query(`insert into orders (note) select 'late' from generate_series(1, 50)`);
  })();
  let manifest: Manifest;
  try {
    manifest = await backup({});
  } finally {
    writing = false;
    await inserts;
    await writer.end();
  }
  expect(manifest.formatVersion).toBe(MANIFEST_FORMAT_VERSION);
  expect(manifest.formatVersion).toBe(2);
  expect(manifest.rowCounts).toBe('exact');
  const byName = Object.fromEntries(manifest.tables!.map((t) => [`${t.schema}.${t.table}`, t]));
  // Extension tables are not listed (pg_dump does not dump their data); partitions are, on their own.
  expect(Object.keys(byName).sort()).toEqual(['public.empty_one', 'public.orders', 'public.parted', 'public.parted_2024']);
  expect(byName['public.empty_one']!.rows).toBe(0);
  expect(byName['public.parted']!.rows).toBe(0);
  expect(byName['public.parted_2024']!.rows).toBe(300);
  expect(byName['public.orders']!.rows).toBeGreaterThanOrEqual(200000);
  expect(byName['public.orders']!.bytes).toBeGreaterThan(200000 * 200);
  const [now] = await svc.pg.query<{ n: string }>('select count(*) as n from orders', [], 'busy');
  expect(Number(now!.n)).toBeGreaterThan(byName['public.orders']!.rows!);

  // The dump holds exactly the manifest's counts.
  const res = await svc.c.s3.send(new GetObjectCommand({ Bucket: svc.bucket, Key: manifest.key }));
  await createDatabase(svc.pg, 'busy_restored');
  const restoredRun = await pgRestore(join(svc.layer, 'bin', 'pg_restore'), svc.pg, 'busy_restored', res.Body as Readable);
  expect(restoredRun.code, restoredRun.stderr).toBe(0);
  const [restored] = await svc.pg.query<{ n: string }>('select count(*) as n from orders', [], 'busy_restored');
  expect(Number(restored!.n)).toBe(byName['public.orders']!.rows);
});

it('ROW_COUNTS=estimate records the planner\'s figures; off records no table list', async () => {
  const estimate = await backup({ ROW_COUNTS: 'estimate' });
  expect(estimate.rowCounts).toBe('estimate');
  const orders = estimate.tables!.find((t) => t.table === 'orders')!;
  expect(orders.rows).toBeGreaterThan(150000);
  const off = await backup({ ROW_COUNTS: 'off' });
  expect(off.rowCounts).toBe('off');
  expect(off.tables).toBeUndefined();
  expect(() => loadConfig({ DATABASE_URL: svc.pg.url, BACKUP_BUCKET: svc.bucket, ROW_COUNTS: 'sometimes' })).toThrow(/ROW_COUNTS.*exact, estimate, off/);
});

it('a version 1 manifest (before row counts) is still read', async () => {
  const manifest = await backup({ ROW_COUNTS: 'off' });
  const { rowCounts: _r, tables: _t, ...v1 } = { ...manifest, formatVersion: 1 };
  await svc.c.s3.send(new PutObjectCommand({ Bucket: svc.bucket, Key: manifestKeyFor(manifest.key), Body: JSON.stringify(v1) }));
  const config = loadConfig({ ...awsEnv(svc.aws.endpoint), DATABASE_URL: svc.pg.url, BACKUP_BUCKET: svc.bucket });
  const read = await createSource(config, createDeps(config, { events: ignoreEvents })).readManifest(manifest.key);
  expect(read.formatVersion).toBe(1);
  expect(read.tables).toBeUndefined();
  expect(parseManifest(JSON.stringify(v1)).sha256).toBe(manifest.sha256);
});
