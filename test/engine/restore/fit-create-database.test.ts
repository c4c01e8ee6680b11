/**
 * The database's definition as pg_dump 18 writes it, fitted to each supported target major
 * (engine/restore/server-versions.ts): kept, rewritten only where the meaning is the same, or
 * refused naming the reason and the first major that can honour it. The matrix test
 * (server-versions.test.ts) runs the same definitions against real servers 13 to 18.
 */
import { describe, expect, it } from 'vitest';
import { databaseLocaleSql, fitCreateDatabase, fitSessionStatements } from '../../../engine/restore/server-versions.ts';

const LIBC = `CREATE DATABASE "shop" WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE_PROVIDER = libc LOCALE = 'en_US.UTF-8';`;
const ICU = `CREATE DATABASE "shop" WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE_PROVIDER = icu LOCALE = 'C.UTF-8' ICU_LOCALE = 'sv-SE';`;
const ICU_RULES = `CREATE DATABASE "shop" WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE_PROVIDER = icu LOCALE = 'C.UTF-8' ICU_LOCALE = 'sv-SE' ICU_RULES = '&V << w <<< W';`;
const BUILTIN = `CREATE DATABASE "shop" WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE_PROVIDER = builtin LOCALE = 'C.UTF-8' BUILTIN_LOCALE = 'C.UTF-8';`;

describe('fitCreateDatabase', () => {
  it('keeps libc as written from 15, and drops only the LOCALE_PROVIDER option before (libc is then the only provider)', () => {
    for (const v of [150018, 160010, 170006, 180001]) expect(fitCreateDatabase(LIBC, v)).toEqual({ sql: LIBC });
    for (const v of [130023, 140020]) {
      expect(fitCreateDatabase(LIBC, v)).toEqual({ sql: `CREATE DATABASE "shop" WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE = 'en_US.UTF-8';` });
    }
    // A definition without the option (an archive of an old pg_dump) stays as it is.
    const plain = `CREATE DATABASE "shop" WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE = 'C';`;
    expect(fitCreateDatabase(plain, 130023)).toEqual({ sql: plain });
  });

  it.each([
    [ICU, 140020, 15, /ICU as its locale provider .*PostgreSQL 14 cannot .*PostgreSQL 15 or newer/],
    [ICU_RULES, 150018, 16, /ICU_RULES .*PostgreSQL 15 does not have.*PostgreSQL 16 or newer/],
    [ICU_RULES, 130023, 15, /ICU as its locale provider .*PostgreSQL 13/],
    [BUILTIN, 160010, 17, /builtin locale provider .*PostgreSQL 16 does not have.*PostgreSQL 17 or newer/],
    [BUILTIN, 130023, 17, /builtin locale provider .*PostgreSQL 13/],
  ])('refuses what the target cannot honour, naming why and which major can (%#)', (sql, version, needs, reason) => {
    const fitted = fitCreateDatabase(sql, version);
    expect(fitted).toEqual({ unsupported: { reason: expect.stringMatching(reason) as string, needs } });
  });

  it.each([
    [ICU, 150018],
    [ICU_RULES, 160010],
    [BUILTIN, 170006],
    [BUILTIN, 180001],
  ])('keeps what the target has as written (%#)', (sql, version) => {
    expect(fitCreateDatabase(sql, version)).toEqual({ sql });
  });
});

describe('databaseLocaleSql', () => {
  it('reads the columns each major has: datlocale from 17, daticulocale in 15 and 16, datcollate alone before', () => {
    expect(databaseLocaleSql(180001)).toMatch(/datlocale/);
    expect(databaseLocaleSql(170006)).toMatch(/'builtin:' \|\| datlocale/);
    for (const v of [150018, 160010]) {
      expect(databaseLocaleSql(v)).toMatch(/'icu:' \|\| daticulocale/);
      expect(databaseLocaleSql(v)).not.toMatch(/datlocale/);
    }
    for (const v of [130023, 140020]) expect(databaseLocaleSql(v)).toBe("'libc:' || datcollate");
  });
});

describe('fitSessionStatements (the drop script of restore --clean)', () => {
  const script = ['SET statement_timeout = 0;', 'SET transaction_timeout = 0;', "SELECT pg_catalog.set_config('search_path', '', false);", 'DROP TABLE IF EXISTS public."SET transaction_timeout = 0;";'];
  it('leaves out pg_dump 18\'s SET transaction_timeout before 17, and only that statement', () => {
    for (const v of [130023, 150018, 160010]) expect(fitSessionStatements(script, v)).toEqual([script[0], script[2], script[3]]);
  });
  it('keeps every statement from 17 on', () => {
    expect(fitSessionStatements(script, 170006)).toEqual(script);
    expect(fitSessionStatements(script, 180001)).toEqual(script);
  });
});
