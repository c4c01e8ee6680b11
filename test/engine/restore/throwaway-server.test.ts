/**
 * The throwaway server on this machine: starts from the built pg-server layer in a fresh folder,
 * answers on its socket only, and leaves nothing behind, whether it stops normally, fails to start
 * or was abandoned by an earlier run.
 */
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ThrowawayServerError } from '../../../engine/errors.ts';
import { SERVER_DIR_PREFIX, startThrowawayServer, sweepStaleServers, type ThrowawayServer } from '../../../engine/restore/throwaway-server.ts';
import { ensureServerLayer } from '../../support/layer.ts';

let layerRoot: string;
let parentDir: string;
const started: ThrowawayServer[] = [];

beforeAll(async () => {
  layerRoot = await ensureServerLayer('x86_64');
  parentDir = mkdtempSync(join(tmpdir(), 'pgs3b-throwaway-'));
  // As root, the server runs as nobody, which must be able to reach its folder (as in /tmp).
  chmodSync(parentDir, 0o711);
}, 900_000); // the first run builds the pg-server layer (up to 6 minutes cold, on a busy machine)

afterAll(async () => {
  for (const s of started) await s.stop();
  if (parentDir) rmSync(parentDir, { recursive: true, force: true });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

it('starts, takes work on its socket (no TCP), stops within its bound and removes its folder', async () => {
  const t0 = Date.now();
  const server = await startThrowawayServer({ layerRoot, parentDir });
  started.push(server);
  const startMs = Date.now() - t0;
  expect(server.dir.startsWith(join(parentDir, SERVER_DIR_PREFIX))).toBe(true);
  const client = new pg.Client(server.clientConfig('postgres'));
  await client.connect();
  try {
    const { rows } = await client.query<{ listen: string; fsync: string; dsm: string; v: string }>(
      `SELECT current_setting('listen_addresses') AS listen, current_setting('fsync') AS fsync,
              current_setting('dynamic_shared_memory_type') AS dsm, current_setting('server_version_num') AS v`,
    );
    expect(rows[0]).toMatchObject({ listen: '', fsync: 'off', dsm: 'mmap' });
    expect(Number(rows[0]!.v)).toBeGreaterThanOrEqual(180000);
    await client.query('CREATE DATABASE drill');
  } finally {
    await client.end();
  }
  // libpq's variables reach it too (pg_restore uses them).
  const psqlLike = new pg.Client({ host: server.libpqEnv('drill').PGHOST, port: server.port, user: server.user, database: 'drill' });
  await psqlLike.connect();
  await psqlLike.end();

  const t1 = Date.now();
  await server.stop();
  const stopMs = Date.now() - t1;
  expect(alive(server.pid)).toBe(false);
  expect(existsSync(server.dir)).toBe(false);
  // Generous bounds for a loaded 2-core machine; typical: start 3 to 10 s, stop under 1 s.
  expect(startMs).toBeLessThan(120_000);
  expect(stopMs).toBeLessThan(30_000);
  await server.stop(); // idempotent
});

it('a start that fails leaves no folder and no process, and says what to do', async () => {
  const err = await startThrowawayServer({ layerRoot: join(parentDir, 'no-such-layer'), parentDir }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(ThrowawayServerError);
  expect((err as ThrowawayServerError).hint).toMatch(/build:layer:server/);
  // A server that cannot come up within its bound is stopped and removed.
  const slow = await startThrowawayServer({ layerRoot, parentDir, startTimeoutMs: 1 }).catch((e: unknown) => e);
  expect(slow).toBeInstanceOf(ThrowawayServerError);
  expect(String((slow as Error).message)).toMatch(/within|initdb/);
  expect(readdirSync(parentDir).filter((d) => d.startsWith(SERVER_DIR_PREFIX))).toEqual([]);
});

it('sweepStaleServers stops and removes a server an earlier run abandoned (a reused Lambda sandbox)', async () => {
  const abandoned = await startThrowawayServer({ layerRoot, parentDir });
  started.push(abandoned);
  expect(alive(abandoned.pid)).toBe(true);
  // A live run's server is never swept: here, this process's own.
  expect(sweepStaleServers(parentDir)).toEqual([]);
  // The run that started it is gone (its owner file names a process that has ended).
  const gone = spawn(process.execPath, ['-e', '0']);
  await new Promise((r) => gone.once('exit', r));
  writeFileSync(join(abandoned.dir, 'owner'), `${gone.pid} 1\n`);
  // An unrelated folder is left alone.
  const other = mkdtempSync(join(parentDir, 'other-'));
  const removed = sweepStaleServers(parentDir);
  expect(removed).toEqual([abandoned.dir]);
  const deadline = Date.now() + 30_000;
  while (alive(abandoned.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  expect(alive(abandoned.pid)).toBe(false);
  expect(existsSync(abandoned.dir)).toBe(false);
  expect(existsSync(other)).toBe(true);
});
