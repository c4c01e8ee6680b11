/**
 * Whole-database comparison: what a restore must give back, compared as a whole. A snapshot holds
 * the schema as `pg_dump --schema-only --create` writes it (the database's own definition
 * included: encoding, locale and provider, comment, grants, owner, ALTER DATABASE … SET,
 * ALTER ROLE … IN DATABASE … SET), the rows of every table (ONLY: partitions counted once) and
 * populated materialized view, every sequence's state, every large object, and the database's
 * catalog properties. `compareDatabases` lists the differences: an empty list means the restored
 * database is the source.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { libpqEnv } from '../../engine/pg/env.ts';
import { resolvePgTool } from '../../engine/pg/tools.ts';
import { layerRoot } from './layer.ts';
import { quoteIdent, type TestPostgres } from './postgres.ts';

const execFileAsync = promisify(execFile);

export interface DatabaseSnapshot {
  /** `pg_dump --schema-only --create`, with the database name replaced by `<db>` and run-specific lines dropped. */
  readonly schema: readonly string[];
  /** `schema.table` → `rows:md5` of its own rows. */
  readonly tables: Readonly<Record<string, string>>;
  /** `schema.sequence` → `last_value/is_called`. */
  readonly sequences: Readonly<Record<string, string>>;
  readonly largeObjects: string;
  readonly properties: Readonly<Record<string, string>>;
}

/** pg_dump of the layer (18), password through the environment only. */
export async function schemaDump(pgsrv: TestPostgres, database: string): Promise<string> {
  const cmd = resolvePgTool('pg_dump', { layerRoots: [layerRoot()] });
  const { stdout } = await execFileAsync(cmd.file, [...cmd.args, '--schema-only', '--create', '--no-sync', '--dbname', `dbname='${database.replace(/'/g, "\\'")}'`], {
    env: libpqEnv({ ...pgsrv.connection(database), sslmode: 'disable' }, {}),
    maxBuffer: 256 * 1024 * 1024,
  });
  return stdout;
}

