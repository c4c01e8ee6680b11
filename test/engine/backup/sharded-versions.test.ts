/**
 * Sharded backups of every older supported server (issue 24 follow-up): users run RDS 13–17 with
 * pg_dump 18 from the layer, so a DUMP_JOBS=3 backup (one exported snapshot, a schema archive and
 * three data-only pg_dump 18s, a format-4 manifest) is taken of each major's production-shaped
 * `shop` database (test/support/fidelity-fixtures.ts: en_US.UTF-8 cluster and database, an
 * identity and a bigserial sequence, a partitioned table, a populated materialized view, large
 * objects, grants and database settings; more in MORE_SHOP), backed up by its non-superuser owner, then:
 * - `restore --create` into the same server gives back the whole database (whole-database.ts), and
 *   so does `restore --clean` over that copy (its drop script on 13-16, its large objects);
 * - `verify --local` restores it on the pg-server layer's throwaway PostgreSQL 18, finds every
 *   counted table, and names both servers: the restore it tried is one into 18, not the backup's major.
 * And on 13, a database with what 18 no longer accepts (a view over pg_stat_bgwriter's checkpoint
 * columns, gone in 17): verify --local fails, saying the errors may be 18's alone, and verify
 * --scratch-url on the backup's own 13 passes.
 *
 * `npm test` runs PostgreSQL 13 (the oldest: every catalog and pg_dump branch for a server before
 * 14, 15, 16 and 17) and 15 (the first with locale providers and the public schema of 15+);
 * `npm run test:versions` (PGS3B_VERSION_MATRIX=full) runs 13, 14, 15, 16 and 17. 18 is
 * test/engine/backup/sharded.test.ts. The majors run concurrently, each on its own server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VerifyReport } from '../../../engine/restore/verify.ts';
import type { Manifest } from '../../../engine/store/manifest.ts';
import { awsEnv, createBucket, testClients, type TestClients } from '../../support/aws.ts';
import { backUp, baseEnv, resultOf, runCli } from '../../support/cli.ts';
import { createShopDatabase, createShopRoles } from '../../support/fidelity-fixtures.ts';
import { ensureLayer, ensureServerLayer } from '../../support/layer.ts';
import { startMoto, type TestAws } from '../../support/moto.ts';
import { startPostgres, type PostgresMajor, type TestPostgres } from '../../support/postgres.ts';
import { compareDatabases } from '../../support/whole-database.ts';

const FULL = process.env.PGS3B_VERSION_MATRIX === 'full';
const MAJORS: readonly Exclude<PostgresMajor, 18>[] = FULL ? [13, 14, 15, 16, 17] : [13, 15];
const JOBS = 3;
const OWNER_PASSWORD = `own'er pw:ü/@`;

interface Source {
  readonly pg: TestPostgres;
  /** The CLI's environment for this server's backups: its own bucket, as each deployment has. */
  readonly env: Record<string, string>;
  readonly key: string;
  readonly manifest: Manifest;
}
/**
 * What a sharded dump of an older server must also carry, beside createShopDatabase's objects:
 * more large objects than pg_dump 17+ puts in one metadata batch (1,000), with grants and comments;
 * legacy inheritance (the parent's own rows, and its child's, in different data archives); a stored
 * generated column; sub-partitions and a default partition; an unlogged table; a table with
 * row-level security (its owner, the backup's role, is not subject to it); a standalone sequence;
 * a name that needs quoting; a materialized view WITH NO DATA.
 */
