/**
 * `DATABASES=*`: the databases to back up are listed on the server at run time. Templates, the
 * databases nobody may connect to and RDS's own `rdsadmin` are never candidates; include and
 * exclude patterns (`*`, `?`) narrow the rest, exclude winning.
 */
import { withClient } from './client.ts';
import type { PgConnection } from './connection.ts';

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
