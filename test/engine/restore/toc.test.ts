/** The pure parts of restore: the TOC and --table selection, the database definition, pg_restore's errors. */
import { describe, expect, it } from 'vitest';
import { parseDefinition, splitStatements } from '../../../engine/restore/database-definition.ts';
import { classifyPgRestore, hintForPgRestore, parseErrors, pgRestoreArgs, sections, summarizeErrors } from '../../../engine/restore/pg-restore.ts';
import type { UsageError } from '../../../engine/errors.ts';
import { databaseEntries, dataWithoutRelation, parseToc, schemaGrantsFirst, selectTables, tablesWithData } from '../../../engine/restore/toc.ts';

/** `pg_restore --list --verbose` of the fidelity fixture (test/support/fidelity-fixtures.ts), abridged. */
const LIST = `;
; Archive created at 2026-12-02 00:58:00 UTC
;     dbname: fidelity
;
; Selected TOC Entries:
;
3356; 0 0 ENCODING - ENCODING 
3359; 1262 16387 DATABASE - fidelity fid_owner
3360; 0 0 COMMENT - DATABASE fidelity fid_owner
;	depends on: 3359
3361; 0 0 ACL - DATABASE fidelity fid_owner
;	depends on: 3359
3362; 0 0 DATABASE PROPERTIES - fidelity fid_owner
6; 2615 16388 SCHEMA - ledger fid_owner
3363; 0 0 ACL - SCHEMA ledger fid_owner
;	depends on: 6
863; 1247 16390 TYPE ledger account_kind fid_owner
;	depends on: 6
866; 1247 16398 DOMAIN ledger email fid_owner
;	depends on: 6
900; 1247 16399 TYPE ledger unrelated fid_owner
;	depends on: 6
220; 1259 16400 SEQUENCE public account_codes fid_owner
222; 1259 16402 TABLE ledger accounts fid_owner
;	depends on: 220 6 863 866
3364; 0 0 ACL ledger TABLE accounts fid_owner
;	depends on: 222
221; 1259 16401 SEQUENCE ledger accounts_id_seq fid_owner
;	depends on: 6 222
224; 1259 16415 TABLE ledger entries fid_owner
;	depends on: 6
223; 1259 16414 SEQUENCE ledger entries_id_seq fid_owner
;	depends on: 6 224
3366; 0 0 SEQUENCE OWNED BY ledger entries_id_seq fid_owner
;	depends on: 223
228; 1259 16450 MATERIALIZED VIEW ledger pending_totals fid_owner
;	depends on: 224 224 6
3181; 2604 16418 DEFAULT ledger entries id fid_owner
;	depends on: 224 223 224
3344; 0 16402 TABLE DATA ledger accounts fid_owner
;	depends on: 222
3346; 0 16415 TABLE DATA ledger entries fid_owner
;	depends on: 224
3367; 0 0 SEQUENCE SET ledger accounts_id_seq fid_owner
;	depends on: 221
3369; 0 0 SEQUENCE SET public account_codes fid_owner
;	depends on: 220
3186; 2606 16413 CONSTRAINT ledger accounts accounts_pkey fid_owner
;	depends on: 222
3188; 2606 16425 CONSTRAINT ledger entries entries_pkey fid_owner
;	depends on: 224
3193; 2606 16426 FK CONSTRAINT ledger entries entries_account_id_fkey fid_owner
;	depends on: 222 3186 224
`;

