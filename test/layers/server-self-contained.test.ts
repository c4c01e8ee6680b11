/**
 * The pg-server layer needs nothing from the system it runs on but a /bin/sh (which Lambda has:
 * initdb runs postgres through it): initdb and postgres run in a chroot whose root holds only the
 * layer at /opt/pg-server, a statically linked /bin/sh (busybox), /dev/null, /tmp and a one-line
 * /etc/passwd. No /dev/shm, no /usr/share/zoneinfo, only /tmp writable, as a uid without a passwd
 * entry, with Lambda's LD_LIBRARY_PATH and otherwise exactly the engine's server environment
 * (env -i). The server takes a restore of a real database, identical to its source, loads a
 * contrib extension, runs a parallel query (dynamic shared memory without /dev/shm), and pg_ctl
 * stops it.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { initdbArgs, nssFiles, postgresArgs, serverEnv, serverSettings, serverToolCommand, SERVER_PORT, SERVER_USER } from '../../engine/restore/throwaway-server.ts';
import { layerCommand } from '../../engine/pg/tools.ts';
import { ensureLayer, ensureServerLayer } from '../support/layer.ts';
import { startPostgres, type TestPostgres } from '../support/postgres.ts';
import { fill, fingerprint, LAMBDA_LD_LIBRARY_PATH, pgEnv, run } from './support.ts';

const execFileAsync = promisify(execFile);
const UID = 993;
const GID = 990;
const BUSYBOX = '/bin/busybox';

let serverLayer: string;
let dumpLayer: string;
let source: TestPostgres;
let root: string;
let postmaster: ChildProcess | undefined;

function chrootBinary(): string {
  const found = ['/usr/sbin/chroot', '/usr/bin/chroot', '/sbin/chroot'].find((p) => existsSync(p));
  if (!found) throw new Error('chroot(8) is missing: install the Debian package coreutils');
  return found;
}

/** The layer's command as seen inside the chroot (layer at /opt/pg-server). */
function inChroot(tool: 'initdb' | 'postgres' | 'pg_ctl'): { file: string; args: string[] } {
  const cmd = serverToolCommand(serverLayer, tool);
  const map = (p: string): string => p.replace(serverLayer, '/opt/pg-server');
  return { file: map(cmd.file), args: cmd.args.map(map) };
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) {
    throw new Error('the self-contained server layer test needs root to chroot and to create /dev/null: run the suite as root, as .ci/run does');
  }
  if (!existsSync(BUSYBOX)) throw new Error(`${BUSYBOX} is missing: install the Debian package busybox-static (.ci/run does)`);
  const { stdout } = await execFileAsync('readelf', ['-l', BUSYBOX]);
  if (/program interpreter/.test(stdout)) throw new Error(`${BUSYBOX} is dynamically linked: install busybox-static, not busybox`);
  serverLayer = await ensureServerLayer('x86_64');
  dumpLayer = await ensureLayer('x86_64');
  source = await startPostgres();
  await fill(source, 'app');
  await source.query('CREATE EXTENSION IF NOT EXISTS pg_trgm', [], 'app');

  root = mkdtempSync(join(tmpdir(), 'pgs3b-server-chroot-'));
  chmodSync(root, 0o755);
  mkdirSync(join(root, 'opt'));
  cpSync(serverLayer, join(root, 'opt', 'pg-server'), { recursive: true });
  mkdirSync(join(root, 'bin'));
  copyFileSync(BUSYBOX, join(root, 'bin', 'sh'));
  chmodSync(join(root, 'bin', 'sh'), 0o755);
  mkdirSync(join(root, 'dev'));
  await execFileAsync('mknod', ['-m', '666', join(root, 'dev', 'null'), 'c', '1', '3']);
  mkdirSync(join(root, 'tmp'));
  chmodSync(join(root, 'tmp'), 0o1777);
  mkdirSync(join(root, 'etc'));
  writeFileSync(join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/sbin/nologin\n');
}, 900_000); // the first run builds the pg-server layer (up to 6 minutes cold, on a busy machine)

afterAll(async () => {
  if (postmaster && postmaster.exitCode === null && postmaster.signalCode === null) {
    postmaster.kill('SIGQUIT');
    await new Promise((r) => postmaster!.once('exit', r));
  }
  if (root) rmSync(root, { recursive: true, force: true });
  await source?.stop();
});

