/**
 * `restore --create` and `verify --local` give a database's own text back byte for byte (issue 22,
 * item 12): a comment whose lines start with `--` and `\`, `ALTER DATABASE … SET` values and a
 * role name with quotes and line breaks, and a LATIN1 database whose comment holds the byte 0xE9.
 * The database-level script is split by a lexer of SQL quoting, never by lines, and its bytes
 * reach the new database converted by the server from the script's encoding.
 */
import { mkdtempSync, readdirSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { serverLayerRoot } from '../../layers/pg-server/paths.ts';
import { ensureServerLayer } from '../support/layer.ts';
import { quoteIdent } from '../support/postgres.ts';
import { runCli, startCliServices, type CliServices, resultOf } from '../support/cli.ts';

let svc: CliServices;
let tempDir: string;
const ROLE = "r'o\n-- le\\x";
const COMMENT = "first line\n-- second\n\\x";
const NOTE = "it's\n-- two\n\\x";

/** What the server holds for a database's comment, settings and role settings, as bytes (hex). */
async function definitionBytes(db: string) {
  const [row] = await svc.pg.query<{ comment: string | null; settings: string | null; roles: string | null }>(
    `SELECT (SELECT encode(textsend(description), 'hex') FROM pg_shdescription s WHERE s.objoid = d.oid AND s.classoid = 'pg_database'::regclass) AS comment,
            (SELECT encode(textsend(array_to_string(setconfig, '|')), 'hex') FROM pg_db_role_setting WHERE setdatabase = d.oid AND setrole = 0) AS settings,
            (SELECT string_agg(encode(textsend(r.rolname || '=' || array_to_string(setconfig, '|')), 'hex'), ',') FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole WHERE setdatabase = d.oid) AS roles
       FROM pg_database d WHERE datname = $1`,
    [db],
  );
  return row!;
}

beforeAll(async () => {
  await ensureServerLayer('x86_64');
  svc = await startCliServices();
  const q = (sql: string, db = 'postgres') => svc.pg.query(sql, [], db);
  await q(`CREATE ROLE ${quoteIdent(ROLE)}`);
  await q('CREATE DATABASE defs');
  await q("COMMENT ON DATABASE defs IS E'first line\\n-- second\\n\\\\x'");
  await q(`ALTER DATABASE defs SET search_path TO 'a''b', "x-- y"`);
  await q("ALTER DATABASE defs SET pgs3b.note TO E'it''s\\n-- two\\n\\\\x'");
  await q(`ALTER ROLE ${quoteIdent(ROLE)} IN DATABASE defs SET work_mem TO '8MB'`);
  await q('CREATE TABLE public.t AS SELECT generate_series(1, 3) AS i', 'defs');
  // LATIN1: the comment is stored as the byte 0xE9 (the server converts from this client's UTF-8).
  await q("CREATE DATABASE lat ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0");
  await q("COMMENT ON DATABASE lat IS 'caf\u00e9 -- \u00e9t\u00e9'", 'lat');
  await q("ALTER DATABASE lat SET pgs3b.note TO '\u00e9'", 'lat');
  await q("CREATE TABLE t AS SELECT 'caf\u00e9'::text AS s", 'lat');
  const run = await runCli(['backup', '--database', 'defs', '--database', 'lat', '--reason', 'database definition test'], svc.env);
  expect(run.code, run.stderr).toBe(0);
  tempDir = mkdtempSync(join(tmpdir(), 'pgs3b-definition-'));
  chmodSync(tempDir, 0o711);
}, 900_000);

afterAll(async () => {
  await svc?.stop();
  if (tempDir) rmSync(tempDir, { recursive: true, force: true });
});

it('the source holds what the test says (a comment with -- and \\ lines, 0xE9 in LATIN1)', async () => {
  expect((await definitionBytes('defs')).comment).toBe(Buffer.from(COMMENT).toString('hex'));
  expect((await definitionBytes('lat')).comment).toBe(Buffer.from('caf\u00e9 -- \u00e9t\u00e9', 'latin1').toString('hex'));
});

it('restore --create gives the comment, the settings and the role settings back byte-identical', async () => {
  for (const db of ['defs', 'lat']) {
    const copy = `${db}_copy`;
    const run = await runCli(['restore', '--latest', '--database', db, '--create', '--target-url', svc.pg.urlFor(copy)], svc.env);
    expect(run.code, run.stderr).toBe(0);
    expect(await definitionBytes(copy)).toEqual(await definitionBytes(db));
  }
  const defs = await definitionBytes('defs_copy');
  expect(Buffer.from(defs.settings!, 'hex').toString()).toBe(`search_path="a'b", "x-- y"|pgs3b.note=${NOTE}`);
  expect(Buffer.from(defs.roles!, 'hex').toString()).toBe(`${ROLE}=work_mem=8MB`);
});

it('verify --local restores them (it restored nothing: "unterminated quoted string")', async () => {
  for (const db of ['defs', 'lat']) {
    const run = await runCli(['verify', '--latest', '--database', db, '--local', '--server-layer', serverLayerRoot('x86_64'), '--temp-dir', tempDir, '--json'], svc.env);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    const report = resultOf<{ status: string; problems: unknown[]; tables: { table: string; rows: number }[] }>(run);
    expect(report).toMatchObject({ status: 'ok', problems: [] });
    expect(report.tables).toEqual([expect.objectContaining({ table: 't', rows: db === 'defs' ? 3 : 1 })]);
  }
  expect(readdirSync(tempDir)).toEqual([]);
});
