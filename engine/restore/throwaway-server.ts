/**
 * A throwaway PostgreSQL server for restore drills, from the pg-server layer (layers/pg-server):
 * initdb into a fresh temporary folder, start postgres on a Unix socket in that folder (no TCP
 * listener at all), trust authentication, every durability setting off (the data is thrown away),
 * then stop it and delete the folder. Start and stop are bounded; whatever happens, the process is
 * gone and the folder removed when `stop()` returns or `startThrowawayServer` throws.
 *
 * Runs where Lambda runs: only the temporary folder is written, no /dev/shm
 * (dynamic_shared_memory_type=mmap), no passwd entry for the user (the layer's nss_wrapper answers
 * from a passwd file in the folder), a clean environment.
 */
import { type ChildProcess, spawn as nodeSpawn } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { markOwner, ownerAlive, sweepStaleDumps } from './leftovers.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { ThrowawayServerError } from '../errors.ts';
import { describeExit, runTool, startTool, type ProcessOutcome, type RunningTool, type SpawnFn, type StartToolOptions } from '../pg/process.ts';
import { findLoader, type ServerTool, type SpawnCommand } from '../pg/tools.ts';
import { withClient } from '../pg/client.ts';
import type { PgConnection } from '../pg/connection.ts';
import { libpqEnv } from '../pg/env.ts';

/** Where the pg-server layer is on Lambda (it ships one folder, pg-server/, into /opt). */
export const DEFAULT_SERVER_LAYER_ROOT = '/opt/pg-server';
/** The bootstrap superuser of the throwaway cluster. */
export const SERVER_USER = 'postgres';
/** Port number in the socket's name only (`.s.PGSQL.5432`): there is no TCP listener. */
export const SERVER_PORT = 5432;
/** Prefix of the temporary folders, so a later run can find and remove what a killed run left. */
export const SERVER_DIR_PREFIX = 'pgs3-server-';
/** Who runs the server when we are root (initdb and postgres refuse root): `nobody`. */
export const NOBODY = { uid: 65534, gid: 65534 } as const;

export type { ServerTool };

/** `lib/postgresql/<major>/bin` of the layer: where the tools' wrappers are, and where PostgreSQL looks for itself. */
export function serverBinDir(layerRoot: string): string {
  const base = join(layerRoot, 'lib', 'postgresql');
  const majors = existsSync(base) ? readdirSync(base).filter((d) => /^\d+$/.test(d)) : [];
  if (majors.length !== 1) {
    throw new ThrowawayServerError(`no PostgreSQL server in the pg-server layer at ${layerRoot} (expected one lib/postgresql/<major>/)`, {
      hint: 'Attach the pg-server layer (on Lambda, /opt/pg-server) or build it: npm run build:layer:server.',
    });
  }
  return join(base, majors[0]!, 'bin');
}

/**
 * The command that runs `tool` from the layer through its own loader:
 * `<root>/lib/ld-linux-*.so.* --preload <root>/lib/libnss_wrapper.so --library-path <root>/lib
 *  --argv0 <root>/lib/postgresql/<major>/bin/<tool> <root>/libexec/<tool>`.
 * argv[0] matters: PostgreSQL finds share/ and its modules relative to it, and initdb runs the
 * `postgres` beside it (the wrapper, which goes through the loader again).
 */
export function serverToolCommand(layerRoot: string, tool: ServerTool, loader = findLoader(layerRoot)): SpawnCommand {
  if (!loader) {
    throw new ThrowawayServerError(`no dynamic loader (lib/ld-linux-*.so.*) in the pg-server layer at ${layerRoot}`, {
      hint: 'Attach the pg-server layer (on Lambda, /opt/pg-server) or build it: npm run build:layer:server.',
    });
  }
  const lib = join(layerRoot, 'lib');
  return {
    file: loader,
    args: ['--preload', join(lib, 'libnss_wrapper.so'), '--library-path', lib, '--argv0', join(serverBinDir(layerRoot), tool), join(layerRoot, 'libexec', tool)],
  };
}

/** initdb's arguments: trust on the socket only, UTF-8, C locale (no locale files needed), no fsync. */
export function initdbArgs(dataDir: string): string[] {
  return [
    '-D', dataDir,
    '-U', SERVER_USER,
    '--auth-local=trust',
    '--auth-host=reject',
    '--encoding=UTF8',
    '--no-locale',
    '--no-sync',
    '--no-instructions',
    '--no-data-checksums',
  ];
}