describe('the table of contents', () => {
  const toc = parseToc(LIST);
  it('reads types with spaces, schemas, names and dependencies', () => {
    expect(toc.find((e) => e.id === 3344)).toMatchObject({ desc: 'TABLE DATA', schema: 'ledger', tagAndOwner: 'accounts fid_owner', deps: [222] });
    expect(toc.find((e) => e.id === 3362)).toMatchObject({ desc: 'DATABASE PROPERTIES', schema: '-' });
    expect(toc.find((e) => e.id === 3193)).toMatchObject({ desc: 'FK CONSTRAINT', deps: [222, 3186, 224] });
    expect(tablesWithData(toc)).toEqual(['ledger.accounts', 'ledger.entries']);
    expect(databaseEntries(toc, 'fidelity').map((e) => e.id)).toEqual([3359, 3360, 3361, 3362]);
  });

  it('--table selects the table, what it needs and what belongs to it, and names the foreign key left out', () => {
    const sel = selectTables(toc, ['ledger.accounts']);
    expect([...sel.ids].sort((a, b) => a - b)).toEqual([6, 220, 221, 222, 863, 866, 3186, 3344, 3363, 3364, 3367, 3369]);
    expect(sel.tables).toEqual(['ledger.accounts']);
    expect(sel.leftOut).toEqual([]);
    const entries = selectTables(toc, ['entries']);
    // Its sequence, default and ownership come along; the view over it and the foreign key to accounts do not.
    expect([...entries.ids]).toEqual(expect.arrayContaining([224, 223, 3366, 3181, 3346, 3188]));
    expect(entries.ids.has(228)).toBe(false);
    expect(entries.ids.has(3193)).toBe(false);
    expect(entries.leftOut).toEqual(['FK CONSTRAINT ledger.entries entries_account_id_fkey']);
    expect(selectTables(toc, ['accounts', 'entries']).ids.has(3193)).toBe(true);
  });

  it('--table refuses an unknown name', () => {
    expect(() => selectTables(toc, ['ledger.nope'])).toThrow(/no table "ledger\.nope" in the backup/);
    expect(() => selectTables(toc, ['public.accounts'])).toThrow(/no table "public\.accounts"/);
  });
});

/**
 * `pg_restore --list --verbose` (pg_dump 18) of schemas "Sales Data" and "Sales" whose tables print
 * the same text ("Sales Data" "Line Items", "Sales" "Data Line Items"), and public's "Sales.Data Line Items".
 */
const SPACES = `;
; Selected TOC Entries:
;
3320; 0 0 ENCODING - ENCODING 
3323; 1262 16384 DATABASE - names postgres
7; 2615 16407 SCHEMA - Sales postgres
6; 2615 16385 SCHEMA - Sales Data postgres
224; 1259 16408 TABLE Sales Data Line Items postgres
;	depends on: 7
223; 1259 16393 TABLE Sales Data Line Items postgres
;	depends on: 6
222; 1259 16392 SEQUENCE Sales Data Line Items_id_seq postgres
;	depends on: 6 223
221; 1259 16386 TABLE Sales Data Order Heads postgres
;	depends on: 6
225; 1259 16414 TABLE public Sales.Data Line Items postgres
3316; 0 16408 TABLE DATA Sales Data Line Items postgres
;	depends on: 224
3315; 0 16393 TABLE DATA Sales Data Line Items postgres
;	depends on: 223
3313; 0 16386 TABLE DATA Sales Data Order Heads postgres
;	depends on: 221
3317; 0 16414 TABLE DATA public Sales.Data Line Items postgres
;	depends on: 225
3324; 0 0 SEQUENCE SET Sales Data Line Items_id_seq postgres
;	depends on: 222
3164; 2606 16413 CONSTRAINT Sales Data Line Items Data Line Items_pkey postgres
;	depends on: 224
3162; 2606 16400 CONSTRAINT Sales Data Line Items Line Items_pkey postgres
;	depends on: 223
3159; 2606 16391 CONSTRAINT Sales Data Order Heads Order Heads_pkey postgres
;	depends on: 221
3160; 1259 16406 INDEX Sales Data Line Items by note postgres
;	depends on: 223
3165; 2606 16401 FK CONSTRAINT Sales Data Line Items Line Items_order_id_fkey postgres
;	depends on: 221 223 3159
`;

