/**
 * Restore fidelity (issue 11): `restore` and `verify` give back the whole database, compared as a
 * whole with the source (test/support/whole-database.ts), with bare `pg_restore --create` as the
 * reference. The backups are taken by `pg-s3-backup backup` (streamed: no data offsets in the TOC).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { libpqEnv } from '../../../engine/pg/env.ts';
import { resolvePgTool } from '../../../engine/pg/tools.ts';
import { createAsciiDatabase, createBuiltinDatabase, createFidelityDatabase, createFidelityRoles, FIDELITY_ROWS } from '../../support/fidelity-fixtures.ts';
import { layerRoot } from '../../support/layer.ts';
import { startPostgres, type TestPostgres } from '../../support/postgres.ts';
import { compareDatabases } from '../../support/whole-database.ts';
import { databases, runCli, startCliServices, type CliServices, resultOf } from '../../support/cli.ts';

const execFileAsync = promisify(execFile);

let svc: CliServices;
let other: TestPostgres;
let dir: string;
const keys: Record<string, string> = {};

beforeAll(async () => {
  [svc, other] = await Promise.all([startCliServices(), startPostgres()]);
  dir = mkdtempSync(join(tmpdir(), 'pgs3b-fidelity-'));
  await createFidelityDatabase(svc.pg);
  await createAsciiDatabase(svc.pg);
  await createBuiltinDatabase(svc.pg);
  const run = await runCli(['backup', '--reason', 'fidelity'], { ...svc.env, DATABASES: 'fidelity,fid_ascii,fid_builtin' });
  expect(run.code, run.stderr).toBe(0);
  for (const b of run.result!.backups as { database: string; key: string }[]) keys[b.database] = b.key;
});
afterAll(async () => {
  await Promise.all([svc?.stop(), other?.stop()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The dump of `database` as stored, in a local file. */
async function dumpFile(database: string): Promise<string> {
  const res = await svc.clients.s3.send(new GetObjectCommand({ Bucket: svc.bucket, Key: keys[database] }));
  const file = join(dir, `${database}.dump`);
  writeFileSync(file, Buffer.from(await res.Body!.transformToByteArray()));
  return file;
}

const restore = (database: string, target: TestPostgres, into: string, ...extra: string[]) =>
  runCli(['restore', '--key', keys[database]!, '--target-url', target.urlFor(into), ...extra], svc.env);

describe('the reference: bare pg_restore --create', () => {
  it('gives back the whole database, so the comparison shows only what a restore loses', async () => {
    await createFidelityRoles(other);
    const cmd = resolvePgTool('pg_restore', { layerRoots: [layerRoot()] });
    for (const database of ['fidelity', 'fid_ascii']) {
      await execFileAsync(cmd.file, [...cmd.args, '--create', '--exit-on-error', '--dbname', 'postgres', await dumpFile(database)], {
        env: libpqEnv({ ...other.connection('postgres'), sslmode: 'disable' }, {}),
      });
      expect(await compareDatabases({ pg: svc.pg, database }, { pg: other, database })).toEqual([]);
    }
    // The comparison sees a lost property.
    await other.query('ALTER DATABASE fidelity RESET search_path');
    expect(await compareDatabases({ pg: svc.pg, database: 'fidelity' }, { pg: other, database: 'fidelity' })).toEqual(
      expect.arrayContaining([expect.stringMatching(/^property settings: /), expect.stringMatching(/^schema - ALTER DATABASE <db> SET search_path/)]),
    );
    for (const database of ['fidelity', 'fid_ascii']) await other.query(`DROP DATABASE ${database}`);
  });
});

