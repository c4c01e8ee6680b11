/**
 * One way to describe a PostgreSQL connection, for the backup (secret or DATABASE_URL), restore
 * and verify (an operator's URL) alike: the connection type, the one `postgresql://` URL parser,
 * the backup's defaults and the description used in messages (never with the password).
 */
import { SSL_MODES, type Config, type SslMode } from '../config.ts';
import { UsageError } from '../errors.ts';
import { LAMBDA_CA_BUNDLE, type TlsSettings } from './tls.ts';

/** How the tool shows in pg_stat_activity. */
export const APPLICATION_NAME = 'pg-s3-backup';

/** libpq parameters a URL may carry besides the typed ones below, and their environment variables. */
export const EXTRA_PARAMS = {
  sslcert: 'PGSSLCERT',
  sslkey: 'PGSSLKEY',
  sslcrl: 'PGSSLCRL',
  options: 'PGOPTIONS',
  target_session_attrs: 'PGTARGETSESSIONATTRS',
} as const;
export type ExtraParam = keyof typeof EXTRA_PARAMS;

/** A database login, from the Secrets Manager secret or DATABASE_URL (credentials.ts reads both). */
export interface DbCredentials {
  readonly host: string;
  readonly port: number;
  readonly username: string;
  readonly password: string;
  /** The secret's (or URL's) database: the default when DATABASES is not set. */
  readonly dbname: string | undefined;
  readonly sslmode: SslMode | undefined;
  readonly sslrootcert: string | undefined;
}

/** Everything needed to reach one database, by libpq or node-postgres. */
export interface PgConnection extends TlsSettings {
  /** A host name, an address, or a Unix socket directory (starts with `/`). */
  readonly host: string;
  readonly port: number;
  /** undefined: libpq's default (the operating-system user). */
  readonly user: string | undefined;
  /** undefined: libpq looks in the password file. */
  readonly password: string | undefined;
  readonly database: string;
  /** undefined: libpq's default, `prefer`. */
  readonly sslmode: SslMode | undefined;
  /** CA bundle for verify-ca / verify-full; undefined: libpq's `~/.postgresql/root.crt`. */
  readonly sslrootcert: string | undefined;
  /** undefined: wait as long as the operating system does. */
  readonly connectTimeoutSeconds: number | undefined;
  readonly applicationName: string | undefined;
  /**
   * PGPASSFILE. The backup pins `/dev/null`: no ~/.pgpass or service file may override what the
   * secret says. undefined: an operator's ~/.pgpass (or PGPASSFILE) is honoured.
   */
  readonly passfile: string | undefined;
  /** Other libpq parameters from a URL. */
  readonly params: Readonly<Partial<Record<ExtraParam, string>>>;
}

/** A parsed URL: a connection whose database may be left to the caller (DATABASES). */
export type PgUrl = Omit<PgConnection, 'database'> & { readonly database: string | undefined };

const TYPED_PARAMS = ['host', 'port', 'user', 'sslmode', 'sslrootcert', 'connect_timeout', 'application_name'] as const;
const URL_HINT = 'Use postgresql://USER:PASSWORD@HOST:PORT/DATABASE (percent-encode special characters in the password).';

/**
 * Parses `postgres[ql]://user:password@host:port/database?sslmode=…` (libpq's URI form). Unknown
 * parameters are refused rather than ignored: a misspelt `sslmode` must not silently mean "no TLS".
 * Errors name `what` (the option or variable), never the URL, which may hold a password.
 */