export async function snapshot(pgsrv: TestPostgres, database: string): Promise<DatabaseSnapshot> {
  const q = <T extends Record<string, unknown>>(sql: string, params: unknown[] = []) => pgsrv.query<T>(sql, params, database);
  const name = new RegExp(`(?<=[\\s(])(${escape(quoteIdent(database))}|${escape(database)})(?=[\\s;,)]|$)`, 'g');
  const schema = (await schemaDump(pgsrv, database))
    .split('\n')
    .filter((l) => !/^\\(un)?restrict /.test(l) && !/^-- Dumped (from|by) /.test(l))
    // `\connect -reuse-previous=on "dbname='my-app'"`: a name SQL quotes is written as a conninfo value (no quote or backslash in ours).
    .map((l) => l.replace(name, '<db>').replaceAll(`dbname='${database}'`, "dbname='<db>'"));

  const tables: Record<string, string> = {};
  const rels = await q<{ schema: string; name: string }>(
    `SELECT n.nspname AS schema, c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE (c.relkind = 'r' OR (c.relkind = 'm' AND c.relispopulated)) AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
     ORDER BY 1, 2`,
  );
  for (const r of rels) {
    const rel = `${quoteIdent(r.schema)}.${quoteIdent(r.name)}`;
    const [row] = await q<{ n: string; sum: string | null }>(`SELECT count(*) AS n, md5(string_agg(x::text, E'\\n' ORDER BY x::text COLLATE "C")) AS sum FROM ONLY ${rel} x`);
    tables[`${r.schema}.${r.name}`] = `${row!.n}:${row!.sum ?? ''}`;
  }
  const sequences: Record<string, string> = {};
  for (const s of await q<{ schema: string; name: string }>("SELECT schemaname AS schema, sequencename AS name FROM pg_sequences ORDER BY 1, 2")) {
    const [row] = await q<{ last_value: string; is_called: boolean }>(`SELECT last_value, is_called FROM ${quoteIdent(s.schema)}.${quoteIdent(s.name)}`);
    sequences[`${s.schema}.${s.name}`] = `${row!.last_value}/${row!.is_called}`;
  }
  const [lo] = await q<{ n: string; sum: string | null }>(
    `SELECT count(*) AS n, md5(string_agg(m.oid::text || ':' || pg_get_userbyid(m.lomowner) || ':' || coalesce(m.lomacl::text, '') || ':' || md5(lo_get(m.oid)), ',' ORDER BY m.oid)) AS sum FROM pg_largeobject_metadata m`,
  );
  // The same properties from every supported server: the provider's locale is datlocale from 17,
  // daticulocale in 15 and 16 (ICU only); providers came in 15, ICU rules in 16.
  const [version] = await q<{ v: string }>("SELECT current_setting('server_version_num') AS v");
  const v = Number(version!.v);
  const locale = v >= 170000 ? 'd.datlocale' : v >= 150000 ? 'd.daticulocale' : 'NULL::text';
  const [props] = await q<Record<string, string | number | boolean | null>>(
    `SELECT pg_encoding_to_char(d.encoding) AS encoding, ${v >= 150000 ? 'd.datlocprovider' : "'c'::\"char\""} AS provider, d.datcollate AS collate, d.datctype AS ctype,
            ${locale} AS locale, ${v >= 160000 ? 'd.daticurules' : 'NULL::text'} AS icu_rules, d.datconnlimit AS connection_limit, d.datistemplate AS is_template,
            d.datallowconn AS allow_connections, pg_get_userbyid(d.datdba) AS owner, d.datacl::text AS acl,
            shobj_description(d.oid, 'pg_database') AS comment,
            (SELECT string_agg(coalesce(r.rolname, '*') || '=' || array_to_string(s.setconfig, ','), ';' ORDER BY r.rolname NULLS FIRST)
               FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole WHERE s.setdatabase = d.oid) AS settings
     FROM pg_database d WHERE d.datname = current_database()`,
  );
  const properties: Record<string, string> = {};
  for (const [k, v] of Object.entries(props!)) properties[k] = String(v);
  return { schema, tables, sequences, largeObjects: `${lo!.n}:${lo!.sum ?? ''}`, properties };
}

/** Every difference between two snapshots, one line each (`- ` only in the first, `+ ` only in the second). */
export function diffSnapshots(a: DatabaseSnapshot, b: DatabaseSnapshot): string[] {
  const out: string[] = [];
  const maps: [string, Readonly<Record<string, string>>, Readonly<Record<string, string>>][] = [
    ['property', a.properties, b.properties],
    ['table', a.tables, b.tables],
    ['sequence', a.sequences, b.sequences],
  ];
  for (const [what, x, y] of maps) {
    for (const k of new Set([...Object.keys(x), ...Object.keys(y)])) {
      if (x[k] !== y[k]) out.push(`${what} ${k}: ${x[k] ?? '(missing)'} → ${y[k] ?? '(missing)'}`);
    }
  }
  if (a.largeObjects !== b.largeObjects) out.push(`large objects: ${a.largeObjects} → ${b.largeObjects}`);
  // Schema: a multiset difference of the dump's lines (order is pg_dump's, stable for equal databases).
  const count = (lines: readonly string[]) => lines.reduce((m, l) => m.set(l, (m.get(l) ?? 0) + 1), new Map<string, number>());
  const ca = count(a.schema);
  const cb = count(b.schema);
  for (const [l, n] of ca) for (let i = cb.get(l) ?? 0; i < n; i++) out.push(`schema - ${l}`);
  for (const [l, n] of cb) for (let i = ca.get(l) ?? 0; i < n; i++) out.push(`schema + ${l}`);
  return out;
}

export async function compareDatabases(source: { pg: TestPostgres; database: string }, restored: { pg: TestPostgres; database: string }): Promise<string[]> {
  return diffSnapshots(await snapshot(source.pg, source.database), await snapshot(restored.pg, restored.database));
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