describe('restore --create: the database as the archive defines it', () => {
  it('gives back encoding, locale provider, comment, grants, owner, settings and every row (serial and --jobs 2)', async () => {
    // Something added to template1 must not leak into a restored database.
    await svc.pg.query('CREATE TABLE public.template1_leak (id int)', [], 'template1');
    try {
      for (const [into, jobs] of [['fidelity_serial', '1'], ['fidelity_jobs', '2']] as const) {
        const run = await restore('fidelity', svc.pg, into, '--create', '--jobs', jobs);
        expect(run.code, run.stderr).toBe(0);
        expect(await compareDatabases({ pg: svc.pg, database: 'fidelity' }, { pg: svc.pg, database: into }), into).toEqual([]);
      }
    } finally {
      await svc.pg.query('DROP TABLE public.template1_leak', [], 'template1');
    }
    // The application role's unqualified query works: the database's search_path came back.
    const app = new pg.Client({ host: svc.pg.host, port: svc.pg.port, user: 'fid_app', password: 'fid-fid_app', database: 'fidelity_serial' });
    await app.connect();
    try {
      expect((await app.query('SELECT count(*) AS n FROM entries')).rows).toEqual([{ n: '200' }]);
      expect((await app.query('SHOW work_mem')).rows).toEqual([{ work_mem: '8MB' }]);
    } finally {
      await app.end();
    }
    // ICU sv-SE order: å, ä, ö after z.
    const names = await svc.pg.query<{ name: string }>('SELECT name FROM names ORDER BY name', [], 'fidelity_jobs');
    expect(names.map((r) => r.name)).toEqual(['anna', 'zebra', 'Zorro', 'åsa', 'ärla', 'örn']);
  });

  it('--clean --jobs 2 over a restored copy gives back the whole database again (drops run before the pre-data pass)', async () => {
    const first = await restore('fidelity', svc.pg, 'fidelity_clean', '--create');
    expect(first.code, first.stderr).toBe(0);
    // Damage: rows lost, a sequence moved, a grant revoked; a foreign key points at the table --clean must drop.
    await svc.pg.query('DELETE FROM ledger.measurements_2026; SELECT setval(\'public.account_codes\', 9); REVOKE SELECT ON ledger.entries FROM fid_reader', [], 'fidelity_clean');
    const cleaned = await restore('fidelity', svc.pg, 'fidelity_clean', '--clean', '--jobs', '2');
    expect(cleaned.code, cleaned.stderr).toBe(0);
    // Database-level properties came with --create; --clean replaces the objects.
    expect(await compareDatabases({ pg: svc.pg, database: 'fidelity' }, { pg: svc.pg, database: 'fidelity_clean' })).toEqual([]);
  });

  it('keeps a SQL_ASCII database SQL_ASCII (its bytes stay usable)', async () => {
    for (const [into, jobs] of [['ascii_copy', '1'], ['ascii_jobs', '2']] as const) {
      const run = await restore('fid_ascii', svc.pg, into, '--create', '--jobs', jobs);
      expect(run.code, run.stderr).toBe(0);
      expect(await compareDatabases({ pg: svc.pg, database: 'fid_ascii' }, { pg: svc.pg, database: into }), into).toEqual([]);
    }
    expect(await svc.pg.query('SELECT upper(s) AS u FROM words WHERE id = 2', [], 'ascii_copy')).toEqual([{ u: 'PLAIN' }]);
    expect(await svc.pg.query('SELECT count(upper(s)) AS n FROM words', [], 'ascii_copy')).toEqual([{ n: '2' }]);
  });

  it('refuses, naming why, when the target server cannot create the database as defined (nothing created)', async () => {
    const old = await startPostgres({ major: 15 });
    try {
      const run = await restore('fid_builtin', old, 'builtin_copy', '--create');
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(/cannot create database "builtin_copy" as the backup defines it/);
      expect(run.stderr).toMatch(/LOCALE_PROVIDER = builtin/);
      expect(run.stderr).toMatch(/what to do: /);
      expect(await databases(old)).not.toContain('builtin_copy');
    } finally {
      await old.stop();
    }
  });
});

describe('verify', () => {
  it('reports ok with exact per-table counts: ONLY for partitions, WITH NO DATA views skipped', async () => {
    const run = await runCli(['verify', '--key', keys.fidelity!, '--scratch-url', svc.pg.url, '--json', '--jobs', '2'], svc.env);
    const report = resultOf<{ status: string; problems: unknown[]; tables: { schema: string; table: string; rows: number }[]; totalRows: number }>(run);
    expect(report.problems).toEqual([]);
    expect(report.status).toBe('ok');
    expect(run.code).toBe(0);
    expect(Object.fromEntries(report.tables.map((t) => [`${t.schema}.${t.table}`, t.rows]))).toEqual(FIDELITY_ROWS);
    expect(report.totalRows).toBe(Object.values(FIDELITY_ROWS).reduce((a, b) => a + b, 0));
  });

  it('keeps a SQL_ASCII backup SQL_ASCII in the drill', async () => {
    const run = await runCli(['verify', '--key', keys.fid_ascii!, '--scratch-url', svc.pg.url, '--json'], svc.env);
    expect(run.code, run.stdout).toBe(0);
    expect(resultOf(run)).toMatchObject({ status: 'ok', database: 'fid_ascii', encoding: 'SQL_ASCII' });
  });
});

