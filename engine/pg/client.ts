/**
 * The one node-postgres entry point: `withClient` connects with the connection's TLS (tls.ts)
 * and connect timeout, runs `fn`, and always closes. Connection failures become ConnectError
 * (DatabaseMissingError when the database does not exist) with a hint naming the likely cause.
 */
import type { ConnectionOptions } from 'node:tls';
import pg from 'pg';
import { ConnectError, DatabaseMissingError } from '../errors.ts';
import { APPLICATION_NAME, type PgConnection } from './connection.ts';
import { nodePgSsl, prepareTls } from './tls.ts';

export interface ServerInfo {
  readonly versionNum: number;
  /** e.g. `18.1`, or `15.18 (Debian …)` trimmed to the number. */
  readonly text: string;
  /** pg_database_size of the database to dump: sizes the upload's parts. */
  readonly databaseBytes?: number | undefined;
}

/** Runs `fn` with a client connected to `database` on the connection's server (usually `conn.database`). */
export async function withClient<T>(conn: PgConnection, database: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  prepareTls(conn);
  const connect = async (ssl: false | ConnectionOptions): Promise<pg.Client> => {
    const client = new pg.Client({
      host: conn.host,
      port: conn.port,
      user: conn.user,
      password: conn.password,
      database,
      ssl,
      application_name: conn.applicationName ?? APPLICATION_NAME,
      // 0 = no bound, as libpq without connect_timeout.
      connectionTimeoutMillis: (conn.connectTimeoutSeconds ?? 0) * 1000,
      ...(conn.params.options ? { options: conn.params.options } : {}),
    });
    // A socket error after connect would otherwise be an unhandled 'error' event.
    client.on('error', () => {});
    try {
      await client.connect();
      return client;
    } catch (err) {
      await client.end().catch(() => {});
      throw err;
    }
  };
  let client: pg.Client;
  try {
    try {
      client = await connect(nodePgSsl(conn));
    } catch (err) {
      // libpq's prefer (also its default): fall back to plain TCP when the server does not do TLS.
      if ((conn.sslmode === 'prefer' || conn.sslmode === undefined) && /does not support SSL/i.test(String((err as Error).message))) client = await connect(false);
      else throw err;
    }
  } catch (err) {
    throw connectError(conn, database, err);
  }
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

/** The server's `server_version_num` (150018): which catalog columns and statement options it has depends on it. */
export async function serverVersionNum(client: pg.Client): Promise<number> {
  return Number((await client.query<{ v: string }>("SELECT current_setting('server_version_num') AS v")).rows[0]!.v);
}

/** Connects and reads the server version and the database's size: the backup's connect stage. */
export async function queryServerInfo(conn: PgConnection): Promise<ServerInfo> {
  return withClient(conn, conn.database, async (client) => {
    let res;
    try {
      res = await client.query<{ n: string; v: string; s: string }>(
        "select current_setting('server_version_num') as n, current_setting('server_version') as v, pg_database_size(current_database())::text as s",
      );
    } catch (err) {
      throw new ConnectError(`connected to database ${JSON.stringify(conn.database)}, but reading its version and size failed: ${(err as Error).message}`, {
        cause: err,
        hint: 'The backup role needs CONNECT on the database.',
      });
    }
    const row = res.rows[0]!;
    return { versionNum: Number(row.n), text: row.v.split(' ')[0]!, databaseBytes: Number(row.s) };
  });
}

function connectError(conn: PgConnection, database: string, err: unknown): ConnectError | DatabaseMissingError {
  const e = err as { message?: string; code?: string };
  const server = `${conn.host}:${conn.port}`;
  const where = `database ${JSON.stringify(database)} at ${server}${conn.user ? ` as ${JSON.stringify(conn.user)}` : ''}`;
  if (e.code === '3D000') {
    return new DatabaseMissingError(`database ${JSON.stringify(database)} does not exist on ${server}`, {
      cause: err,
      hint: 'Check the database name (DATABASES or the secret\'s dbname for a backup); for a restore, create it first or pass --create.',
    });
  }
  const msg = e.message || e.code || String(err);
  const described = /timeout/i.test(msg) ? `${msg} (no answer within the connect timeout)` : msg;
  return new ConnectError(`cannot connect to ${where}: ${described}`, { cause: err, hint: connectHint(err) });
}

function connectHint(err: unknown): string {
  const e = err as { message?: string; code?: string };
  const text = `${e.code ?? ''} ${e.message ?? ''}`;
  if (/28P01|password authentication/i.test(text)) return 'The password is wrong or was rotated without updating the database: check the secret (or the URL, PGPASSWORD, ~/.pgpass).';
  if (/3D000|does not exist/i.test(text)) return 'Check the database name (DATABASES or the secret\'s dbname; the URL\'s database).';
  if (/certificate|self[- ]signed|SSL|TLS|altnames|Hostname\/IP/i.test(text)) return 'Check the sslmode (DB_SSLMODE, the secret\'s or the URL\'s) and the CA bundle that signed the server\'s certificate (DB_SSLROOTCERT or sslrootcert); verify-full also checks the host name against the certificate.';
  if (/ENOTFOUND|EAI_AGAIN/i.test(text)) return 'The host name does not resolve: check the host (the secret\'s, or the URL\'s) and the function\'s VPC DNS.';
  return 'Check that this machine can reach the database (for the function: VPC subnets, security group rules for the port) and the host and port; PG_CONNECT_TIMEOUT bounds the wait.';
}