const MORE_SHOP = `
  SET ROLE shop_owner;
  SELECT lo_from_bytea(0, convert_to('page ' || g, 'UTF8')) FROM generate_series(1, 1100) g;
  SELECT lo_from_bytea(777001, '\\x00'::bytea);
  GRANT SELECT ON LARGE OBJECT 777001 TO shop_app;
  COMMENT ON LARGE OBJECT 777001 IS 'the signed contract';
  CREATE TABLE sales.audit (id bigserial, at timestamptz NOT NULL DEFAULT '2026-01-01', note text);
  CREATE TABLE sales.audit_2026 (extra int) INHERITS (sales.audit);
  INSERT INTO sales.audit (note) SELECT 'parent ' || g FROM generate_series(1, 120) g;
  INSERT INTO sales.audit_2026 (note, extra) SELECT 'child ' || g, g FROM generate_series(1, 80) g;
  CREATE TABLE sales.prices (id int PRIMARY KEY, net numeric NOT NULL, gross numeric GENERATED ALWAYS AS (net * 1.25) STORED);
  INSERT INTO sales.prices (id, net) SELECT g, g * 2 FROM generate_series(1, 250) g;
  CREATE TABLE sales.metrics (region text NOT NULL, at date NOT NULL, v int) PARTITION BY LIST (region);
  CREATE TABLE sales.metrics_eu PARTITION OF sales.metrics FOR VALUES IN ('eu') PARTITION BY RANGE (at);
  CREATE TABLE sales.metrics_eu_2026 PARTITION OF sales.metrics_eu FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
  CREATE TABLE sales.metrics_other PARTITION OF sales.metrics DEFAULT;
  INSERT INTO sales.metrics SELECT (ARRAY['eu', 'us', 'apac'])[1 + g % 3], '2026-01-01'::date + g % 300, g FROM generate_series(1, 600) g;
  CREATE UNLOGGED TABLE sales.cart (session text PRIMARY KEY, items int);
  INSERT INTO sales.cart SELECT 's' || g, g FROM generate_series(1, 90) g;
  CREATE TABLE sales.secrets (id int PRIMARY KEY, owner_name text);
  INSERT INTO sales.secrets SELECT g, 'o' || g FROM generate_series(1, 40) g;
  ALTER TABLE sales.secrets ENABLE ROW LEVEL SECURITY;
  CREATE POLICY none_visible ON sales.secrets USING (false);
  CREATE SEQUENCE sales.invoice_numbers START 100000;
  SELECT setval('sales.invoice_numbers', 123456);
  CREATE TABLE sales."Order Lines" ("Line No" int PRIMARY KEY, "Qty" int NOT NULL);
  INSERT INTO sales."Order Lines" SELECT g, g % 9 FROM generate_series(1, 300) g;
  CREATE MATERIALIZED VIEW sales.pending AS SELECT id FROM sales.orders WHERE status = 'new' WITH NO DATA;
  RESET ROLE;
`;

const sources = new Map<PostgresMajor, Source>();
let aws: TestAws;
let clients: TestClients;
/** What every server's CLI environment shares (moto, retention); each adds its own bucket (Source.env). */
let env: Record<string, string>;

/** A server of `major` with `shop` on it, and its sharded backup. */
async function backedUp(major: Exclude<PostgresMajor, 18>): Promise<Source> {
  const pg = await startPostgres({ major });
  try {
    const [{ v, collate } = { v: '', collate: '' }] = await pg.query<{ v: string; collate: string }>(
      "SELECT current_setting('server_version_num') AS v, (SELECT datcollate FROM pg_database WHERE datname = 'template1') AS collate",
    );
    expect(Math.floor(Number(v) / 10000), `the PostgreSQL ${major} test server's version`).toBe(major);
    expect(collate, `the PostgreSQL ${major} test cluster's locale`).toBe('en_US.UTF-8');
    await createShopRoles(pg);
    await createShopDatabase(pg, 'shop', "LOCALE 'en_US.UTF-8'");
    await pg.query(MORE_SHOP, [], 'shop');
    // As on RDS, the backup's role is no superuser: here the owner of the database and its objects.
    await pg.query(`ALTER ROLE shop_owner PASSWORD '${OWNER_PASSWORD.replace(/'/g, "''")}'`);
    const url = new URL(pg.urlFor('shop'));
    url.username = 'shop_owner';
    url.password = encodeURIComponent(OWNER_PASSWORD);
    // As on RDS, the restore's role is no superuser either: the master user's rights (CREATEDB,
    // CREATEROLE) and membership in the roles that own what it restores.
    await pg.query(`CREATE ROLE restore_admin LOGIN CREATEDB CREATEROLE PASSWORD '${OWNER_PASSWORD.replace(/'/g, "''")}'; GRANT shop_owner, shop_app TO restore_admin WITH ADMIN OPTION`);
    // Each server its own bucket, as each deployment has (two servers' `shop` in one bucket would be one history).
    const bucket = await createBucket(clients);
    const ownEnv = { ...env, BACKUP_BUCKET: bucket };
    const { key, manifest } = await backUp(clients, { ...ownEnv, DATABASE_URL: url.href, DATABASES: 'shop', DUMP_JOBS: String(JOBS) }, `sharded ${major}`);
    return { pg, env: ownEnv, key, manifest };
  } catch (err) {
    await pg.stop();
    throw err;
  }
}

beforeAll(async () => {
  // verify --local needs the pg-server layer: built here, not by whichever file ran first.
  const [moto] = await Promise.all([startMoto(), ensureLayer(), ensureServerLayer('x86_64')]);
  aws = moto;
  clients = testClients(aws.endpoint);
  env = { ...baseEnv(), ...awsEnv(aws.endpoint), RETENTION_COUNT: '7' };
  const started = await Promise.allSettled(MAJORS.map(async (major) => [major, await backedUp(major)] as const));
  for (const s of started) if (s.status === 'fulfilled') sources.set(s.value[0], s.value[1]);
  const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) throw failed.reason;
}, 600_000);