describe('names with spaces, dots and quotes', () => {
  const toc = parseToc(SPACES);
  const named = (id: number) => {
    const e = toc.find((x) => x.id === id)!;
    return { schema: e.schema, tag: e.tag, owner: e.owner };
  };
  it('reads each entry\'s schema from what the archive says of it, not from where the first space falls', () => {
    expect(named(6)).toEqual({ schema: '-', tag: 'Sales Data', owner: 'postgres' });
    expect(named(223)).toEqual({ schema: 'Sales Data', tag: 'Line Items', owner: 'postgres' });
    expect(named(224)).toEqual({ schema: 'Sales', tag: 'Data Line Items', owner: 'postgres' });
    expect(named(225)).toEqual({ schema: 'public', tag: 'Sales.Data Line Items', owner: 'postgres' });
    expect(named(3315)).toEqual(named(223));
    expect(named(3316)).toEqual(named(224));
    expect(named(3324)).toEqual({ schema: 'Sales Data', tag: 'Line Items_id_seq', owner: 'postgres' });
    expect(named(3164)).toEqual({ schema: 'Sales', tag: 'Data Line Items Data Line Items_pkey', owner: 'postgres' });
    expect(named(3160)).toEqual({ schema: 'Sales Data', tag: 'Line Items by note', owner: 'postgres' });
    expect(named(3165)).toEqual({ schema: 'Sales Data', tag: 'Line Items Line Items_order_id_fkey', owner: 'postgres' });
    expect(named(3320)).toEqual({ schema: '-', tag: 'ENCODING', owner: '' });
    expect(tablesWithData(toc)).toEqual(['Sales.Data Line Items', 'Sales Data.Line Items', 'Sales Data.Order Heads', 'public.Sales.Data Line Items']);
  });

  it('--table takes names as written or in SQL\'s double quotes; a dot cuts where the archive has a table', () => {
    for (const name of ['"Sales Data"."Line Items"', 'Sales Data.Line Items', '"Sales Data".Line Items', 'Line Items']) {
      const sel = selectTables(toc, [name]);
      expect(sel.tables).toEqual(['Sales Data.Line Items']);
      expect([...sel.ids].sort((a, b) => a - b)).toEqual([6, 222, 223, 3160, 3162, 3315, 3324]);
      expect(sel.leftOut).toEqual(['FK CONSTRAINT Sales Data.Line Items Line Items_order_id_fkey']);
    }
    expect([...selectTables(toc, ['"Sales"."Data Line Items"']).ids].sort((a, b) => a - b)).toEqual([7, 224, 3164, 3316]);
    expect(selectTables(toc, ['Data Line Items']).tables).toEqual(['Sales.Data Line Items']);
    expect(selectTables(toc, ['"Sales.Data Line Items"']).tables).toEqual(['public.Sales.Data Line Items']);
    expect(selectTables(toc, ['Sales Data.Line Items', 'Sales Data.Order Heads']).leftOut).toEqual([]);
    expect(() => selectTables(toc, ['Sales.Data Line Items'])).toThrow(/--table Sales\.Data Line Items matches Sales\.Data Line Items, public\.Sales\.Data Line Items/);
    expect(() => selectTables(toc, ['"Sales Data"."Data Line Items"'])).toThrow(/no table/);
    expect(() => selectTables(toc, ['"Sales Data'])).toThrow(/no table/);
  });

  it('reads an owner whose name holds a space when it owns the database', () => {
    const list = SPACES.replace('; Selected TOC Entries:', ';     dbname: names\n;\n; Selected TOC Entries:').replaceAll(' postgres\n', ' Data Team\n');
    const owned = parseToc(list);
    expect(owned.find((e) => e.id === 223)).toMatchObject({ schema: 'Sales Data', tag: 'Line Items', owner: 'Data Team' });
    expect(owned.find((e) => e.id === 6)).toMatchObject({ schema: '-', tag: 'Sales Data', owner: 'Data Team' });
    expect(owned.find((e) => e.id === 3320)).toMatchObject({ tag: 'ENCODING', owner: '' });
    expect(selectTables(owned, ['Sales Data.Line Items']).tables).toEqual(['Sales Data.Line Items']);
  });
});

/**
 * Excerpts of real `pg_restore --list --verbose` listings (pg_dump 18.6, server 18.4): a table
 * owned by a role whose name holds a space that does not own the database ("bob smith"); tables
 * `orders` and `orders x`, the second with a foreign key to the first; a database whose name
 * needs quoting in SQL, and a partition in another schema than its partitioned table.
 */
