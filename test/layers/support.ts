/**
 * Shared by the layer tests: run a layer tool, fill a database with awkward data, fingerprint a
 * database's contents.
 */
import { spawn } from 'node:child_process';
import { libpqEnv } from '../../engine/pg/env.ts';
import { quoteIdent, type TestPostgres } from '../support/postgres.ts';

/** Lambda's LD_LIBRARY_PATH: the system's directories come before the layer's /opt/lib. */
export const LAMBDA_LD_LIBRARY_PATH = '/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib';

export interface RunResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: Buffer;
  readonly stderr: string;
}

/** Runs a program without a shell, with exactly `env` as its environment. */
export function run(file: string, args: readonly string[], env: Record<string, string>): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout: Buffer.concat(out), stderr }));
  });
}

/** libpq's connection variables for `database` on `pg` (the password never goes in argv). */
export function pgEnv(pg: TestPostgres, database: string, host = pg.host): Record<string, string> {
  return libpqEnv({ ...pg.connection(database), host }, {});
}

/** The tables `fill` creates, in the order they are fingerprinted. */
export const TABLES = ['public.customers', 'public.events', 'public.blobs', '"Ünïcode schema"."Quoted ""table"""'] as const;

/**
 * Creates `database` on `pg` with data that is easy to get wrong: unicode and quotes in names,
 * NULLs, bytea, jsonb, arrays, numeric, a sequence, a view, and large objects.
 */
export async function fill(pg: TestPostgres, database: string, rows = 2000): Promise<void> {
  await pg.query(`CREATE DATABASE ${quoteIdent(database)}`);
  const sql = [
    `CREATE TABLE customers (id bigserial PRIMARY KEY, name text NOT NULL, email text UNIQUE, balance numeric(12,2), tags text[], created timestamptz NOT NULL DEFAULT '2024-01-01')`,
    `INSERT INTO customers (name, email, balance, tags, created)
       SELECT 'client ' || g || CASE WHEN g % 7 = 0 THEN E' \\'quoted\\' \\\\ ü €' ELSE '' END,
              CASE WHEN g % 11 = 0 THEN NULL ELSE 'c' || g || '@example.com' END,
              (g * 3.17)::numeric(12,2), ARRAY['a' || g % 3, 'b'], '2024-01-01'::timestamptz + g * interval '1 hour'
       FROM generate_series(1, ${rows}) g`,
    `CREATE TABLE events (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer bigint REFERENCES customers(id), payload jsonb, at timestamptz)`,
    `INSERT INTO events (customer, payload, at)
       SELECT 1 + g % ${rows}, jsonb_build_object('n', g, 'text', repeat('x', g % 50), 'nested', jsonb_build_array(g, NULL, true)),
              '2024-06-01'::timestamptz + g * interval '1 minute'
       FROM generate_series(1, ${rows * 2}) g`,
    `CREATE TABLE blobs (id int PRIMARY KEY, data bytea)`,
    `INSERT INTO blobs SELECT g, decode(md5(g::text) || md5((g * 2)::text), 'hex') FROM generate_series(1, ${rows}) g`,
    `CREATE SCHEMA "Ünïcode schema"`,
    `CREATE TABLE "Ünïcode schema"."Quoted ""table""" ("Col ü" text, n int)`,
    `INSERT INTO "Ünïcode schema"."Quoted ""table""" SELECT 'ligne ' || g || ' 日本語', g FROM generate_series(1, 100) g`,
    `CREATE VIEW customer_totals AS SELECT c.id, count(e.id) AS events FROM customers c LEFT JOIN events e ON e.customer = c.id GROUP BY c.id`,
    `SELECT lo_from_bytea(0, convert_to(repeat('large object ' || g, 1000 * g), 'UTF8')) FROM generate_series(1, 5) g`,
  ];
  for (const statement of sql) await pg.query(statement, [], database);
}

/**
 * One md5 per table (every row as text, in a stable order) and one over the large objects, so a
 * restore can be compared with its source exactly.
 */
export async function fingerprint(pg: TestPostgres, database: string): Promise<Record<string, string>> {
  const result: Record<string, string> = {};
  for (const table of TABLES) {
    const [row] = await pg.query<{ md5: string | null; n: string }>(
      `SELECT md5(string_agg(t::text, E'\\n' ORDER BY t::text COLLATE "C")) AS md5, count(*) AS n FROM ${table} t`,
      [],
      database,
    );
    result[table] = `${row?.n}:${row?.md5}`;
  }
  const [lo] = await pg.query<{ md5: string | null; n: string }>(
    `SELECT md5(string_agg(oid::text || ':' || md5(lo_get(oid)), ',' ORDER BY oid)) AS md5, count(*) AS n FROM pg_largeobject_metadata`,
    [],
    database,
  );
  result['large objects'] = `${lo?.n}:${lo?.md5}`;
  const [seq] = await pg.query<{ last: string }>(`SELECT last_value::text AS last FROM customers_id_seq`, [], database);
  result['customers_id_seq'] = seq?.last ?? 'missing';
  return result;
}
