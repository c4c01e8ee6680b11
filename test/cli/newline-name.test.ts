/**
 * A database whose name holds a line break (issue 22, item 9): backed up every night, it could not
 * be restored or verified by the tool (restore --create, restore into an existing database,
 * verify --local). Its tables are restored and verified. pg_restore 18 itself refuses to write the
 * definition of such a database (CREATE DATABASE …, CVE-2025-8714), so --create says so, names the
 * database (escaped) and what to do, and creates nothing; the others say what they left out.
 */
import { chmodSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { serverLayerRoot } from '../../layers/pg-server/paths.ts';
import { ensureServerLayer } from '../support/layer.ts';
import { quoteIdent } from '../support/postgres.ts';
import { runCli, startCliServices, type CliServices, resultOf } from '../support/cli.ts';

let svc: CliServices;
let tempDir: string;
const NAME = 'two\n-- lines\\x';

beforeAll(async () => {
  await ensureServerLayer('x86_64');
  svc = await startCliServices();
  await svc.pg.query(`CREATE DATABASE ${quoteIdent(NAME)}`);
  await svc.pg.query(`COMMENT ON DATABASE ${quoteIdent(NAME)} IS 'kept'`);
  await svc.pg.query('CREATE TABLE t AS SELECT generate_series(1, 7) AS i', [], NAME);
  const run = await runCli(['backup', '--database', NAME, '--reason', 'newline name test'], svc.env);
  expect(run.code, run.stderr).toBe(0);
  tempDir = mkdtempSync(join(tmpdir(), 'pgs3b-newline-'));
  chmodSync(tempDir, 0o711);
}, 900_000);

afterAll(async () => {
  await svc?.stop();
  if (tempDir) rmSync(tempDir, { recursive: true, force: true });
});

async function rows(db: string): Promise<number> {
  const [r] = await svc.pg.query<{ n: string }>('SELECT count(*) AS n FROM t', [], db);
  return Number(r!.n);
}

it('restore into an existing database gives the tables back; --create says why it cannot, naming the database', async () => {
  await svc.pg.query('CREATE DATABASE existing');
  const into = await runCli(['restore', '--latest', '--database', NAME, '--target-url', svc.pg.urlFor('existing')], svc.env);
  expect(into.code, into.stdout + into.stderr).toBe(0);
  expect(await rows('existing')).toBe(7);
  expect(into.result).toMatchObject({ status: 'restored', notRestored: [expect.stringContaining(`database ${JSON.stringify(NAME)}: its name holds a line break`)] });

  const copy = 'copy\n\\of it';
  const created = await runCli(['restore', '--latest', '--database', NAME, '--create', '--target-url', svc.pg.urlFor(copy)], svc.env);
  expect(created.code).toBe(1);
  expect(created.stderr).toContain(`database ${JSON.stringify(NAME)}: its name holds a line break`);
  expect(created.stderr).toMatch(/what to do: Its tables restore into a database that exists/);
  expect(await svc.pg.query('SELECT 1 FROM pg_database WHERE datname = $1', [copy])).toEqual([]);
});

it('verify --local', async () => {
  const run = await runCli(['verify', '--latest', '--database', NAME, '--local', '--server-layer', serverLayerRoot('x86_64'), '--temp-dir', tempDir, '--json'], svc.env);
  expect(run.code, run.stdout + run.stderr).toBe(0);
  expect(resultOf(run)).toMatchObject({
    status: 'ok',
    database: NAME,
    problems: [],
    tables: [expect.objectContaining({ table: 't', rows: 7 })],
    warnings: [expect.stringContaining('its name holds a line break: the scratch database was created from template0')],
  });
  expect(readdirSync(tempDir)).toEqual([]);
});