describe('restore --table', () => {
  it('restores the table with what it depends on: schema, enum, domain, sequences, identity', async () => {
    const run = await restore('fidelity', svc.pg, 'one_table', '--create', '--table', 'ledger.accounts');
    expect(run.code, run.stderr).toBe(0);
    expect(await svc.pg.query('SELECT count(*) AS n FROM ledger.accounts', [], 'one_table')).toEqual([{ n: '30' }]);
    // The identity and the sequence in another schema came along, at their values.
    const ident = await svc.pg.query("SELECT attidentity FROM pg_attribute WHERE attrelid = 'ledger.accounts'::regclass AND attname = 'id'", [], 'one_table');
    expect(ident).toEqual([{ attidentity: 'a' }]);
    expect(await svc.pg.query("INSERT INTO ledger.accounts (kind, name) VALUES ('asset', 'new') RETURNING id, code", [], 'one_table')).toEqual([{ id: 31, code: 5001 }]);
    const tables = await svc.pg.query<{ t: string }>("SELECT relnamespace::regnamespace || '.' || relname AS t FROM pg_class WHERE relkind IN ('r', 'p') AND relnamespace IN ('public'::regnamespace, 'ledger'::regnamespace)", [], 'one_table');
    expect(tables.map((t) => t.t)).toEqual(['ledger.accounts']);
  });

  it('errors on an unknown table, before creating anything', async () => {
    const run = await restore('fidelity', svc.pg, 'no_such_table', '--create', '--table', 'ledger.nope');
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/no table "ledger\.nope" in the backup/);
    expect(await databases(svc.pg)).not.toContain('no_such_table');
  });

  it('--schema-only and --data-only', async () => {
    const schema = await restore('fidelity', svc.pg, 'schema_only', '--create', '--schema-only');
    expect(schema.code, schema.stderr).toBe(0);
    expect(await svc.pg.query('SELECT count(*) AS n FROM ledger.entries', [], 'schema_only')).toEqual([{ n: '0' }]);
    const data = await restore('fidelity', svc.pg, 'schema_only', '--data-only', '--table', 'ledger.entries', '--table', 'ledger.accounts');
    expect(data.code, data.stderr).toBe(0);
    expect(await svc.pg.query('SELECT count(*) AS n FROM ledger.entries', [], 'schema_only')).toEqual([{ n: '200' }]);
  });
});

describe('errors, --keep-going, --no-owner and --no-acl', () => {
  it('reports the first errors and how many more, with a hint that fits (the created database was dropped)', async () => {
    // `other` has no fid_* roles now: every owner and grant fails.
    await other.query('DROP ROLE IF EXISTS fid_owner, fid_app, fid_reader');
    const run = await restore('fidelity', other, 'no_roles', '--create', '--jobs', '2');
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/role "fid_owner" does not exist/);
    expect(run.stderr).toMatch(/and \d+ more errors/);
    expect(run.stderr).not.toMatch(/processing data for table|launching item|finished item/);
    expect(run.stderr).toMatch(/was dropped/);
    expect(run.stderr).toMatch(/--no-owner/);
    expect(run.stderr).not.toMatch(/retry with --clean \(or into a new database with --create\)/);
    expect(await databases(other)).not.toContain('no_roles');
  });

  it('--keep-going keeps the database, lists the errors and exits 1', async () => {
    const run = await restore('fidelity', other, 'kept', '--create', '--keep-going');
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/role "fid_owner" does not exist/);
    expect(run.stderr).toMatch(/kept/);
    expect(await databases(other)).toContain('kept');
    expect(await other.query('SELECT count(*) AS n FROM ledger.entries', [], 'kept')).toEqual([{ n: '200' }]);
  });

  it('--no-owner keeps the grants; --no-acl drops them', async () => {
    await createFidelityRoles(other);
    const acl = (db: string) => other.query<{ acl: string | null; owner: string }>("SELECT relacl::text AS acl, pg_get_userbyid(relowner) AS owner FROM pg_class WHERE oid = 'ledger.entries'::regclass", [], db);
    const noOwner = await restore('fidelity', other, 'no_owner', '--create', '--no-owner');
    expect(noOwner.code, noOwner.stderr).toBe(0);
    expect((await acl('no_owner'))[0]).toMatchObject({ owner: 'postgres', acl: expect.stringContaining('fid_reader=r/') });
    const noAcl = await restore('fidelity', other, 'no_acl', '--create', '--no-owner', '--no-acl');
    expect(noAcl.code, noAcl.stderr).toBe(0);
    expect((await acl('no_acl'))[0]).toEqual({ owner: 'postgres', acl: null });
  });
});
