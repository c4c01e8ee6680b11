/**
 * Restore targets: a `postgresql://` URL parsed into a PgTarget, its redacted description, the
 * environment pg_restore gets (connection settings through PG* variables, never argv, so the
 * password cannot show in `ps`) and a node-pg client for it.
 */
import pg from 'pg';
import { ConnectError, DatabaseMissingError, UsageError } from '../errors.ts';

/** A PostgreSQL server and database, parsed from a `postgresql://` URL. */
export interface PgTarget {
  readonly host: string;
  readonly port: number;
  readonly user: string | undefined;
  readonly password: string | undefined;
  readonly database: string;
  /** Other libpq parameters from the query string (sslmode, sslrootcert, …). */
  readonly params: Readonly<Record<string, string>>;
}

/** libpq URL parameters and the environment variables that carry them to pg_restore. */
const PARAM_ENV: Readonly<Record<string, string>> = {
  host: 'PGHOST',
  port: 'PGPORT',
  user: 'PGUSER',
  sslmode: 'PGSSLMODE',
  sslrootcert: 'PGSSLROOTCERT',
  sslcert: 'PGSSLCERT',
  sslkey: 'PGSSLKEY',
  sslcrl: 'PGSSLCRL',
  application_name: 'PGAPPNAME',
  connect_timeout: 'PGCONNECT_TIMEOUT',
  options: 'PGOPTIONS',
  target_session_attrs: 'PGTARGETSESSIONATTRS',
};

/** Parses `postgres[ql]://user:password@host:port/database?sslmode=…`; the error never echoes the URL. */
export function parseTargetUrl(url: string, what = '--target-url'): PgTarget {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UsageError(`${what} is not a valid URL`, {
      hint: 'Use postgresql://USER:PASSWORD@HOST:PORT/DATABASE (percent-encode special characters in the password).',
    });
  }
  if (u.protocol !== 'postgresql:' && u.protocol !== 'postgres:') {
    throw new UsageError(`${what} must start with postgresql:// (got ${u.protocol}//)`, {
      hint: 'Use postgresql://USER:PASSWORD@HOST:PORT/DATABASE.',
    });
  }
  const params: Record<string, string> = {};
  for (const [name, value] of u.searchParams) {
    if (!(name in PARAM_ENV)) {
      throw new UsageError(`${what}: unsupported connection parameter "${name}"`, {
        hint: `Supported parameters: ${Object.keys(PARAM_ENV).join(', ')}.`,
      });
    }
    params[name] = value;
  }
  const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (!database) {
    throw new UsageError(`${what} names no database`, { hint: 'Add the database name: postgresql://USER@HOST:PORT/DATABASE.' });
  }
  // `?host=/var/run/postgresql` selects a Unix socket, as with libpq.
  const host = params.host ?? (u.hostname.replace(/^\[(.*)\]$/, '$1') || 'localhost');
  const { host: _h, ...rest } = params;
  return {
    host,
    port: Number(params.port ?? (u.port || 5432)),
    user: u.username ? decodeURIComponent(u.username) : params.user,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    database,
    params: rest,
  };
}

/** The target as a URL without its password, for messages and reports. */
export function describeTarget(target: PgTarget, database = target.database): string {
  const user = target.user ? `${encodeURIComponent(target.user)}${target.password ? ':***' : ''}@` : '';
  const host = target.host.startsWith('/') ? `?host=${target.host}` : `${target.host}:${target.port}`;
  return host.startsWith('?')
    ? `postgresql://${user}/${encodeURIComponent(database)}${host}`
    : `postgresql://${user}${host}/${encodeURIComponent(database)}`;
}

/** Environment for a libpq program: the target's settings, and nothing inherited that could redirect it. */
export function pgEnv(target: PgTarget, base: NodeJS.ProcessEnv, database = target.database): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  // PGPASSFILE stays: ~/.pgpass is how an operator keeps the password out of the URL.
  for (const [k, v] of Object.entries(base)) if (!k.startsWith('PG') || k === 'PGPASSFILE') env[k] = v;
  env.PGHOST = target.host;
  env.PGPORT = String(target.port);
  if (target.user) env.PGUSER = target.user;
  if (target.password !== undefined) env.PGPASSWORD = target.password;
  env.PGDATABASE = database;
  for (const [name, value] of Object.entries(target.params)) env[PARAM_ENV[name]!] = value;
  return env;
}

/** `dbname='…'` conninfo for `-d`: a plain name containing `=` would otherwise be read as conninfo. */
export function conninfoDbname(database: string): string {
  return `dbname='${database.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

export function pgClientConfig(target: PgTarget, database = target.database): pg.ClientConfig {
  const sslmode = target.params.sslmode;
  const ssl = sslmode === undefined || sslmode === 'disable' || sslmode === 'allow' || sslmode === 'prefer'
    ? undefined
    : { rejectUnauthorized: sslmode === 'verify-full' || sslmode === 'verify-ca' };
  return {
    host: target.host,
    port: target.port,
    user: target.user,
    password: target.password,
    database,
    ...(ssl ? { ssl } : {}),
    application_name: 'pg-s3-backup',
    connectionTimeoutMillis: 15_000,
  };
}

export async function withClient<T>(target: PgTarget, database: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client(pgClientConfig(target, database));
  try {
    await client.connect();
  } catch (err) {
    throw connectError(target, database, err);
  }
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

function connectError(target: PgTarget, database: string, err: unknown): ConnectError | DatabaseMissingError {
  const code = (err as { code?: string }).code;
  const where = describeTarget(target, database);
  if (code === '3D000') {
    return new DatabaseMissingError(`database "${database}" does not exist on ${describeTarget(target, 'postgres').replace(/\/postgres$/, '')}`, { cause: err });
  }
  return new ConnectError(`cannot connect to ${where}: ${(err as Error).message}`, {
    cause: err,
    hint: 'Check the host, port, user and password in the URL, that the server accepts connections from here (pg_hba.conf, security groups) and sslmode.',
  });
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
