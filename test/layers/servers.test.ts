/**
 * The layer's pg_dump 18 against PostgreSQL 18 and an older major (15), with every compression
 * the backup may be configured with: the archive lists, restores, and the restored contents are
 * identical to the source (rows, large objects, sequences). Tools run the way the Lambda runs
 * them: through the bundled loader (layerCommand), with Lambda's LD_LIBRARY_PATH and no other
 * environment than libpq's variables.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { layerCommand, type PgTool } from '../../engine/pg/tools.ts';
import { ensureLayer } from '../support/layer.ts';
import { quoteIdent, startPostgres, type TestPostgres } from '../support/postgres.ts';
import { fill, fingerprint, LAMBDA_LD_LIBRARY_PATH, pgEnv, run } from './support.ts';

const COMPRESSIONS = [
  { spec: 'zstd:1', listed: 'zstd' },
  { spec: 'lz4', listed: 'lz4' },
  { spec: 'gzip', listed: 'gzip' },
  { spec: 'none', listed: 'none' },
] as const;

let layer: string;
let work: string;

function tool(name: PgTool, args: readonly string[], pg: TestPostgres, database: string) {
  const cmd = layerCommand(layer, name);
  return run(cmd.file, [...cmd.args, ...args], { LD_LIBRARY_PATH: LAMBDA_LD_LIBRARY_PATH, ...pgEnv(pg, database) });
}

beforeAll(async () => {
  layer = await ensureLayer('x86_64');
  work = mkdtempSync(join(tmpdir(), 'pgs3b-layer-'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe.each([
  { major: 18 as const, harmlessErrors: 0 },
  // pg_dump 18 archives set transaction_timeout, unknown before PostgreSQL 17: one harmless error.
  { major: 15 as const, harmlessErrors: 1 },
])('pg_dump 18 from the layer against PostgreSQL $major', ({ major, harmlessErrors }) => {
  let pg: TestPostgres;
  let source: Record<string, string>;

  beforeAll(async () => {
    pg = await startPostgres({ major });
    const [{ server_version: version } = { server_version: '' }] = await pg.query<{ server_version: string }>('SHOW server_version');
    expect(version.split('.')[0]).toBe(String(major));
    await fill(pg, 'shop ü "prod"');
    source = await fingerprint(pg, 'shop ü "prod"');
  });
  afterAll(async () => pg?.stop());

  it.each(COMPRESSIONS)('--compress=$spec: lists, restores, identical contents', async ({ spec, listed }) => {
    const dump = await tool('pg_dump', ['-Fc', `--compress=${spec}`], pg, 'shop ü "prod"');
    expect(dump.stderr).toBe('');
    expect(dump.code).toBe(0);
    expect(dump.stdout.subarray(0, 5).toString()).toBe('PGDMP');
    const file = join(work, `pg${major}-${spec.replace(':', '-')}.dump`);
    writeFileSync(file, dump.stdout);

    const list = await tool('pg_restore', ['--list', file], pg, 'postgres');
    expect(list.code, list.stderr).toBe(0);
    const listing = list.stdout.toString();
    expect(listing).toMatch(new RegExp(`^; +Compression: ${listed}`, 'm'));
    expect(listing).toMatch(/TABLE DATA public customers/);
    expect(listing).toMatch(/BLOB/);

    const target = `restored ${spec}`;
    await pg.query(`CREATE DATABASE ${quoteIdent(target)}`);
    const restore = await tool('pg_restore', ['--no-owner', '-d', target, file], pg, target);
    if (harmlessErrors === 0) {
      expect(restore.stderr).toBe('');
      expect(restore.code).toBe(0);
    } else {
      expect(restore.stderr).toMatch(/unrecognized configuration parameter "transaction_timeout"/);
      expect(restore.stderr).toMatch(new RegExp(`errors ignored on restore: ${harmlessErrors}$`, 'm'));
      expect(restore.code).toBe(1);
    }
    expect(await fingerprint(pg, target)).toEqual(source);
  });

  it('pg_dumpall finds the layer pg_dump beside it (through --argv0 and the bin/ wrapper)', async () => {
    const all = await tool('pg_dumpall', ['--no-role-passwords'], pg, 'postgres');
    expect(all.stderr).toBe('');
    expect(all.code).toBe(0);
    const sql = all.stdout.toString();
    expect(sql).toContain('CREATE TABLE public.customers');
    expect(sql).toContain(`-- PostgreSQL database dump`);
  });
});