export interface ServerSettingsOptions {
  /** shared_buffers (default 128MB: a Lambda function of 1 to 2 GB keeps room for pg_restore and Node). */
  readonly sharedBuffers?: string | undefined;
  /** max_wal_size: how much WAL /tmp holds between checkpoints (default 256MB). */
  readonly maxWalSize?: string | undefined;
}

/**
 * The server's settings. Nothing here is durable on purpose: the cluster lives for one drill.
 * - no TCP (`listen_addresses=''`), a Unix socket in the server's own folder;
 * - fsync, full_page_writes, synchronous_commit off; wal_level minimal: a restore writes its data
 *   once, not twice;
 * - dynamic_shared_memory_type=mmap: Lambda has no /dev/shm (the files go to the data folder);
 * - jit off (the layer ships no LLVM), autovacuum off (nothing to clean in a one-shot restore);
 * - GMT: the one zone PostgreSQL knows without time-zone files (Lambda has no /usr/share/zoneinfo,
 *   and "UTC" is then refused). Restored values are the same instants whatever the zone.
 */
export function serverSettings(socketDir: string, options: ServerSettingsOptions = {}): Record<string, string> {
  return {
    listen_addresses: '',
    unix_socket_directories: socketDir,
    port: String(SERVER_PORT),
    fsync: 'off',
    full_page_writes: 'off',
    synchronous_commit: 'off',
    wal_level: 'minimal',
    max_wal_senders: '0',
    max_wal_size: options.maxWalSize ?? '256MB',
    dynamic_shared_memory_type: 'mmap',
    shared_buffers: options.sharedBuffers ?? '128MB',
    huge_pages: 'off',
    jit: 'off',
    autovacuum: 'off',
    max_connections: '20',
    timezone: 'GMT',
    log_timezone: 'GMT',
    logging_collector: 'off',
    log_min_messages: 'warning',
  };
}