it('initdb and postgres run from the layer alone: chroot, env -i, no /dev/shm, no zoneinfo, only /tmp writable, non-root without a passwd entry', async () => {
  expect(readdirSync(root).sort()).toEqual(['bin', 'dev', 'etc', 'opt', 'tmp']);
  // The server's folder, as the engine makes it: nss_wrapper's passwd and group, the data directory.
  const dir = '/tmp/srv';
  const hostDir = join(root, dir);
  mkdirSync(join(hostDir, 'data'), { recursive: true, mode: 0o700 });
  const files = nssFiles(UID, GID, dir);
  writeFileSync(join(hostDir, 'passwd'), files.passwd);
  writeFileSync(join(hostDir, 'group'), files.group);
  for (const p of [hostDir, join(hostDir, 'data')]) chownSync(p, UID, GID);
  const env = { ...serverEnv(dir), LD_LIBRARY_PATH: LAMBDA_LD_LIBRARY_PATH };
  const chroot = [`--userspec=${UID}:${GID}`, root];

  const initdb = inChroot('initdb');
  const init = await run(chrootBinary(), [...chroot, initdb.file, ...initdb.args, ...initdbArgs(`${dir}/data`)], env);
  if (init.code === 125 || /chroot: /.test(init.stderr)) throw new Error(`chroot itself failed (needs CAP_SYS_CHROOT): ${init.stderr}`);
  // Expected without time-zone files and without locale(1), both absent on Lambda: initdb and the
  // bootstrap look for them, then use UTC and the C locale (the layer's README says so). Nothing else.
  const unexpected = init.stderr
    .split('\n')
    .filter((l) => l.trim() !== '')
    .filter((l) => !/could not open directory "\/usr\/share\/zoneinfo"|locale: not found|no usable system locales were found/.test(l));
  expect(unexpected).toEqual([]);
  expect(init.code).toBe(0);

  const postgres = inChroot('postgres');
  const settings = serverSettings(dir);
  postmaster = spawn(chrootBinary(), [...chroot, postgres.file, ...postgres.args, ...postgresArgs(`${dir}/data`, settings)], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  postmaster.stderr!.on('data', (c: Buffer) => (log += c.toString()));
  postmaster.stdout!.on('data', (c: Buffer) => (log += c.toString()));
  const client = await connectWhenReady({ host: hostDir, port: SERVER_PORT, user: SERVER_USER, database: 'postgres' }, postmaster, () => log);
  try {
    const shown = await client.query<{ dsm: string; tz: string; v: string }>(
      `SELECT current_setting('dynamic_shared_memory_type') AS dsm, current_setting('TimeZone') AS tz, current_setting('server_version_num') AS v`,
    );
    expect(shown.rows[0]).toMatchObject({ dsm: 'mmap', tz: 'GMT' });
    expect(Number(shown.rows[0]!.v)).toBeGreaterThanOrEqual(180000);
    await client.query('CREATE DATABASE "app restored"');
  } finally {
    await client.end();
  }

  // A real dump, restored by the pg_dump layer's pg_restore over the chroot's socket.
  const dumpCmd = layerCommand(dumpLayer, 'pg_dump');
  const dump = await run(dumpCmd.file, [...dumpCmd.args, '-Fc', '--compress=zstd:1'], pgEnv(source, 'app'));
  expect(dump.code).toBe(0);
  const file = join(root, 'tmp', 'app.dump');
  writeFileSync(file, dump.stdout);
  const restoreCmd = layerCommand(dumpLayer, 'pg_restore');
  const restored = await run(restoreCmd.file, [...restoreCmd.args, '--no-owner', '-d', 'app restored', file], {
    PGHOST: hostDir,
    PGPORT: String(SERVER_PORT),
    PGUSER: SERVER_USER,
  });
  expect(restored.stderr).toBe('');
  expect(restored.code).toBe(0);

  const restoredDb = await connectWhenReady({ host: hostDir, port: SERVER_PORT, user: SERVER_USER, database: 'app restored' }, postmaster, () => log);
  try {
    // Same contents, table by table; the contrib extension's module loaded from the layer.
    const asServer = { query: async <T extends pg.QueryResultRow>(sql: string) => (await restoredDb.query<T>(sql)).rows };
    expect(await fingerprintVia(asServer)).toEqual(await fingerprint(source, 'app'));
    const trgm = await restoredDb.query<{ s: number }>(`SELECT similarity('restore', 'restored') AS s`);
    expect(trgm.rows[0]!.s).toBeGreaterThan(0.5);
    // A parallel plan: dynamic shared memory segments, with no /dev/shm.
    await restoredDb.query(`SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0`);
    const plan = await restoredDb.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, COSTS OFF) SELECT count(*) FROM events`);
    const text = plan.rows.map((r) => r['QUERY PLAN']).join('\n');
    expect(text).toMatch(/Workers Launched: [1-9]/);
  } finally {
    await restoredDb.end();
  }

  // pg_ctl from the layer stops it (fast shutdown); nothing outside /tmp was written.
  const pgCtl = inChroot('pg_ctl');
  const stopped = await run(chrootBinary(), [...chroot, pgCtl.file, ...pgCtl.args, 'stop', '-D', `${dir}/data`, '-m', 'fast', '-w', '-t', '60'], env);
  expect(stopped.stderr).toBe('');
  expect(stopped.code).toBe(0);
  await new Promise((r) => (postmaster!.exitCode !== null ? r(undefined) : postmaster!.once('exit', r)));
  expect(postmaster.exitCode).toBe(0);
  expect(readdirSync(root).sort()).toEqual(['bin', 'dev', 'etc', 'opt', 'tmp']);
  expect(readdirSync(join(root, 'etc'))).toEqual(['passwd']);
});

/** The fingerprint of test/layers/support.ts, computed through an already-open client. */
async function fingerprintVia(db: { query<T extends pg.QueryResultRow>(sql: string): Promise<T[]> }): Promise<Record<string, string>> {
  const fake = { query: <T extends pg.QueryResultRow>(sql: string) => db.query<T>(sql) } as unknown as TestPostgres;
  return fingerprint(fake, 'unused');
}

async function connectWhenReady(config: pg.ClientConfig, child: ChildProcess, log: () => string): Promise<pg.Client> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`postgres exited (${child.exitCode ?? child.signalCode}): ${log()}`);
    const client = new pg.Client({ ...config, connectionTimeoutMillis: 2_000 });
    try {
      await client.connect();
      return client;
    } catch (err) {
      await client.end().catch(() => {});
      if (Date.now() > deadline) throw new Error(`postgres did not accept connections within 60 s: ${String(err)}\n${log()}`, { cause: err });
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}