afterAll(async () => {
  await Promise.all([...sources.values()].map((s) => s.pg.stop()));
  await aws?.stop();
});

const source = (major: PostgresMajor) => sources.get(major)!;

/** `database` on the source's server as restore_admin (no superuser, as RDS's master user). */
function asRestoreAdmin(pg: Source['pg'], database: string): string {
  const url = new URL(pg.urlFor(database));
  url.username = 'restore_admin';
  url.password = encodeURIComponent(OWNER_PASSWORD);
  return url.href;
}

describe.concurrent('a sharded backup (DUMP_JOBS=3) of an older server', { timeout: 300_000 }, () => {
  describe.each(MAJORS)('PostgreSQL %i', (major) => {
    it('is a schema archive and three data archives of one snapshot, the large objects in the first', () => {
      const { manifest, key } = source(major);
      expect(manifest.formatVersion).toBe(4);
      expect(manifest.serverVersion).toMatch(new RegExp(`^${major}\\.`));
      expect(manifest.parts?.map((p) => p.key)).toEqual([1, 2, 3].map((n) => key.replace(/\.dump$/, `.data-${n}.dump`)));
      // Every table with rows of its own (13: partitions and the inheritance parent included, not the partitioned parents), each in exactly one archive.
      expect(manifest.parts!.reduce((n, p) => n + p.tables, 0)).toBe(13);
      expect(manifest.parts!.map((p) => p.largeObjects)).toEqual([true, false, false]);
      expect(manifest.tables?.find((t) => t.table === 'orders')?.rows).toBe(1500);
    });

    it('restore --create into the same server gives back the whole database, and so does restore --clean over it', async () => {
      const { pg, key } = source(major);
      const run = await runCli(['restore', '--key', key, '--target-url', asRestoreAdmin(pg, 'shop_restored'), '--create', '--jobs', '2', '--json'], source(major).env);
      expect(run.code, run.stdout + run.stderr).toBe(0);
      const diff = await compareDatabases({ pg, database: 'shop' }, { pg, database: 'shop_restored' });
      expect(diff, diff.join('\n')).toEqual([]);
      // pg_dump 18 sets transaction_timeout, unknown before 17: a warning naming why, nothing else.
      const harmless = (warnings: string[]) => {
        if (major < 17) expect(warnings.join('\n')).toMatch(/^(SET transaction_timeout failed: the server is older than PostgreSQL 17 \(harmless: pg_dump 18 archives set it\)\n?)+$/);
        else expect(warnings).toEqual([]);
      };
      harmless(resultOf<{ warnings: string[] }>(run).warnings);

      // Over the restored database, changed since: its objects (large objects too) dropped and restored again.
      // By the application's role, as in production: a superuser's large object is one a non-superuser restore may not drop.
      await pg.query("SET ROLE shop_owner; UPDATE sales.orders SET total = 0 WHERE id < 100; SELECT lo_unlink(777001); SELECT lo_from_bytea(777001, '\\xff'::bytea)", [], 'shop_restored');
      const clean = await runCli(['restore', '--key', key, '--target-url', asRestoreAdmin(pg, 'shop_restored'), '--clean', '--jobs', '2', '--json'], source(major).env);
      expect(clean.code, clean.stdout + clean.stderr).toBe(0);
      const again = await compareDatabases({ pg, database: 'shop' }, { pg, database: 'shop_restored' });
      expect(again, again.join('\n')).toEqual([]);
      harmless(resultOf<{ warnings: string[] }>(clean).warnings);

      // --data-only into it again: the data archives' rows collide with its own, and the error says it was them.
      const twice = await runCli(['restore', '--key', key, '--target-url', asRestoreAdmin(pg, 'shop_restored'), '--data-only'], source(major).env);
      expect(twice.code).toBe(1);
      expect(twice.stderr).toMatch(/restoring into database "shop_restored" failed: the backup's data archives could not be restored, \d+ errors?; the first:\n.*duplicate key value/);
    });

    it('verify --local restores it on the throwaway PostgreSQL 18, finds every counted table, and says it restored it on 18, not on the backup\'s major', async () => {
      const { key } = source(major);
      const run = await runCli(['verify', '--key', key, '--local', '--json'], source(major).env);
      const report = resultOf<VerifyReport>(run);
      expect(report.problems).toEqual([]);
      expect(report).toMatchObject({ status: 'ok', sha256Verified: true, failingTables: [], warnings: [], locale: 'libc:en_US.UTF-8' });
      // Restored on the layer's 18, not on the backup's major: the report says which, and what that tried.
      expect(report.backupServerVersion).toBe(source(major).manifest.serverVersion);
      expect(report.scratchServerVersion).toMatch(/^18\.\d+$/);
      expect(report.versionNote).toBe(
        `the backup is of PostgreSQL ${report.backupServerVersion!} and was restored on PostgreSQL ${report.scratchServerVersion!}: this tried a restore into PostgreSQL 18, not into ${major} (verify --scratch-url on a PostgreSQL ${major} server tries that)`,
      );
      expect(run.code).toBe(0);
      expect(Object.fromEntries(report.tables.map((t) => [`${t.schema}.${t.table}`, t.rows]))).toEqual({
        'public.documents': 2,
        'sales.Order Lines': 300,
        'sales.audit': 120,
        'sales.audit_2026': 80,
        'sales.cart': 90,
        'sales.customers': 300,
        'sales.events': 0,
        'sales.events_2025': 213,
        'sales.events_2026': 187,
        'sales.metrics': 0,
        'sales.metrics_eu': 0,
        'sales.metrics_eu_2026': 200,
        'sales.metrics_other': 400,
        'sales.orders': 1500,
        'sales.prices': 250,
        'sales.secrets': 40,
        'sales.top_customers': 20,
      });
    });
  });
});

describe('a sharded backup of PostgreSQL 13 holding what PostgreSQL 18 no longer accepts', { timeout: 300_000 }, () => {
  it('verify --local fails on 18 and says the errors may be 18\'s alone; verify --scratch-url on the backup\'s own 13 proves it restores', async () => {
    const { pg } = source(13);
    // A monitoring view over pg_stat_bgwriter's checkpoint columns: PostgreSQL 17 moved them to pg_stat_checkpointer.
    await pg.query("CREATE DATABASE ops TEMPLATE template0 LOCALE 'en_US.UTF-8'");
    await pg.query(
      `CREATE TABLE runs (id int PRIMARY KEY, note text); INSERT INTO runs SELECT g, 'r' || g FROM generate_series(1, 500) g;
       CREATE TABLE hosts (name text PRIMARY KEY); INSERT INTO hosts SELECT 'h' || g FROM generate_series(1, 50) g;
       CREATE VIEW checkpoints AS SELECT checkpoints_timed, checkpoints_req, buffers_backend FROM pg_stat_bgwriter;`,
      [],
      'ops',
    );
    const backup = await runCli(['run', '--reason', 'ops 13'], { ...source(13).env, DATABASE_URL: pg.urlFor('ops'), DATABASES: 'ops', DUMP_JOBS: '2' });
    expect(backup.code, backup.stderr).toBe(0);
    const key = (backup.result!.backups as { key: string }[])[0]!.key;

    const [local, own] = await Promise.all([
      runCli(['verify', '--key', key, '--local', '--output', 'text'], source(13).env),
      runCli(['verify', '--key', key, '--scratch-url', pg.url, '--json'], source(13).env),
    ]);
    const text = local.stdout + local.stderr;
    expect(local.code, text).toBe(1);
    expect(text).toMatch(/^ {2}servers {9}backup of PostgreSQL 13\.\d+, restored on PostgreSQL 18\.\d+$/m);
    expect(text).toMatch(/^ {2}note: the backup is of PostgreSQL 13\.\d+ and was restored on PostgreSQL 18\.\d+: this tried a restore into PostgreSQL 18, not into 13 /m);
    expect(text).toMatch(/PROBLEM \(restore\): pg_restore reported 1 error .*; the backup is of PostgreSQL 13\.\d+ and was restored on PostgreSQL 18\.\d+: .*\n(.*\n)*.*column pg_stat_bgwriter\.checkpoints_timed does not exist/);
    expect(text).toMatch(/what to do: The backup was restored on another PostgreSQL major than its own server's, so these errors may be that major's alone/);
    // The progress line counts the tables whose data the data archives hold, as the report does.
    expect(text).toMatch(/^archive: \d+ entries, data for 2 tables$/m);
    expect(text).toMatch(/^ {2}archive {9}\d+ TOC entries, data for 2 tables$/m);
    // Every row came back all the same: no table fails.
    expect(text).not.toMatch(/rows restored, the backup held/);

    const report = resultOf<VerifyReport>(own);
    expect(report.problems).toEqual([]);
    expect(report).toMatchObject({ status: 'ok', sha256Verified: true, failingTables: [], backupServerVersion: report.scratchServerVersion });
    expect(report.versionNote).toBeUndefined();
    expect(own.code).toBe(0);
  });
});