/** `-D dir -c name=value …` (the settings as arguments: nothing to edit in postgresql.conf). */
export function postgresArgs(dataDir: string, settings: Readonly<Record<string, string>>): string[] {
  return ['-D', dataDir, ...Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`])];
}

/** nss_wrapper's files: one user and one group for the uid/gid the server runs as. */
export function nssFiles(uid: number, gid: number, home: string): { passwd: string; group: string } {
  return {
    passwd: `${SERVER_USER}:x:${uid}:${gid}:PostgreSQL throwaway server:${home}:/bin/false\n`,
    group: `${SERVER_USER}:x:${gid}:\n`,
  };
}

/** The layer's compiled libc locales (layers/pg-server/build.sh, PG_LAYER_LOCALES): one folder per locale. */
export function serverLocalePath(layerRoot: string): string {
  return join(layerRoot, 'lib', 'locale');
}

/**
 * The whole environment of initdb and postgres: nss_wrapper's files and nothing else inherited
 * (no AWS credentials, no PG* variables of the caller). PATH for the /bin/sh that initdb runs
 * the postgres wrapper through, and for the layer's `locale -a` (initdb imports the collations it
 * lists). With the layer, LOCPATH: a database created en_US.UTF-8 or C.UTF-8 needs locale data,
 * and glibc then reads only the layer's (compiled for the layer's own glibc), never the host's
 * (Lambda has none; an operator's may be of another glibc).
 */
export function serverEnv(dir: string, layerRoot?: string): Record<string, string> {
  // TZ: the zone initdb writes into postgresql.conf; GMT needs no time-zone files (see serverSettings).
  const base = { NSS_WRAPPER_PASSWD: join(dir, 'passwd'), NSS_WRAPPER_GROUP: join(dir, 'group'), PATH: '/usr/bin:/bin', LC_ALL: 'C', TZ: 'GMT' };
  if (layerRoot === undefined) return base;
  return { ...base, PATH: `${serverBinDir(layerRoot)}:${base.PATH}`, LOCPATH: serverLocalePath(layerRoot) };
}

export interface ThrowawayServerOptions {
  /** The pg-server layer's root (default /opt/pg-server). */
  readonly layerRoot?: string | undefined;
  /** Where the server's temporary folder goes (default: the OS temporary folder, /tmp on Lambda). */
  readonly parentDir?: string | undefined;
  /** Bound on initdb plus start (default 120 s). */
  readonly startTimeoutMs?: number | undefined;
  /** Bound on a fast shutdown before the server is killed (default 30 s). */
  readonly stopTimeoutMs?: number | undefined;
  readonly settings?: ServerSettingsOptions | undefined;
  /** uid/gid of the server processes. Default: ours, or `nobody` when we are root. */
  readonly runAs?: { readonly uid: number; readonly gid: number } | undefined;
  readonly spawn?: SpawnFn | undefined;
}

export interface ThrowawayServer {
  /** The folder holding the data directory and the socket; removed by stop(). */
  readonly dir: string;
  /** The socket's folder (libpq's PGHOST). */
  readonly socketDir: string;
  readonly port: number;
  readonly user: string;
  /** pid of the postmaster. */
  readonly pid: number;
  /** libpq's variables to reach `database` (no password: trust on the socket). */
  libpqEnv(database: string): Record<string, string>;
  /** node-postgres settings for `database`. */
  clientConfig(database: string): pg.ClientConfig;
  /** A connection URL for `database` (socket folder as host=). */
  url(database: string): string;
  /** Fast shutdown, bounded; then the folder is removed. Idempotent. */
  stop(): Promise<void>;
}

/** The error for a server program that could not be started at all. */
function cannotStartServer(what: ServerTool) {
  return (err: NodeJS.ErrnoException): ThrowawayServerError =>
    new ThrowawayServerError(`cannot start ${what}: ${err.message}`, { cause: err, hint: 'Check that the pg-server layer is attached and built for this architecture.' });
}

/**
 * The one process runner's options for a server program: the exact environment, the uid/gid,
 * stdout and stderr in one 30-line tail.
 */
function serverRunOptions(tool: ServerTool, env: Record<string, string>, runAs: RunAs | undefined): StartToolOptions {
  return { env, runAs, tool, stderrLines: 30, stdoutInTail: true, cannotStart: cannotStartServer(tool) };
}

/** Runs a program to completion through the one runner; rejects on a non-zero exit, with its last output lines. */
async function runToEnd(spawn: SpawnFn, cmd: SpawnCommand, args: readonly string[], env: Record<string, string>, runAs: RunAs | undefined, timeoutMs: number, what: ServerTool): Promise<void> {
  const outcome = await runTool(spawn, cmd, args, { ...serverRunOptions(what, env, runAs), timeoutMs });
  if (outcome.exitCode === 0) return;
  throw new ThrowawayServerError(
    `${what} ${outcome.timedOut ? `did not finish within ${Math.round(timeoutMs / 1000)} s` : `failed (${describeExit(outcome.exitCode, outcome.signal, what)})`}: ${outcome.stderrTail.join(' | ')}`,
    { hint: 'The throwaway server could not be created in the temporary folder: check its free space and that the pg-server layer matches the function architecture.' },
  );
}

type RunAs = { readonly uid: number; readonly gid: number };

function defaultRunAs(): { uid: number; gid: number } | undefined {
  return process.getuid?.() === 0 ? { ...NOBODY } : undefined;
}

/** Waits until `child` exits, at most `ms`; true if it did. */
function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.off('exit', onExit);
      resolve(false);
    }, ms);
    const onExit = (): void => {
      clearTimeout(timer);
      resolve(true);
    };
    child.once('exit', onExit);
  });
}

/**
 * Waits (blocking: only when an earlier run left a server) until `pid` is gone; false after `ms`.
 * A zombie counts as gone: its parent (this very process, blocked here) may be the one to reap it.
 */
function waitGone(pid: number, ms: number): boolean {
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (const end = Date.now() + ms; Date.now() < end; Atomics.wait(pause, 0, 0, 50)) {
    try {
      process.kill(pid, 0);
    } catch {
      return true;
    }
    const statFile = `/proc/${pid}/stat`;
    if (existsSync(statFile)) {
      let stat: string;
      try {
        stat = readFileSync(statFile, 'utf8');
      } catch {
        return true; // ended between the two looks
      }
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) return true;
    }
  }
  return false;
}

/**
 * Removes what earlier runs left in `parentDir` (a Lambda sandbox is reused, and a run killed at
 * its timeout or by SIGKILL never reached stop()): folders named pgs3-server-*, after killing the
 * postmaster their postmaster.pid names if it still runs, and downloaded dumps (leftovers.ts).
 * Only our own folders are touched, and only those whose owner process is gone: a run going on
 * beside this one keeps its server. A folder is reported only once it is really gone.
 *
 * The postmaster must be gone before its folder is removed: while it shuts down it unlinks its own
 * files (postmaster.pid, the socket and its lock), and Node 24's fs.rmSync (recursive, force)
 * treats a file vanishing under it as "nothing to remove" and returns early without an error,
 * leaving the folder behind (Node 20's JavaScript implementation carried on).
 */
/** How old a server folder without an owner file must be before a sweep takes it for a leftover. */
export const UNOWNED_GRACE_MS = 10 * 60_000;

export function sweepStaleServers(parentDir: string = tmpdir()): string[] {
  const removed: string[] = sweepStaleDumps(parentDir);
  for (const name of existsSync(parentDir) ? readdirSync(parentDir) : []) {
    if (!name.startsWith(SERVER_DIR_PREFIX)) continue;
    const dir = join(parentDir, name);
    try {
      const stat = statSync(dir);
      const owner = ownerAlive(dir);
      if (!stat.isDirectory() || owner === true) continue;
      // No owner file: a run beside this one that has made its folder and not marked it yet
      // (mkdtemp, then markOwner), or a folder from before owner files. Only an old one is left over.
      if (owner === undefined && Date.now() - stat.mtimeMs < UNOWNED_GRACE_MS) continue;
      const pidFile = join(dir, 'data', 'postmaster.pid');
      if (existsSync(pidFile)) {
        const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
        if (Number.isInteger(pid) && pid > 1) {
          try {
            process.kill(pid, 'SIGQUIT');
            // Removing the folder under a postmaster still shutting down fails (it writes there):
            // wait for it, bounded, then SIGKILL.
            if (!waitGone(pid, 10_000)) {
              process.kill(pid, 'SIGKILL');
              waitGone(pid, 5_000);
            }
          } catch {
            // Already gone.
          }
        }
      }
      rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
      if (!existsSync(dir)) removed.push(dir);
    } catch {
      // Someone else's (another process's live server, or not ours to remove): leave it.
    }
  }
  return removed;
}

/** initdb, then postgres, in a new temporary folder; resolves when the server accepts connections. */
export async function startThrowawayServer(options: ThrowawayServerOptions = {}): Promise<ThrowawayServer> {
  const layerRoot = options.layerRoot ?? DEFAULT_SERVER_LAYER_ROOT;
  const spawn = options.spawn ?? (nodeSpawn as SpawnFn);
  const startTimeoutMs = options.startTimeoutMs ?? 120_000;
  const stopTimeoutMs = options.stopTimeoutMs ?? 30_000;
  const deadline = Date.now() + startTimeoutMs;
  const runAs = options.runAs ?? defaultRunAs();
  const initdb = serverToolCommand(layerRoot, 'initdb');
  const postgres = serverToolCommand(layerRoot, 'postgres');

  // What a killed run left here goes first (its server may still hold memory and a port).
  sweepStaleServers(options.parentDir ?? tmpdir());
  const dir = mkdtempSync(join(options.parentDir ?? tmpdir(), SERVER_DIR_PREFIX));
  markOwner(dir);
  const dataDir = join(dir, 'data');
  let child: ChildProcess | undefined;
  const cleanup = async (): Promise<void> => {
    if (child) await terminate(child, stopTimeoutMs);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const files = nssFiles(runAs?.uid ?? process.getuid?.() ?? 0, runAs?.gid ?? process.getgid?.() ?? 0, dir);
    writeFileSync(join(dir, 'passwd'), files.passwd);
    writeFileSync(join(dir, 'group'), files.group);
    mkdirSync(dataDir, { mode: 0o700 });
    if (runAs) {
      for (const p of [dir, dataDir, join(dir, 'passwd'), join(dir, 'group')]) chownSync(p, runAs.uid, runAs.gid);
    }
    const env = serverEnv(dir, layerRoot);
    await runToEnd(spawn, initdb, initdbArgs(dataDir), env, runAs, Math.max(1, deadline - Date.now()), 'initdb');

    // Started and kept: the runner's startTool (the same spawn, environment, uid/gid and tail).
    const run = startTool(spawn, postgres, postgresArgs(dataDir, serverSettings(dir, options.settings)), serverRunOptions('postgres', env, runAs));
    child = run.child;
    const server = makeServer(dir, child, stopTimeoutMs, cleanup);
    await waitReady(server, run, deadline, startTimeoutMs);
    return server;
  } catch (err) {
    await cleanup();
    throw err;
  }
}

function makeServer(dir: string, child: ChildProcess, _stopTimeoutMs: number, cleanup: () => Promise<void>): ThrowawayServer {
  let stopping: Promise<void> | undefined;
  // One connection (throwawayTarget), seen by libpq through engine/pg's one environment builder
  // (nothing inherited) and by node-postgres through the same settings withClient uses.
  const at = { socketDir: dir, port: SERVER_PORT, user: SERVER_USER };
  const clientConfig = (database: string): pg.ClientConfig => {
    const conn = throwawayTarget(at, database);
    return { host: conn.host, port: conn.port, user: conn.user, database, connectionTimeoutMillis: (conn.connectTimeoutSeconds ?? 0) * 1000 };
  };
  return {
    dir,
    socketDir: dir,
    port: SERVER_PORT,
    user: SERVER_USER,
    pid: child.pid ?? -1,
    libpqEnv: (database) => libpqEnv(throwawayTarget(at, database), {}),
    clientConfig,
    url: (database) => `postgresql://${SERVER_USER}@/${encodeURIComponent(database)}?host=${encodeURIComponent(dir)}&port=${SERVER_PORT}`,
    stop: () => (stopping ??= cleanup()),
  };
}

