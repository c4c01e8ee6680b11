/**
 * A sharded backup (DUMP_JOBS=2) restored `--data-only` into a database whose schema, foreign
 * keys included, is already there (keys crossing the archives both ways, keys declared on
 * partitioned tables, an archive whose pg_restore fails stopping the ones after it, PostgreSQL
 * 18's NOT ENFORCED keys); and a verify stopped once its rows were counted.
 *
 * The fixture makes the race of side-by-side data archives certain, not likely: `customers` is
 * large (its archive alone, the planner's first), `orders` is a handful of rows that reference
 * its last customers (the other archive, read and copied in milliseconds). Restored side by
 * side, `orders` is copied while `customers`' COPY is still running, uncommitted, and its
 * foreign key refuses every row. `customers` references `regions`, in `orders`' archive: the
 * foreign keys cross the two archives both ways, so neither archive can load whole first.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { Readable } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadConfig } from '../../../engine/config.ts';
import type { EngineEvent } from '../../../engine/events.ts';
import { resolvePgTool } from '../../../engine/pg/tools.ts';
import { verifyBackup } from '../../../engine/restore/verify.ts';
import type { Manifest } from '../../../engine/store/manifest.ts';
import { openDump, readManifest, type S3Store } from '../../../engine/store/s3-store.ts';
import { backUp, databases, runCli, startCliServices, type CliServices } from '../../support/cli.ts';
import { layerRoot } from '../../support/layer.ts';

let svc: CliServices;
let key: string;
let manifest: Manifest;
let tempDir: string;

async function counts(database: string): Promise<{ regions: number; customers: number; orders: number }> {
  const [row] = await svc.pg.query<{ regions: string; customers: string; orders: string }>(
    'SELECT (SELECT count(*) FROM regions) AS regions, (SELECT count(*) FROM customers) AS customers, (SELECT count(*) FROM orders) AS orders',
    [],
    database,
  );
  return { regions: Number(row!.regions), customers: Number(row!.customers), orders: Number(row!.orders) };
}

beforeAll(async () => {
  svc = await startCliServices();
  tempDir = mkdtempSync(join(tmpdir(), 'pgs3b-data-only-'));
  await svc.pg.query(`CREATE DATABASE fkshop TEMPLATE template0 ENCODING 'UTF8' LOCALE 'en_US.UTF-8'`);
  await svc.pg.query(
    `
    CREATE TABLE regions (id int PRIMARY KEY, name text NOT NULL);
    INSERT INTO regions VALUES (1, 'north'), (2, 'south');
    CREATE TABLE customers (id bigint PRIMARY KEY, region_id int NOT NULL REFERENCES regions(id), name text NOT NULL, note text);
    INSERT INTO customers SELECT g, 1 + g % 2, 'customer ' || g, repeat(md5(g::text), 4) FROM generate_series(1, 150000) g;
    CREATE TABLE orders (id int PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers(id), total numeric NOT NULL);
    INSERT INTO orders SELECT g, 150000 - g, g * 1.5 FROM generate_series(1, 5) g;
    `,
    [],
    'fkshop',
  );
  ({ key, manifest } = await backUp(svc.clients, { ...svc.env, DATABASES: 'fkshop', DUMP_JOBS: '2' }, 'data-only'));
}, 240_000);

afterAll(async () => {
  await svc?.stop();
  if (tempDir) rmSync(tempDir, { recursive: true, force: true });
});

it('restore --data-only of a sharded backup into a database with its foreign keys (crossing the archives both ways) loads the referenced rows first', async () => {
  // customers in an archive of its own, regions and orders in the other: the foreign keys cross them both ways.
  expect(manifest.parts?.map((p) => p.tables)).toEqual([1, 2]);
  const schema = await runCli(['restore', '--key', key, '--target-url', svc.pg.urlFor('fkshop_copy'), '--create', '--schema-only'], svc.env);
  expect(schema.code, schema.stderr).toBe(0);
  expect(await counts('fkshop_copy')).toEqual({ regions: 0, customers: 0, orders: 0 });
  const data = await runCli(['restore', '--key', key, '--target-url', svc.pg.urlFor('fkshop_copy'), '--data-only'], svc.env);
  expect(data.code, data.stderr).toBe(0);
  expect(await counts('fkshop_copy')).toEqual({ regions: 2, customers: 150000, orders: 5 });
  const [fk] = await svc.pg.query<{ n: string }>(`SELECT count(*) AS n FROM pg_constraint WHERE contype = 'f'`, [], 'fkshop_copy');
  expect(Number(fk!.n)).toBe(2);
  await svc.pg.query('DROP DATABASE fkshop_copy');
});

it('restore --data-only --table of a sharded backup loads the named tables in foreign-key order across the archives', async () => {
  // customers (its own archive) references regions (the other): both named, orders left out.
  const schema = await runCli(['restore', '--key', key, '--target-url', svc.pg.urlFor('fkshop_tables'), '--create', '--schema-only'], svc.env);
  expect(schema.code, schema.stderr).toBe(0);
  const data = await runCli(['restore', '--key', key, '--target-url', svc.pg.urlFor('fkshop_tables'), '--data-only', '--table', 'customers', '--table', 'regions'], svc.env);
  expect(data.code, data.stderr).toBe(0);
  expect(await counts('fkshop_tables')).toEqual({ regions: 2, customers: 150000, orders: 0 });
  await svc.pg.query('DROP DATABASE fkshop_tables');
});

/** A sharded backup (DUMP_JOBS=2) of database `name`, made with `sql`: its key, and each data archive's table count. */
async function shardedBackup(name: string, sql: string): Promise<{ key: string; tables: number[] | undefined }> {
  await svc.pg.query(`CREATE DATABASE ${name} TEMPLATE template0 ENCODING 'UTF8' LOCALE 'en_US.UTF-8'`);
  await svc.pg.query(sql, [], name);
  const b = await backUp(svc.clients, { ...svc.env, DATABASES: name, DUMP_JOBS: '2' }, 'data-only');
  return { key: b.key, tables: b.manifest.parts?.map((p) => p.tables) };
}