const SHOP = `;
;     dbname: shop
;
; Selected TOC Entries:
;
3397; 0 0 ENCODING - ENCODING 
3400; 1262 16387 DATABASE - shop db owner
235; 1259 16457 TABLE public orders postgres
236; 1259 16463 TABLE public orders x postgres
230; 1259 16433 TABLE public t1 bob smith
3388; 0 16457 TABLE DATA public orders postgres
;	depends on: 235
3389; 0 16463 TABLE DATA public orders x postgres
;	depends on: 236
3384; 0 16433 TABLE DATA public t1 bob smith
;	depends on: 230
3224; 2606 16468 CONSTRAINT public orders x orders x_pkey postgres
;	depends on: 236
3222; 2606 16462 CONSTRAINT public orders orders_pkey postgres
;	depends on: 235
3216; 2606 16438 CONSTRAINT public t1 t1_pkey bob smith
;	depends on: 230
3227; 2606 16469 FK CONSTRAINT public orders x orders x_oid2_fkey postgres
;	depends on: 236 3222 235
`;

const MY_SHOP = `;
;     dbname: My Shop
;
; Selected TOC Entries:
;
3300; 0 0 ENCODING - ENCODING 
3303; 1262 16495 DATABASE - My Shop db owner
3304; 0 0 COMMENT - DATABASE "My Shop" db owner
;	depends on: 3303
3305; 0 0 ACL - DATABASE "My Shop" db owner
;	depends on: 3303
3306; 0 0 DATABASE PROPERTIES - My Shop db owner
6; 2615 16496 SCHEMA - Sales alice
7; 2615 16497 SCHEMA - Sales Data alice
221; 1259 16498 TABLE Sales Data m postgres
;	depends on: 7
222; 1259 16501 TABLE Sales Data x postgres
;	depends on: 6 221
3149; 0 0 TABLE ATTACH Sales Data x postgres
;	depends on: 222 221
3297; 0 16501 TABLE DATA Sales Data x postgres
;	depends on: 222
`;