/** Polls a connection until the server answers, the process dies, or the deadline passes. */
async function waitReady(server: ThrowawayServer, run: RunningTool, deadline: number, startTimeoutMs: number): Promise<void> {
  // The runner's one outcome: resolves when postgres has exited, rejects (cannotStartServer) if it could not start.
  let exited: ProcessOutcome | undefined;
  let startError: Error | undefined;
  run.finished.then(
    (o) => (exited = o),
    (e: Error) => (startError = e),
  );
  for (;;) {
    if (startError) throw startError;
    if (exited) throw new ThrowawayServerError(`postgres exited during start-up (${describeExit(exited.exitCode, exited.signal, 'postgres')}): ${exited.stderrTail.join(' | ')}`);
    if (Date.now() > deadline) throw new ThrowawayServerError(`postgres did not accept connections within ${Math.round(startTimeoutMs / 1000)} s: ${run.stderr.get().join(' | ')}`);
    try {
      // engine/pg's withClient, as restore and verify will connect; 2 s per attempt.
      await withClient({ ...throwawayTarget(server), connectTimeoutSeconds: 2 }, 'postgres', (c) => c.query('SELECT 1'));
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** Fast shutdown (SIGINT), then immediate (SIGQUIT), then SIGKILL: the server is gone when this returns. */
async function terminate(child: ChildProcess, stopTimeoutMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGINT');
  if (await waitExit(child, stopTimeoutMs)) return;
  child.kill('SIGQUIT');
  if (await waitExit(child, 5_000)) return;
  child.kill('SIGKILL');
  await waitExit(child, 5_000);
}

/** The server as a restore target (the restore and verify modules take a PgConnection). */
export function throwawayTarget(server: Pick<ThrowawayServer, 'socketDir' | 'port' | 'user'>, database = 'postgres'): PgConnection {
  // A Unix socket with trust: no TLS, no password, and no ~/.pgpass of the caller's in the way.
  return {
    host: server.socketDir,
    port: server.port,
    user: server.user,
    password: undefined,
    database,
    sslmode: 'disable',
    sslrootcert: undefined,
    connectTimeoutSeconds: 10,
    applicationName: undefined,
    passfile: '/dev/null',
    params: {},
  };
}

/** Starts a throwaway server, runs `fn` with it, and always stops it (and removes its folder). */
export async function withThrowawayServer<T>(options: ThrowawayServerOptions, fn: (server: ThrowawayServer) => Promise<T>): Promise<T> {
  const server = await startThrowawayServer(options);
  try {
    return await fn(server);
  } finally {
    await server.stop();
  }
}
