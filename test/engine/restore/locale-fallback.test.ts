/**
 * The scratch database's fallbacks when a server refuses the backup's locale (locale-fallback.ts):
 * the statements pg_dump 13-18 write, rewritten with only their locale options replaced, and
 * which refusals count as the locale's. The real refusal and fallback against the throwaway
 * server are in drill-locales.test.ts.
 */
import { expect, it } from 'vitest';
import { isLocaleRefusal, localeFallbacks } from '../../../engine/restore/locale-fallback.ts';

const options = (create: string): string[] => localeFallbacks(create).map((f) => f.options);

it('a libc UTF8 database: builtin C.UTF-8, then libc C.UTF-8, then C; name, template and encoding kept', () => {
  const create = `CREATE DATABASE "pgs3b_verify_1" WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE_PROVIDER = libc LOCALE = 'de_DE.UTF-8';`;
  expect(localeFallbacks(create).map((f) => f.sql)).toEqual([
    `CREATE DATABASE "pgs3b_verify_1" WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE_PROVIDER = builtin BUILTIN_LOCALE = 'C.UTF-8' LC_COLLATE = 'C' LC_CTYPE = 'C';`,
    `CREATE DATABASE "pgs3b_verify_1" WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE_PROVIDER = libc LOCALE = 'C.UTF-8';`,
    `CREATE DATABASE "pgs3b_verify_1" WITH TEMPLATE = template0 ENCODING = 'UTF8' LC_COLLATE = 'C' LC_CTYPE = 'C';`,
  ]);
});

it('PostgreSQL 13/14 dumps (LC_COLLATE and LC_CTYPE, no provider) and other encodings', () => {
  expect(localeFallbacks(`CREATE DATABASE x WITH TEMPLATE = template0 ENCODING = 'LATIN1' LC_COLLATE = 'de_DE.ISO-8859-1' LC_CTYPE = 'de_DE.ISO-8859-1';`).map((f) => f.sql)).toEqual([
    `CREATE DATABASE x WITH TEMPLATE = template0 ENCODING = 'LATIN1' LC_COLLATE = 'C' LC_CTYPE = 'C';`,
  ]);
});

it('an ICU database keeps its ICU locale and rules (a C libc part) before anything else', () => {
  const create = `CREATE DATABASE x WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE_PROVIDER = icu LOCALE = 'sv_SE.UTF-8' ICU_LOCALE = 'sv-SE' ICU_RULES = '&a < ''b''';`;
  expect(options(create)[0]).toBe(`LOCALE_PROVIDER = icu ICU_LOCALE = 'sv-SE' ICU_RULES = '&a < ''b''' LC_COLLATE = 'C' LC_CTYPE = 'C'`);
  expect(options(create).slice(1)).toEqual(options(`CREATE DATABASE x WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE = 'sv_SE.UTF-8';`));
});

it('a quoted name holding locale words is left alone', () => {
  const create = `CREATE DATABASE "LOCALE = 'x' LC_CTYPE = 'y'" WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE = 'fr_FR.UTF-8';`;
  expect(localeFallbacks(create).at(-1)!.sql).toBe(`CREATE DATABASE "LOCALE = 'x' LC_CTYPE = 'y'" WITH TEMPLATE = template0 ENCODING = 'UTF8' LC_COLLATE = 'C' LC_CTYPE = 'C';`);
});

it('locale refusals fall back; a missing privilege or an existing name does not', () => {
  expect(isLocaleRefusal({ code: '42809', message: 'invalid LC_COLLATE locale name: "de_DE.UTF-8"' })).toBe(true);
  expect(isLocaleRefusal({ code: '22023', message: 'unrecognized locale provider: builtin' })).toBe(true);
  expect(isLocaleRefusal({ code: '42601', message: 'option "builtin_locale" not recognized' })).toBe(true);
  expect(isLocaleRefusal({ code: '0A000', message: 'ICU is not supported in this build' })).toBe(true);
  expect(isLocaleRefusal({ code: '42501', message: 'permission denied to create database' })).toBe(false);
  expect(isLocaleRefusal({ code: '42P04', message: 'database "x" already exists' })).toBe(false);
  expect(isLocaleRefusal(new Error('connection terminated'))).toBe(false);
});
