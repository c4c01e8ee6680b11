/**
 * Which databases a backup takes: the ones named, else (`DATABASES=*`) those listed on the server
 * at run time, else the login's own. Templates, the databases nobody may connect to and RDS's own
 * `rdsadmin` are never candidates; include and exclude patterns (`*`, `?`) narrow the rest,
 * exclude winning.
 */
import type { Config } from '../config.ts';
import { withClient } from './client.ts';
import { connectionFor, type DbCredentials, type PgConnection } from './connection.ts';

/** Every database a backup could connect to, by name (templates and closed databases excluded). */
export const LIST_DATABASES_SQL = "select datname from pg_database where datallowconn and not datistemplate and datname <> 'rdsadmin' order by datname";

/** Databases that are never backed up, whatever the patterns say. */
const NEVER = new Set(['rdsadmin', 'template0', 'template1']);

function globToRegExp(pattern: string): RegExp {
  const body = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

/** The names to back up, sorted, from the server's list and the patterns. */
export function selectDatabases(names: readonly string[], filter: { readonly include: readonly string[]; readonly exclude: readonly string[] }): string[] {
  const include = filter.include.map(globToRegExp);
  const exclude = filter.exclude.map(globToRegExp);
  return [...new Set(names)]
    .filter((n) => !NEVER.has(n) && include.some((r) => r.test(n)) && !exclude.some((r) => r.test(n)))
    .sort();
}

/** The server's databases (LIST_DATABASES_SQL), connecting with the backup's own settings. */
export async function listServerDatabases(conn: PgConnection): Promise<string[]> {
  return withClient(conn, conn.database, async (client) => (await client.query<{ datname: string }>(LIST_DATABASES_SQL)).rows.map((r) => r.datname));
}

/**
 * The databases of a run: `named` (a request's), else DATABASES, else (DATABASES=*) the server's
 * list filtered by the patterns, else the secret's own database.
 */
export async function databasesToBackUp(
  named: readonly string[] | undefined,
  config: Pick<Config, 'databases' | 'discover' | 'sslMode' | 'sslRootCert' | 'rdsCaBundle' | 'inLambda' | 'connectTimeoutSeconds'>,
  creds: DbCredentials,
  deps: { readonly listDatabases: (conn: PgConnection) => Promise<readonly string[]> },
): Promise<readonly string[]> {
  if (named) return named;
  if (config.databases) return config.databases;
  if (config.discover) {
    // The maintenance database every PostgreSQL (and RDS) has, unless the secret names another.
    const names = await deps.listDatabases(connectionFor(creds, creds.dbname ?? 'postgres', config));
    return selectDatabases(names, config.discover);
  }
  return creds.dbname ? [creds.dbname] : [];
}