it('restore --data-only of a sharded backup orders a key declared on partitioned tables, its partitions on both sides and in the same archive', async () => {
  // tenants_a (large) is an archive of its own; orders_2025, orders_2026 and tenants_b share the
  // other, where pg_dump lists them by name (it orders data by a key only between tables with rows
  // of their own, and the partitions' copies of the key are not dumped): the orders come before the
  // tenant rows they reference. Read forward in one pg_restore, the first COPY is refused, every time.
  const { key: partKey, tables } = await shardedBackup(
    'partshop',
    `
    CREATE TABLE tenants (id int PRIMARY KEY, name text NOT NULL, note text) PARTITION BY RANGE (id);
    CREATE TABLE tenants_a PARTITION OF tenants FOR VALUES FROM (1) TO (100001);
    CREATE TABLE tenants_b PARTITION OF tenants FOR VALUES FROM (100001) TO (MAXVALUE);
    INSERT INTO tenants SELECT g, 'tenant ' || g, repeat(md5(g::text), 4) FROM generate_series(1, 5000) g;
    INSERT INTO tenants VALUES (100001, 'late', NULL), (100002, 'later', NULL);
    CREATE TABLE orders (id int NOT NULL, tenant_id int NOT NULL REFERENCES tenants (id), placed date NOT NULL, PRIMARY KEY (id, placed)) PARTITION BY RANGE (placed);
    CREATE TABLE orders_2025 PARTITION OF orders FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
    CREATE TABLE orders_2026 PARTITION OF orders FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
    INSERT INTO orders VALUES (1, 100001, '2025-03-01'), (2, 5000, '2025-04-01'), (3, 100002, '2026-01-02'), (4, 1, '2026-02-02');
    `,
  );
  expect(tables).toEqual([1, 3]);
  const schema = await runCli(['restore', '--key', partKey, '--target-url', svc.pg.urlFor('partshop_copy'), '--create', '--schema-only'], svc.env);
  expect(schema.code, schema.stderr).toBe(0);
  const data = await runCli(['restore', '--key', partKey, '--target-url', svc.pg.urlFor('partshop_copy'), '--data-only'], svc.env);
  expect(data.code, data.stderr).toBe(0);
  const [row] = await svc.pg.query<{ tenants: string; orders: string; late: string }>(
    `SELECT (SELECT count(*) FROM tenants) AS tenants, (SELECT count(*) FROM orders) AS orders, (SELECT count(*) FROM orders o JOIN tenants_b t ON t.id = o.tenant_id) AS late`,
    [],
    'partshop_copy',
  );
  expect(row).toEqual({ tenants: '5002', orders: '4', late: '2' });
});