describe('owners, foreign keys, partitions and database names the text alone does not settle', () => {
  it('a table owned by a role whose name holds a space (not the database owner): verify finds it restored, --table finds it', () => {
    const toc = parseToc(SHOP);
    const restored = [
      { schema: 'public', name: 'orders' },
      { schema: 'public', name: 'orders x' },
      { schema: 'public', name: 't1' },
    ];
    expect(dataWithoutRelation(toc, restored)).toEqual([]);
    // A table that did not come back is still reported.
    expect(dataWithoutRelation(toc, restored.slice(1))).toEqual(['public.orders']);
    for (const name of ['public.t1', 't1', '"public"."t1"']) {
      const sel = selectTables(toc, [name]);
      expect(sel.tables).toEqual(['public.t1']);
      expect([...sel.ids].sort((a, b) => a - b)).toEqual([230, 3216, 3384]);
    }
  });

  it('without the manifest\'s table names (ROW_COUNTS=off), verify reports table "orders x" missing when only "orders" came back, whatever the order of the lines', () => {
    // Each table whose data the archive holds is one relation of its own: `public orders x postgres`
    // starts with `public orders `, but `orders` is the table of `public orders postgres`.
    const restored = [
      { schema: 'public', name: 'orders' },
      { schema: 'public', name: 't1' },
    ];
    expect(dataWithoutRelation(parseToc(SHOP), restored)).toEqual(['public.orders x']);
    const reversed = SHOP.replace('3388; 0 16457 TABLE DATA public orders postgres\n;\tdepends on: 235\n', '').replace('3384;', '3388; 0 16457 TABLE DATA public orders postgres\n;\tdepends on: 235\n3384;');
    expect(reversed.indexOf('TABLE DATA public orders x')).toBeLessThan(reversed.indexOf('TABLE DATA public orders postgres'));
    expect(dataWithoutRelation(parseToc(reversed), restored)).toEqual(['public.orders x']);
    // Every table back: nothing reported; `orders` missing: it is named.
    expect(dataWithoutRelation(parseToc(reversed), [...restored, { schema: 'public', name: 'orders x' }])).toEqual([]);
    expect(dataWithoutRelation(parseToc(reversed), [{ schema: 'public', name: 'orders x' }, { schema: 'public', name: 't1' }])).toEqual(['public.orders']);
  });

  it('verify reports the partition "orders x" of a partitioned table "orders" missing: the parent (no data of its own) is a relation too', () => {
    const list = [
      ';     dbname: shop',
      '3300; 1262 16400 DATABASE - shop db owner',
      '235; 1259 16457 TABLE public orders postgres',
      '236; 1259 16463 TABLE public orders x postgres',
      '3149; 0 0 TABLE ATTACH public orders x postgres',
      ';\tdepends on: 236 235',
      '3389; 0 16463 TABLE DATA public orders x postgres',
      ';\tdepends on: 236',
    ].join('\n');
    expect(dataWithoutRelation(parseToc(list), [{ schema: 'public', name: 'orders' }])).toEqual(['public.orders x']);
    expect(dataWithoutRelation(parseToc(list), [{ schema: 'public', name: 'orders' }, { schema: 'public', name: 'orders x' }])).toEqual([]);
  });

  it('two lines that read the same (table "orders" of role "x postgres", table "orders x" of "postgres"): both back is ok, one back is a table missing', () => {
    const list = [
      ';     dbname: shop',
      '3300; 1262 16400 DATABASE - shop db owner',
      '235; 1259 16457 TABLE public orders x postgres',
      '236; 1259 16463 TABLE public orders x postgres',
      '3388; 0 16457 TABLE DATA public orders x postgres',
      ';\tdepends on: 235',
      '3389; 0 16463 TABLE DATA public orders x postgres',
      ';\tdepends on: 236',
    ].join('\n');
    const both = [{ schema: 'public', name: 'orders' }, { schema: 'public', name: 'orders x' }];
    expect(dataWithoutRelation(parseToc(list), both)).toEqual([]);
    // Which of the two is gone the text cannot say (it names the parsed one); that one is gone, it can.
    for (const one of both) expect(dataWithoutRelation(parseToc(list), [one])).toHaveLength(1);
    // Two restored tables whose schema and name read the same ("Sales Data"."Line Items", "Sales"."Data Line Items") are two.
    const sales = [
      '6; 2615 16390 SCHEMA - Sales m',
      '7; 2615 16391 SCHEMA - Sales Data m',
      '220; 1259 16392 TABLE Sales Data Line Items m',
      ';\tdepends on: 7',
      '221; 1259 16393 TABLE Sales Data Line Items m',
      ';\tdepends on: 6',
      '3300; 0 16392 TABLE DATA Sales Data Line Items m',
      ';\tdepends on: 220',
      '3301; 0 16393 TABLE DATA Sales Data Line Items m',
      ';\tdepends on: 221',
    ].join('\n');
    const lines = [{ schema: 'Sales Data', name: 'Line Items' }, { schema: 'Sales', name: 'Data Line Items' }];
    expect(dataWithoutRelation(parseToc(sales), lines)).toEqual([]);
    expect(dataWithoutRelation(parseToc(sales), [lines[1]!])).toEqual(['Sales Data.Line Items']);
  });

  it('reads that owner off the lines of the tables the manifest names exactly, for every entry it owns', () => {
    const toc = parseToc(SHOP, [{ schema: 'public', table: 'orders' }, { schema: 'public', table: 'orders x' }, { schema: 'public', table: 't1' }]);
    for (const id of [230, 3384]) expect(toc.find((e) => e.id === id)).toMatchObject({ schema: 'public', tag: 't1', owner: 'bob smith' });
    expect(toc.find((e) => e.id === 3216)).toMatchObject({ schema: 'public', tag: 't1 t1_pkey', owner: 'bob smith' });
    expect(toc.find((e) => e.id === 236)).toMatchObject({ schema: 'public', tag: 'orders x', owner: 'postgres' });
    expect(tablesWithData(toc)).toEqual(['public.orders', 'public.orders x', 'public.t1']);
  });

  it('reads an owner whose name ends with the database owner\'s ("my app" beside "app") as the whole name', () => {
    const list = [
      ';     dbname: shop',
      '3300; 1262 16400 DATABASE - shop app',
      '235; 1259 16457 TABLE public orders my app',
      '3310; 0 16457 TABLE DATA public orders my app',
    ].join('\n');
    const toc = parseToc(list, [{ schema: 'public', table: 'orders' }]);
    for (const id of [235, 3310]) expect(toc.find((e) => e.id === id)).toMatchObject({ schema: 'public', tag: 'orders', owner: 'my app' });
    expect(tablesWithData(toc)).toEqual(['public.orders']);
  });

  it('--table orders does not report the foreign key of table "orders x" (not selected) as its own left out', () => {
    expect(selectTables(parseToc(SHOP), ['public.orders']).leftOut).toEqual([]);
    expect(selectTables(parseToc(SHOP), ['public.orders x']).leftOut).toEqual(['FK CONSTRAINT public.orders x orders x_oid2_fkey']);
  });

  it('a partition in another schema is restored with its partitioned table', () => {
    const toc = parseToc(MY_SHOP);
    expect(toc.find((e) => e.id === 3149)).toMatchObject({ schema: 'Sales', tag: 'Data x' });
    expect(selectTables(toc, ['Sales Data.m']).tables).toEqual(['Sales Data.m', 'Sales.Data x']);
  });

  it('the hint for a name that reads as two tables is a shell line even when a name holds a single quote', () => {
    const toc = parseToc(`6; 2615 16400 SCHEMA - a postgres
220; 1259 16401 TABLE a it's postgres
;	depends on: 6
221; 1259 16402 TABLE public a.it's postgres
`);
    let hint: string | undefined;
    try {
      selectTables(toc, ["a.it's"]);
    } catch (err) {
      hint = (err as UsageError).hint;
    }
    expect(hint).toMatch(/--table '"a"\."it'\\''s"'\.$/);
  });

  it('a table in a schema named DATA is a TABLE, not TABLE DATA: the catalog id says so', () => {
    const toc = parseToc(`6; 2615 16400 SCHEMA - DATA postgres
7; 2615 16404 SCHEMA - SET postgres
220; 1259 16401 TABLE DATA x postgres
;	depends on: 6
221; 1259 16405 SEQUENCE SET s postgres
;	depends on: 7
3300; 0 16401 TABLE DATA DATA x postgres
;	depends on: 220
3301; 0 0 SEQUENCE SET SET s postgres
;	depends on: 221
`);
    expect(toc.map((e) => [e.id, e.desc, e.schema, e.tag])).toEqual([
      [6, 'SCHEMA', '-', 'DATA'],
      [7, 'SCHEMA', '-', 'SET'],
      [220, 'TABLE', 'DATA', 'x'],
      [221, 'SEQUENCE', 'SET', 's'],
      [3300, 'TABLE DATA', 'DATA', 'x'],
      [3301, 'SEQUENCE SET', 'SET', 's'],
    ]);
    expect(tablesWithData(toc)).toEqual(['DATA.x']);
    expect([...selectTables(toc, ['DATA.x']).ids].sort((a, b) => a - b)).toEqual([6, 220, 3300]);
  });

  it('schemas and their grants are restored first, so that a role the source granted CREATE on a schema may be given its tables; --table in public brings public\'s grants', () => {
    // pg_dump 18 of a database whose master user (no superuser) granted CREATE on public and "Sales" to "Reporting Team", which owns a table in each.
    const list = `;     dbname: n
3299; 0 0 ENCODING - ENCODING 
3302; 1262 16389 DATABASE - n Data Team
6; 2615 16390 SCHEMA - Sales m
3303; 0 0 COMMENT - SCHEMA "Sales" m
;\tdepends on: 6
3304; 0 0 ACL - SCHEMA "Sales" m
;\tdepends on: 6
3305; 0 0 ACL - SCHEMA public pg_database_owner
;\tdepends on: 5
221; 1259 16394 TABLE Sales d Reporting Team
;\tdepends on: 6
220; 1259 16391 TABLE public reports Reporting Team
3296; 0 16394 TABLE DATA Sales d Reporting Team
;\tdepends on: 221
3295; 0 16391 TABLE DATA public reports Reporting Team
;\tdepends on: 220
`;
    const toc = parseToc(list);
    expect([...schemaGrantsFirst(toc)!]).toEqual([6, 3304, 3305]);
    // Without grants on a schema there is nothing to put first.
    expect(schemaGrantsFirst(toc.filter((e) => e.desc !== 'ACL'))).toBeUndefined();
    const reports = selectTables(toc, ['public.reports']);
    expect([...reports.ids].sort((a, b) => a - b)).toEqual([220, 3295, 3305]);
    expect([...schemaGrantsFirst(toc, reports.ids)!]).toEqual([3305]);
    const d = selectTables(toc, ['Sales.d']);
    expect([...d.ids].sort((a, b) => a - b)).toEqual([6, 221, 3296, 3303, 3304]);
    expect([...schemaGrantsFirst(toc, d.ids)!]).toEqual([6, 3304]);
  });

  it('the COMMENT and grants of a database whose name needs quoting are part of its definition', () => {
    expect(databaseEntries(parseToc(MY_SHOP), 'My Shop').map((e) => e.id)).toEqual([3303, 3304, 3305, 3306]);
  });
});

describe('the database definition', () => {
  const script = `--
-- PostgreSQL database dump
--
\\restrict abc
SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);
CREATE DATABASE fidelity WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE_PROVIDER = icu LOCALE = 'C.UTF-8' ICU_LOCALE = 'sv-SE';
ALTER DATABASE fidelity OWNER TO fid_owner;
\\connect fidelity
COMMENT ON DATABASE fidelity IS 'the DATABASE fidelity; do not drop';
ALTER DATABASE fidelity CONNECTION LIMIT = 42;
ALTER DATABASE fidelity SET search_path TO 'ledger', 'public';
ALTER ROLE fid_app IN DATABASE fidelity SET work_mem TO '8MB';
REVOKE CONNECT,TEMPORARY ON DATABASE fidelity FROM PUBLIC;
GRANT CONNECT ON DATABASE fidelity TO fid_reader;
`;
  it('is renamed to the target and sorted by kind; strings are left alone', () => {
    expect(parseDefinition(script, 'fidelity', 'copy "1"')).toEqual([
      { kind: 'create', sql: `CREATE DATABASE "copy ""1""" WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE_PROVIDER = icu LOCALE = 'C.UTF-8' ICU_LOCALE = 'sv-SE';` },
      { kind: 'owner', sql: 'ALTER DATABASE "copy ""1""" OWNER TO fid_owner;' },
      { kind: 'comment', sql: `COMMENT ON DATABASE "copy ""1""" IS 'the DATABASE fidelity; do not drop';` },
      { kind: 'property', sql: 'ALTER DATABASE "copy ""1""" CONNECTION LIMIT = 42;' },
      { kind: 'property', sql: `ALTER DATABASE "copy ""1""" SET search_path TO 'ledger', 'public';` },
      { kind: 'role-setting', sql: `ALTER ROLE fid_app IN DATABASE "copy ""1""" SET work_mem TO '8MB';` },
      { kind: 'acl', sql: 'REVOKE CONNECT,TEMPORARY ON DATABASE "copy ""1""" FROM PUBLIC;' },
      { kind: 'acl', sql: 'GRANT CONNECT ON DATABASE "copy ""1""" TO fid_reader;' },
    ]);
  });
  it('finds a quoted source name, and splits only outside quotes', () => {
    expect(parseDefinition('CREATE DATABASE "My DB" WITH TEMPLATE = template0;\nCOMMENT ON DATABASE "My DB" IS \'a;b\';\n', 'My DB', 'x').map((s) => s.sql)).toEqual([
      'CREATE DATABASE "x" WITH TEMPLATE = template0;',
      `COMMENT ON DATABASE "x" IS 'a;b';`,
    ]);
    expect(splitStatements(`SELECT 'it''s; fine'; SELECT "a;b";`)).toEqual([`SELECT 'it''s; fine';`, 'SELECT "a;b";']);
  });
  it('never drops or changes text inside quotes, whatever lines it spans (issue 22, item 12)', () => {
    const comment = "COMMENT ON DATABASE d IS 'first line\n-- second\n\\x';";
    const setting = "ALTER DATABASE d SET search_path TO 'a''b', \"x-- y\", $$c;d$$;";
    const role = 'ALTER ROLE "r\n--\\q" IN DATABASE d SET work_mem TO E\'8\\\'MB\';';
    const script = `--\n-- head\n--\n\\restrict k\nSET client_encoding = 'UTF8';\n/* a /* nested */ comment */\n${comment}\n\\connect d\n${setting}\n${role}\n\\unrestrict k\n`;
    expect(parseDefinition(script, 'd', 'e').map((s) => s.sql)).toEqual([comment, setting, role].map((s) => s.replace(' d ', ' "e" ')));
  });
  it('keeps the bytes of a LATIN1 script and runs them converted from LATIN1 by the server', () => {
    const script = Buffer.concat([Buffer.from("SET client_encoding = 'LATIN1';\nCOMMENT ON DATABASE lat IS 'caf"), Buffer.from([0xe9]), Buffer.from("';\n")]);
    const [s] = parseDefinition(script, 'lat', 'copy');
    expect(s).toEqual({
      kind: 'comment',
      sql: `COMMENT ON DATABASE "copy" IS 'caf\u00e9';`,
      run: `DO $pgs3b$BEGIN EXECUTE convert_from(decode('${Buffer.from('COMMENT ON DATABASE ').toString('hex')}', 'hex'), 'LATIN1') || '"copy"' || convert_from(decode('${Buffer.from(" IS 'caf\u00e9';", 'latin1').toString('hex')}', 'hex'), 'LATIN1'); END$pgs3b$`,
    });
  });
});

describe("pg_restore's errors", () => {
  const stderr = [
    'pg_restore: processing data for table "public.a"',
    'pg_restore: from TOC entry 222; 1259 16402 TABLE accounts fid_owner',
    'pg_restore: error: could not execute query: ERROR:  type "public.year" does not exist',
    'LINE 3:     y public.year',
    'Command was: CREATE TABLE public.accounts (',
    'pg_restore: launching item 3344 TABLE DATA ledger accounts',
    ...Array.from({ length: 14 }, (_, i) => `pg_restore: error: could not execute query: ERROR:  relation "t${i}" does not exist`),
    'pg_restore: warning: errors ignored on restore: 15',
  ].join('\n');
  it('keeps each error whole, with its TOC entry and command, and no progress line', () => {
    const errors = parseErrors(stderr);
    expect(errors).toHaveLength(15);
    expect(errors[0]).toBe('could not execute query: ERROR:  type "public.year" does not exist\n(from TOC entry 222; 1259 16402 TABLE accounts fid_owner)\nLINE 3:     y public.year\nCommand was: CREATE TABLE public.accounts (');
    expect(classifyPgRestore(1, stderr).errors[0]).toMatch(/public\.year/);
  });
  it('shows the first errors and counts the rest', () => {
    const text = summarizeErrors(parseErrors(stderr));
    expect(text).toMatch(/^ {2}1\. could not execute query: ERROR: {2}type "public\.year" does not exist/);
    expect(text).toMatch(/… and 5 more errors$/);
    expect(text).not.toMatch(/processing data|launching item/);
  });
  it('hints at what fits: never --create for a database the restore dropped', () => {
    expect(hintForPgRestore('role "x" does not exist', { dropped: true })).toMatch(/--no-owner.*--no-acl.*was dropped/);
    expect(hintForPgRestore('anything', { dropped: true })).not.toMatch(/--create/);
    expect(hintForPgRestore('anything')).toMatch(/--clean/);
  });
  it('never tells a --data-only restore to retry with --clean (the two cannot be combined)', () => {
    const hint = hintForPgRestore('COPY failed for table "orders": ERROR: insert or update on table "orders" violates foreign key constraint', { dataOnly: true });
    expect(hint).not.toMatch(/--clean/);
    expect(hint).toMatch(/TRUNCATE.*--data-only/);
  });
});

describe('passes', () => {
  it('pre-data serially, data and post-data with --jobs; --schema-only and --data-only pick passes', () => {
    expect(sections({})).toEqual(['pre-data', 'data', 'post-data']);
    expect(sections({ schemaOnly: true })).toEqual(['pre-data', 'post-data']);
    expect(sections({ dataOnly: true })).toEqual(['data']);
    expect(pgRestoreArgs('db', 'f', { section: 'pre-data', jobs: 4 })).not.toContain('--jobs');
    expect(pgRestoreArgs('db', 'f', { section: 'data', jobs: 4 })).toEqual(expect.arrayContaining(['--section=data', '--jobs', '4']));
    // --no-owner no longer drops grants: --no-acl does.
    expect(pgRestoreArgs('db', 'f', { section: 'post-data', noOwner: true })).not.toContain('--no-privileges');
    expect(pgRestoreArgs('db', 'f', { section: 'post-data', noAcl: true })).toContain('--no-privileges');
  });
});
