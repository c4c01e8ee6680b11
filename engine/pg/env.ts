/**
 * The one environment builder for libpq programs (pg_dump, pg_dumpall, pg_restore, and psql
 * where we start it): the connection's settings as PG* variables, plus an allow-list from the
 * parent. Nothing else is inherited: no AWS credentials, no DATABASE_URL, no stray PG* variable
 * (PGSERVICE, PGHOSTADDR…) that could send the program elsewhere. The password travels here,
 * never in argv, where `ps` would show it.
 */
import { EXTRA_PARAMS, type PgConnection } from './connection.ts';

export type ParentEnv = Readonly<Record<string, string | undefined>>;

/**
 * Inherited as they are: PATH (pg_dumpall runs pg_dump through /bin/sh), and for an operator's
 * connection (no pinned password file) HOME and PGPASSFILE, where libpq finds ~/.pgpass and
 * ~/.postgresql/root.crt.
 */
const ALWAYS = ['PATH'] as const;
const OPERATOR = ['HOME', 'PGPASSFILE'] as const;

export function libpqEnv(conn: PgConnection, parentEnv: ParentEnv = process.env, database = conn.database): Record<string, string> {
  const env: Record<string, string> = {};
  const inherit = conn.passfile === undefined ? [...ALWAYS, ...OPERATOR] : ALWAYS;
  for (const name of inherit) {
    const value = parentEnv[name];
    if (value !== undefined) env[name] = value;
  }
  env.PGHOST = conn.host;
  env.PGPORT = String(conn.port);
  if (conn.user !== undefined) env.PGUSER = conn.user;
  if (conn.password !== undefined) env.PGPASSWORD = conn.password;
  env.PGDATABASE = database;
  if (conn.sslmode !== undefined) env.PGSSLMODE = conn.sslmode;
  if (conn.sslrootcert !== undefined) env.PGSSLROOTCERT = conn.sslrootcert;
  if (conn.connectTimeoutSeconds !== undefined) env.PGCONNECT_TIMEOUT = String(conn.connectTimeoutSeconds);
  if (conn.applicationName !== undefined) env.PGAPPNAME = conn.applicationName;
  if (conn.passfile !== undefined) env.PGPASSFILE = conn.passfile;
  for (const [name, value] of Object.entries(conn.params)) if (value !== undefined) env[EXTRA_PARAMS[name as keyof typeof EXTRA_PARAMS]] = value;
  return env;
}