it('restore --data-only of a sharded backup stops at the first archive whose pg_restore fails: the later ones do not start, and it says which', async () => {
  // regions (the archive of regions and orders) loads first; the target already has region 2, so
  // its COPY is refused. customers and orders come after it because they need its rows.
  const schema = await runCli(['restore', '--key', key, '--target-url', svc.pg.urlFor('fkshop_stop'), '--create', '--schema-only'], svc.env);
  expect(schema.code, schema.stderr).toBe(0);
  await svc.pg.query(`INSERT INTO regions VALUES (2, 'south')`, [], 'fkshop_stop');
  const data = await runCli(['restore', '--key', key, '--target-url', svc.pg.urlFor('fkshop_stop'), '--data-only'], svc.env);
  expect(data.code).toBe(1);
  expect(data.stderr).toMatch(/the backup's data archives could not be restored, 1 error; the first:\n {2}1\. COPY failed for table "regions": ERROR: {2}duplicate key value/);
  // Neither later run started: no error of theirs, nothing loaded, and both named as not loaded.
  expect(data.stderr).not.toMatch(/COPY failed for table "(customers|orders)"/);
  const [first, second] = manifest.parts!.map((p) => p.key);
  expect(data.stderr).toContain(
    `loading the data archives in foreign-key order stopped at that failure (--keep-going loads the rest anyway); not loaded: data archive ${first!} (public.customers); data archive ${second!} (public.orders)`,
  );
  expect(await counts('fkshop_stop')).toEqual({ regions: 1, customers: 0, orders: 0 });
  // --keep-going asks for every archive whatever fails: each run's errors are listed, none is said not loaded.
  const all = await runCli(['restore', '--key', key, '--target-url', svc.pg.urlFor('fkshop_stop'), '--data-only', '--keep-going'], svc.env);
  expect(all.code).toBe(1);
  expect(all.stderr).toMatch(/with 3 errors; the database was kept \(--keep-going\)/);
  expect(all.stderr).toMatch(/COPY failed for table "customers"/);
  expect(all.stderr).not.toMatch(/not loaded/);
  await svc.pg.query('DROP DATABASE fkshop_stop');
});

it('restore --data-only of a sharded backup on PostgreSQL 18 lets a NOT ENFORCED foreign key order nothing (it closed no cycle)', async () => {
  // authors and books, each an archive of its own: books reference authors (enforced), and an
  // author's favourite book is a NOT ENFORCED key back. Only the enforced one orders: authors first.
  const { key: looseKey, tables } = await shardedBackup(
    'loosekeys',
    `
    CREATE TABLE authors (id int PRIMARY KEY, favourite_book int, bio text);
    CREATE TABLE books (id int PRIMARY KEY, author_id int NOT NULL REFERENCES authors (id));
    ALTER TABLE authors ADD CONSTRAINT authors_favourite_book_fkey FOREIGN KEY (favourite_book) REFERENCES books (id) NOT ENFORCED;
    INSERT INTO authors SELECT g, g, repeat(md5(g::text), 4) FROM generate_series(1, 3000) g;
    INSERT INTO books SELECT g, g FROM generate_series(1, 3000) g;
    `,
  );
  expect(tables).toEqual([1, 1]);
  const schema = await runCli(['restore', '--key', looseKey, '--target-url', svc.pg.urlFor('loosekeys_copy'), '--create', '--schema-only'], svc.env);
  expect(schema.code, schema.stderr).toBe(0);
  const [enforced] = await svc.pg.query<{ enforced: boolean }>(`SELECT conenforced AS enforced FROM pg_constraint WHERE conname = 'authors_favourite_book_fkey'`, [], 'loosekeys_copy');
  expect(enforced).toEqual({ enforced: false });
  const data = await runCli(['restore', '--key', looseKey, '--target-url', svc.pg.urlFor('loosekeys_copy'), '--data-only'], svc.env);
  expect(data.code, data.stderr).toBe(0);
  const [row] = await svc.pg.query<{ authors: string; books: string }>('SELECT (SELECT count(*) FROM authors) AS authors, (SELECT count(*) FROM books) AS books', [], 'loosekeys_copy');
  expect(row).toEqual({ authors: '3000', books: '3000' });
});

function verifyDeps(stop: AbortController, stopAt?: EngineEvent['event']) {
  const config = loadConfig(svc.env);
  const store: S3Store = { s3: svc.clients.s3, bucket: svc.bucket, prefix: config.prefix };
  return {
    source: { readManifest: (k: string) => readManifest(store, k), openDump: async (k: string) => (await openDump(store, k)).body },
    pgRestore: resolvePgTool('pg_restore', { layerRoots: [layerRoot('x86_64')] }),
    tempDir,
    signal: stop.signal,
    events: (e: EngineEvent) => {
      if (e.event === stopAt && !stop.signal.aborted) stop.abort(new Error('the task deadline was reached'));
    },
  };
}

it('restore --data-only of a sharded backup whose partitioned table references itself, its partitions in two archives, loads them (no cycle)', async () => {
  // Rows reference rows of their own partition; each partition is an archive of its own.
  await svc.pg.query(`CREATE DATABASE selfref TEMPLATE template0 ENCODING 'UTF8' LOCALE 'en_US.UTF-8'`);
  await svc.pg.query(
    `
    CREATE TABLE comments (tenant int NOT NULL, id int NOT NULL, parent_id int, PRIMARY KEY (tenant, id),
      FOREIGN KEY (tenant, parent_id) REFERENCES comments (tenant, id)) PARTITION BY LIST (tenant);
    CREATE TABLE comments_1 PARTITION OF comments FOR VALUES IN (1);
    CREATE TABLE comments_2 PARTITION OF comments FOR VALUES IN (2);
    INSERT INTO comments SELECT 1 + g % 2, g, CASE WHEN g > 2 THEN g - 2 END FROM generate_series(1, 1000) g;
    `,
    [],
    'selfref',
  );
  const { key: selfKey, manifest: selfManifest } = await backUp(svc.clients, { ...svc.env, DATABASES: 'selfref', DUMP_JOBS: '2' }, 'data-only');
  expect(selfManifest.parts?.filter((p) => p.tables > 0).length).toBe(2);
  const schema = await runCli(['restore', '--key', selfKey, '--target-url', svc.pg.urlFor('selfref_copy'), '--create', '--schema-only'], svc.env);
  expect(schema.code, schema.stderr).toBe(0);
  const data = await runCli(['restore', '--key', selfKey, '--target-url', svc.pg.urlFor('selfref_copy'), '--data-only'], svc.env);
  expect(data.code, data.stderr).toBe(0);
  const [row] = await svc.pg.query<{ n: string }>('SELECT count(*)::text AS n FROM comments', [], 'selfref_copy');
  expect(row!.n).toBe('1000');
});

it('a verify stopped after every table was counted compares the rows, and still does not report ok', async () => {
  const stop = new AbortController();
  const before = await databases(svc.pg);
  // The deadline lands right after the inspection: while the scratch database is dropped.
  const report = await verifyBackup(
    verifyDeps(stop, 'verify.inspected'),
    { key, scratch: svc.pg.connection('postgres') },
  );
  expect(report.status).toBe('failed');
  expect(report.problems).toEqual([{ stage: 'verify', message: 'the verify was stopped after every restored table was counted (while cleaning up): the task deadline was reached' }]);
  // The rows were counted, so they were compared: every table, none failing.
  expect(report.tableChecks?.map((t) => [t.table, t.ok])).toEqual([['customers', true], ['orders', true], ['regions', true]]);
  expect(report.warnings.filter((w) => /stopped/.test(w))).toEqual([]);
  expect(await databases(svc.pg)).toEqual(before);
});

it('a verify stopped while the data archives load says so, compares nothing, and fails', async () => {
  const stop = new AbortController();
  const before = await databases(svc.pg);
  const report = await verifyBackup(verifyDeps(stop, 'restore.progress'), { key, scratch: svc.pg.connection('postgres') });
  expect(report.status).toBe('failed');
  expect(report.problems.map((p) => p.message)).toEqual(['the task deadline was reached']);
  expect(report.tableChecks).toEqual([]);
  expect(report.warnings).toContain("stopped before the restore finished: the tables were not compared with the manifest's row counts");
  expect(await databases(svc.pg)).toEqual(before);
});

it('a verify whose data archive pg_restore refuses at its first bytes does not call the backup\'s checksums verified', async () => {
  // S3 sends something else for one archive: pg_restore fails at its header, and the rest (a
  // bounded GiB of zeros) is not read to its end, so no SHA-256 of that archive is ever known.
  const bad = manifest.parts![1]!.key;
  const zeros = Buffer.alloc(64 * 1024);
  async function* notAnArchive() {
    yield Buffer.from('not a pg_dump archive\n');
    // A chunk per turn of the event loop, as a socket delivers them (a generator that never
    // yields to I/O would hash the whole GiB before pg_restore's exit could be seen).
    for (let i = 0; i < 16_384; i++) {
      await new Promise((r) => setImmediate(r));
      yield zeros;
    }
  }
  const deps = verifyDeps(new AbortController());
  const before = await databases(svc.pg);
  const report = await verifyBackup(
    { ...deps, source: { ...deps.source, openDump: async (k: string) => (k === bad ? Readable.from(notAnArchive()) : deps.source.openDump(k)) } },
    { key, scratch: svc.pg.connection('postgres') },
  );
  expect(report.status).toBe('failed');
  expect(report.sha256Verified, JSON.stringify(report.problems)).toBe(false);
  expect(report.warnings, JSON.stringify(report.problems)).toContain(`data archive ${bad} was not read to its end (pg_restore failed first): its SHA-256 was not checked`);
  expect(await databases(svc.pg)).toEqual(before);
});
