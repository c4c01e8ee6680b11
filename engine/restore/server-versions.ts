/**
 * What a restore target can honour, by its major version (pure functions). pg_dump 18 writes the
 * database's definition with the options of PostgreSQL 18 (`LOCALE_PROVIDER`, `ICU_LOCALE`,
 * `ICU_RULES`, `BUILTIN_LOCALE`) and the catalogs moved with them (`datlocprovider` 15+,
 * `daticulocale` 15–16, `daticurules` 16+, `datlocale` 17+). The supported targets are 13 to 18:
 * each statement and catalog query here is shaped for the server it runs on.
 *
 * Only what means the same on the target is rewritten (`LOCALE_PROVIDER = libc` before 15, where
 * libc is the only provider). What the target cannot honour (ICU before 15, ICU rules before 16,
 * the builtin provider before 17) is refused, naming the reason: creating the database otherwise
 * would silently change its collation, and so its sort order and its unique indexes.
 */
import { serverMajor } from '../pg/pg-dump.ts';


/**
 * The SQL expression (over `pg_database`) for a database's locale as `provider:locale`
 * (`libc:en_US.UTF-8`, `icu:sv-SE`, `builtin:C.UTF-8`) on a server of `versionNum`.
 */
export function databaseLocaleSql(versionNum: number): string {
  if (versionNum >= 170000) {
    return "CASE datlocprovider WHEN 'c' THEN 'libc:' || datcollate WHEN 'i' THEN 'icu:' || datlocale WHEN 'b' THEN 'builtin:' || datlocale ELSE datlocprovider::text END";
  }
  if (versionNum >= 150000) return "CASE datlocprovider WHEN 'c' THEN 'libc:' || datcollate WHEN 'i' THEN 'icu:' || daticulocale ELSE datlocprovider::text END";
  // Before 15, libc is the only provider.
  return "'libc:' || datcollate";
}

/** Why a target cannot create the database as defined, and the oldest major that can. */
export interface Unsupported {
  readonly reason: string;
  readonly needs: number;
}

/**
 * A `CREATE DATABASE` statement (as pg_dump 18 writes it) fitted to a server of `versionNum`:
 * the same statement where it is understood as written, an equivalent one where only the words
 * differ, or what stands in the way.
 */
export function fitCreateDatabase(sql: string, versionNum: number): { readonly sql: string } | { readonly unsupported: Unsupported } {
  const m = serverMajor(versionNum);
  const provider = /\sLOCALE_PROVIDER\s*=\s*'?(\w+)'?/i.exec(sql)?.[1]?.toLowerCase();
  if (provider === 'builtin' && versionNum < 170000) {
    return { unsupported: { reason: `the backup's database uses the builtin locale provider (LOCALE_PROVIDER = builtin), which PostgreSQL ${m} does not have: it needs PostgreSQL 17 or newer`, needs: 17 } };
  }
  if (provider === 'icu' && versionNum < 150000) {
    return {
      unsupported: {
        reason: `the backup's database uses ICU as its locale provider (LOCALE_PROVIDER = icu), which PostgreSQL ${m} cannot do for a database: an ICU default collation needs PostgreSQL 15 or newer`,
        needs: 15,
      },
    };
  }
  if (/\sICU_RULES\s*=/i.test(sql) && versionNum < 160000) {
    return { unsupported: { reason: `the backup's database sets ICU_RULES (its own collation rules), which PostgreSQL ${m} does not have: ICU rules need PostgreSQL 16 or newer`, needs: 16 } };
  }
  // Before 15 there is no LOCALE_PROVIDER option, and libc is what every database uses.
  if (provider === 'libc' && versionNum < 150000) return { sql: sql.replace(/\s+LOCALE_PROVIDER\s*=\s*'?libc'?/i, '') };
  return { sql };
}

/**
 * pg_dump 17+ scripts set `transaction_timeout`, which servers before 17 do not know: statements
 * run as they are (the drops of `restore --clean`) then fail on it, and the rest with it, as one
 * query. Before 17 it is left out (pg_restore's one error for it is tolerated likewise: pg-restore.ts);
 * it only protects the session from a server-side timeout, which such a server does not have.
 */
export function fitSessionStatements(statements: readonly string[], versionNum: number): string[] {
  if (versionNum >= 170000) return [...statements];
  return statements.filter((s) => !/^\s*SET\s+transaction_timeout\s*(=|TO\b)/i.test(s));
}
