/**
 * Sample data and content checksums: a database with several column types, unicode, NULLs, a
 * sequence, a view and large objects; checksums per table (and over all large objects) compare a
 * restored copy with the original.
 */
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { libpqEnv } from '../../engine/pg/env.ts';
import { quoteIdent, type TestPostgres } from './postgres.ts';

export async function createDatabase(pgsrv: TestPostgres, name: string): Promise<void> {
  await pgsrv.query(`create database ${quoteIdent(name)}`);
}

/** Fills `database` with a few tables (about `rows` rows each) and two large objects. */
export async function loadSampleData(pgsrv: TestPostgres, database: string, rows = 2000): Promise<void> {
  await pgsrv.query(
    `
    create table customers (id serial primary key, name text not null, email text unique, note text, created timestamptz not null default now());
    create table orders (id bigserial primary key, customer_id int references customers(id), amount numeric(12,2), items jsonb, tags text[], paid boolean);
    create table "Odd ""Table"" ñame" (k text primary key, v bytea);
    create view big_orders as select * from orders where amount > 500;
    create table documents (id int primary key, content oid);
    insert into customers (name, email, note)
      select 'Customer ' || g || ' ü€😀', 'c' || g || '@example.com', case when g % 7 = 0 then null else repeat(md5(g::text), 3) end
      from generate_series(1, ${rows}) g;
    insert into orders (customer_id, amount, items, tags, paid)
      select 1 + (g % ${rows}), (g * 37 % 100000) / 100.0, jsonb_build_object('sku', g, 'qty', g % 5), array['t' || (g % 3), 'x'], g % 2 = 0
      from generate_series(1, ${rows * 2}) g;
    insert into "Odd ""Table"" ñame" select 'key ' || g, decode(md5(g::text), 'hex') from generate_series(1, 100) g;
    insert into documents values (1, lo_from_bytea(0, convert_to(repeat('large object one ', 5000), 'UTF8'))),
                                 (2, lo_from_bytea(0, decode(repeat(md5('two'), 2000), 'hex')));
    `,
    [],
    database,
  );
}

/**
 * md5 of each user table's rows in primary-key order (text form), plus `<large objects>`: md5
 * over every large object's oid and content.
 */
export async function contentChecksums(pgsrv: TestPostgres, database: string): Promise<Record<string, string>> {
  const tables = await pgsrv.query<{ schema: string; name: string }>(
    `select n.nspname as schema, c.relname as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema') order by 1, 2`,
    [],
    database,
  );
  const out: Record<string, string> = {};
  for (const t of tables) {
    const q = `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`;
    const rows = await pgsrv.query<{ sum: string | null; n: string }>(
      `select md5(string_agg(x::text, E'\\n' order by x::text COLLATE "C")) as sum, count(*) as n from ${q} x`,
      [],
      database,
    );
    out[`${t.schema}.${t.name}`] = `${rows[0]!.n}:${rows[0]!.sum ?? ''}`;
  }
  const lo = await pgsrv.query<{ sum: string | null; n: string }>(
    `select md5(string_agg(oid::text || ':' || md5(lo_get(oid)), ',' order by oid)) as sum, count(*) as n from pg_largeobject_metadata`,
    [],
    database,
  );
  out['<large objects>'] = `${lo[0]!.n}:${lo[0]!.sum ?? ''}`;
  return out;
}

/** Restores a custom-format dump from `body` into `database` with pg_restore (password via env only). */
export async function pgRestore(pgRestoreBin: string, pgsrv: TestPostgres, database: string, body: Readable): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(pgRestoreBin, ['--no-owner', '--exit-on-error', `--dbname=${database}`], {
    env: libpqEnv({ ...pgsrv.connection(database), sslmode: 'disable' }),
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  body.pipe(child.stdin);
  child.stdin.on('error', () => {});
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  return { code, stderr };
}

/**
 * A stand-in pg_dump in a folder of its own under `root` (PG_DUMP_BIN's siblings stay apart):
 * answers `--version` like pg_dump 18, then runs `body` (sh) — for the failure modes a real
 * pg_dump cannot be made to show on demand.
 */
export function writeFakePgDump(root: string, body: string): string {
  const file = join(mkdtempSync(join(root, 'pg_dump-')), 'pg_dump');
  writeFileSync(file, `#!/bin/sh\ncase "$1" in --version) echo 'pg_dump (PostgreSQL) 18.6'; exit 0;; esac\n${body}\n`);
  chmodSync(file, 0o755);
  return file;
}
