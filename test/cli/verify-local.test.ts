/**
 * `pg-s3-backup verify --local`: the restore drill on a throwaway PostgreSQL started from the
 * pg-server layer, so the operator provides no scratch server. Same report as with --scratch-url;
 * nothing is created on any real server, nothing is left in the temporary folder.
 */
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { chmodSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { serverLayerRoot } from '../../layers/pg-server/paths.ts';
import { ensureServerLayer } from '../support/layer.ts';
import { NASTY_PASSWORD } from '../support/postgres.ts';
import { databases, expectNoSecret, runCli, startCliServices, type CliServices, resultOf } from '../support/cli.ts';

let svc: CliServices;
let key: string;
let tempDir: string;

beforeAll(async () => {
  await ensureServerLayer('x86_64');
  svc = await startCliServices();
  const run = await runCli(['backup', '--reason', 'verify --local test'], svc.env);
  expect(run.code, run.stderr).toBe(0);
  key = (run.result!.backups as { key: string }[])[0]!.key;
  tempDir = mkdtempSync(join(tmpdir(), 'pgs3b-verify-local-'));
  // As root the throwaway server runs as nobody, which must reach its folder (as in /tmp).
  chmodSync(tempDir, 0o711);
}, 900_000); // the first run builds the pg-server layer (up to 6 minutes cold, on a busy machine)

afterAll(async () => {
  await svc?.stop();
  if (tempDir) rmSync(tempDir, { recursive: true, force: true });
});

it('verify --local restores the newest backup into a throwaway server and reports every table; nothing is left anywhere', async () => {
  const before = await databases(svc.pg);
  const run = await runCli(['verify', '--latest', '--database', 'app', '--local', '--server-layer', serverLayerRoot('x86_64'), '--temp-dir', tempDir, '--json'], svc.env);
  expect(run.code, run.stderr).toBe(0);
  const report = resultOf<Record<string, unknown>>(run);
  expect(report).toMatchObject({ status: 'ok', key, database: 'app', sha256Verified: true, problems: [], scratchServer: expect.stringMatching(/throwaway/) });
  const tables = report.tables as { schema: string; table: string; rows: number }[];
  expect(tables.find((t) => t.table === 'orders')).toMatchObject({ schema: 'public', rows: 4000 });
  expect(report.timingsMs).toMatchObject({ server: expect.any(Number), restore: expect.any(Number) });
  // The same counts as the source database.
  const [orders] = await svc.pg.query<{ n: string }>('select count(*) as n from orders', [], 'app');
  expect(Number(orders!.n)).toBe(4000);
  // No scratch database on the real server, no server folder or dump left behind.
  expect(await databases(svc.pg)).toEqual(before);
  expect(readdirSync(tempDir)).toEqual([]);
  expectNoSecret(run, NASTY_PASSWORD);
});

it('verify needs exactly one of --local and --scratch-url (exit 2)', async () => {
  const neither = await runCli(['verify', '--latest'], svc.env);
  expect(neither.code).toBe(2);
  expect(neither.stderr).toMatch(/exactly one of --scratch-url, --scratch-secret and --local/);
  const both = await runCli(['verify', '--latest', '--local', '--scratch-url', svc.pg.url], svc.env);
  expect(both.code).toBe(2);
  const badLayer = await runCli(['verify', '--latest', '--local', '--server-layer', join(tempDir, 'nothing')], svc.env);
  expect(badLayer.code).toBe(2);
  expect(badLayer.stderr).toMatch(/no pg-server layer/);
});

it('verify (--local and --scratch-url) compares the manifest\'s tables and row counts as the drill does: a changed count and an extra table fail it, named', async () => {
  // The manifest says one row more in orders, and a table the dump never held (issue 22 §2): the
  // drill fails on both, and its alert sends the operator to `verify --local`, which must too.
  const manifestKey = `${key}.json`;
  const original = await (await svc.clients.s3.send(new GetObjectCommand({ Bucket: svc.bucket, Key: manifestKey }))).Body!.transformToString();
  const manifest = JSON.parse(original) as { tables: { schema: string; table: string; rows: number | null; bytes: number }[] };
  const orders = manifest.tables.find((t) => t.table === 'orders')!;
  expect(orders.rows).toBe(4000);
  orders.rows = 3999;
  manifest.tables.push({ schema: 'public', table: 'ghost', rows: 5, bytes: 8192 });
  await svc.clients.s3.send(new PutObjectCommand({ Bucket: svc.bucket, Key: manifestKey, Body: JSON.stringify(manifest, null, 2) }));
  try {
    const failing = ['public.orders: 4000 rows restored, the backup held 3999', 'public.ghost: missing after the restore'];
    for (const where of [['--local', '--server-layer', serverLayerRoot('x86_64')], ['--scratch-url', svc.pg.url]]) {
      const run = await runCli(['verify', '--key', key, ...where, '--temp-dir', tempDir, '--json'], svc.env);
      expect(run.code, `${where[0]}: ${run.stderr}`).toBe(1);
      const report = resultOf<{ status: string; failingTables: string[]; problems: { message: string }[]; tableChecks: { table: string; ok: boolean }[] }>(run);
      expect(report.status).toBe('failed');
      expect(report.failingTables).toEqual(failing);
      expect(report.problems.map((p) => p.message)).toEqual(expect.arrayContaining(failing));
      expect(report.tableChecks.filter((t) => t.ok).map((t) => t.table)).toEqual(expect.arrayContaining(['customers', 'documents']));
    }
    // The text report names them too.
    const text = await runCli(['verify', '--key', key, '--local', '--server-layer', serverLayerRoot('x86_64'), '--temp-dir', tempDir], svc.env);
    expect(text.code).toBe(1);
    for (const f of failing) expect(text.stdout + text.stderr).toContain(f);
    expect(readdirSync(tempDir)).toEqual([]);
  } finally {
    await svc.clients.s3.send(new PutObjectCommand({ Bucket: svc.bucket, Key: manifestKey, Body: original }));
  }
});