export function parsePgUrl(url: string, what: string): PgUrl {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UsageError(`${what} is not a valid URL`, { hint: URL_HINT });
  }
  if (u.protocol !== 'postgresql:' && u.protocol !== 'postgres:') {
    throw new UsageError(`${what} must start with postgresql:// (got ${u.protocol}//)`, { hint: URL_HINT });
  }
  const typed: Partial<Record<(typeof TYPED_PARAMS)[number], string>> = {};
  const params: Partial<Record<ExtraParam, string>> = {};
  for (const [name, value] of u.searchParams) {
    if ((TYPED_PARAMS as readonly string[]).includes(name)) typed[name as (typeof TYPED_PARAMS)[number]] = value;
    else if (name in EXTRA_PARAMS) params[name as ExtraParam] = value;
    else {
      throw new UsageError(`${what}: unsupported connection parameter "${name}"`, {
        hint: `Supported parameters: ${[...TYPED_PARAMS, ...Object.keys(EXTRA_PARAMS)].join(', ')}.`,
      });
    }
  }
  if (typed.sslmode !== undefined && !(SSL_MODES as readonly string[]).includes(typed.sslmode)) {
    throw new UsageError(`${what}: sslmode must be one of ${SSL_MODES.join(', ')}`);
  }
  const port = Number(typed.port ?? (u.port || 5432));
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError(`${what}: the port must be a number from 1 to 65535`);
  let connectTimeoutSeconds: number | undefined;
  if (typed.connect_timeout !== undefined) {
    if (!/^\d+$/.test(typed.connect_timeout)) throw new UsageError(`${what}: connect_timeout must be a whole number of seconds`);
    connectTimeoutSeconds = Number(typed.connect_timeout);
  }
  const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
  return {
    // `?host=/var/run/postgresql` selects a Unix socket, as with libpq.
    host: typed.host ?? (u.hostname.replace(/^\[(.*)\]$/, '$1') || 'localhost'),
    port,
    user: u.username ? decodeURIComponent(u.username) : typed.user,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    database: database || undefined,
    sslmode: typed.sslmode as SslMode | undefined,
    sslrootcert: typed.sslrootcert,
    connectTimeoutSeconds,
    applicationName: typed.application_name,
    passfile: undefined,
    params,
  };
}

/** A URL that must name its database (`--target-url`, `--scratch-url`). */
export function parseTargetUrl(url: string, what = '--target-url'): PgConnection {
  const parsed = parsePgUrl(url, what);
  if (parsed.database === undefined) {
    throw new UsageError(`${what} names no database`, { hint: 'Add the database name: postgresql://USER@HOST:PORT/DATABASE.' });
  }
  return { ...parsed, database: parsed.database };
}

/**
 * The backup's connection to `database`. TLS precedence: DB_SSLMODE, then the secret's sslmode,
 * then the default: `verify-full` in AWS Lambda against the runtime's CA bundle plus the RDS
 * bundle shipped with the function (tls.ts), `verify-full` against RDS_CA_BUNDLE where a runner
 * ships one (the Fargate image), `prefer` elsewhere (a developer's laptop, a host's cron).
 */
export function connectionFor(creds: DbCredentials, database: string, config: Pick<Config, 'sslMode' | 'sslRootCert' | 'inLambda' | 'connectTimeoutSeconds'> & Partial<Pick<Config, 'rdsCaBundle'>>): PgConnection {
  const defaultCa = config.inLambda ? LAMBDA_CA_BUNDLE : config.rdsCaBundle;
  const sslmode = config.sslMode ?? creds.sslmode ?? (defaultCa !== undefined ? 'verify-full' : 'prefer');
  const wantsCa = sslmode === 'verify-full' || sslmode === 'verify-ca';
  const sslrootcert = config.sslRootCert ?? creds.sslrootcert ?? (wantsCa ? defaultCa : undefined);
  return {
    host: creds.host,
    port: creds.port,
    user: creds.username,
    password: creds.password,
    database,
    sslmode,
    sslrootcert,
    connectTimeoutSeconds: config.connectTimeoutSeconds,
    applicationName: APPLICATION_NAME,
    passfile: '/dev/null',
    params: {},
  };
}

/**
 * An operator's target (restore, verify) with the configuration's bounds filled in where the URL
 * is silent: PG_CONNECT_TIMEOUT, and the application name.
 */
export function withConnectionDefaults(conn: PgConnection, config: Pick<Config, 'connectTimeoutSeconds'>): PgConnection {
  return {
    ...conn,
    connectTimeoutSeconds: conn.connectTimeoutSeconds ?? config.connectTimeoutSeconds,
    applicationName: conn.applicationName ?? APPLICATION_NAME,
  };
}

/** The connection as a URL without its password, for messages and reports. */
export function describeConnection(conn: PgConnection, database = conn.database): string {
  const user = conn.user ? `${encodeURIComponent(conn.user)}${conn.password ? ':***' : ''}@` : '';
  return conn.host.startsWith('/')
    ? `postgresql://${user}/${encodeURIComponent(database)}?host=${conn.host}`
    : `postgresql://${user}${conn.host.includes(':') ? `[${conn.host}]` : conn.host}:${conn.port}/${encodeURIComponent(database)}`;
}
