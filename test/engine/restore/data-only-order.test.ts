/**
 * The order of a sharded backup's data archives for `restore --data-only` into tables whose
 * foreign keys are in place (data-only-order.ts dataOnlySteps): side by side when no foreign key
 * crosses archives, whole archives referenced first when they allow an order, table by table when
 * the keys cross two archives both ways, refused when the tables themselves form a cycle; and a
 * one-archive backup's entries for a `--use-list` in that order (oneArchiveDataOrder).
 */
import { describe, expect, it } from 'vitest';
import { dataOnlySteps, oneArchiveDataOrder, tableName } from '../../../engine/restore/data-only-order.ts';
import { parseToc } from '../../../engine/restore/toc.ts';
import { RestoreError } from '../../../engine/errors.ts';

const t = (name: string) => tableName('public', name);
const fk = (from: string, to: string) => ({ from: t(from), to: t(to) });

describe('dataOnlySteps', () => {
  it('leaves the archives side by side when no foreign key crosses them (self-references and tables of no archive ignored)', () => {
    expect(dataOnlySteps([[t('customers'), t('orders')], [t('logs')]], [fk('orders', 'customers'), fk('logs', 'logs'), fk('logs', 'elsewhere')])).toBeUndefined();
    expect(dataOnlySteps([[t('a')], [t('b')]], [])).toBeUndefined();
  });

  it('loads whole archives, the referenced one first, even when the manifest lists it last', () => {
    expect(dataOnlySteps([[t('orders')], [t('items')], [t('customers')]], [fk('orders', 'customers'), fk('items', 'orders')])).toEqual([{ part: 2 }, { part: 0 }, { part: 1 }]);
  });

  it('goes table by table when the foreign keys cross two archives both ways, staying in one archive while it can', () => {
    const steps = dataOnlySteps(
      [[t('customers')], [t('regions'), t('orders'), t('notes')]],
      [fk('customers', 'regions'), fk('orders', 'customers')],
    );
    expect(steps).toEqual([
      { part: 1, tables: [t('regions'), t('notes')] },
      { part: 0, tables: [t('customers')] },
      { part: 1, tables: [t('orders')] },
    ]);
  });

  it('loads an archive without tables (the large objects alone) whole, first', () => {
    expect(dataOnlySteps([[], [t('a')], [t('b')]], [fk('a', 'b')])).toEqual([{ part: 0 }, { part: 2 }, { part: 1 }]);
    expect(dataOnlySteps([[t('a'), t('x')], [], [t('b'), t('y')]], [fk('a', 'b'), fk('y', 'x')])).toEqual([
      { part: 1 },
      { part: 0, tables: [t('x')] },
      { part: 2, tables: [t('b'), t('y')] },
      { part: 0, tables: [t('a')] },
    ]);
  });

  it('loads a partitioned key\'s referenced partition first when its own archive lists it after the referencing ones (a second run of that archive)', () => {
    // orders and tenants partitioned, the key declared on them: pg_dump lists the partitions of one
    // archive by name, orders_* before tenants_b. An archive is read forward: tenants_b alone, then orders_*.
    const orders = ['orders_2025', 'orders_2026'];
    const steps = dataOnlySteps(
      [[t('tenants_a')], [...orders.map(t), t('tenants_b')]],
      orders.flatMap((o) => [fk(o, 'tenants_a'), fk(o, 'tenants_b')]),
    );
    expect(steps).toEqual([
      { part: 0, tables: [t('tenants_a')] },
      { part: 1, tables: [t('tenants_b')] },
      { part: 1, tables: [t('orders_2025'), t('orders_2026')] },
    ]);
    // No key across archives, one against an archive's order: that archive twice, the others whole in between.
    expect(dataOnlySteps([[t('events_2024'), t('users')], [t('zbig')]], [fk('events_2024', 'users')])).toEqual([
      { part: 0, tables: [t('users')] },
      { part: 0, tables: [t('events_2024')] },
      { part: 1, tables: [t('zbig')] },
    ]);
  });

  it('keeps an archive\'s own order for a cycle of keys inside it (as a one-archive backup), and orders the archives around it', () => {
    expect(dataOnlySteps([[t('a'), t('b')], [t('c')]], [fk('a', 'b'), fk('b', 'a'), fk('c', 'a')])).toEqual([{ part: 0 }, { part: 1 }]);
    expect(dataOnlySteps([[t('a'), t('b')], [t('c')]], [fk('a', 'b'), fk('b', 'a')])).toBeUndefined();
  });

  it('refuses tables whose foreign keys form a cycle, naming it', () => {
    const run = () => dataOnlySteps([[t('a'), t('c')], [t('b')]], [fk('a', 'b'), fk('b', 'a'), fk('c', 'a')]);
    expect(run).toThrow(RestoreError);
    expect(run).toThrow(/a cycle of foreign keys \(public\.(a -> public\.b -> public\.a|b -> public\.a -> public\.b)\).*no row of the data archives was loaded/);
    // Through three tables of two archives, one key inside an archive: the cycle named is the one across them.
    expect(() => dataOnlySteps([[t('a'), t('c')], [t('b')]], [fk('a', 'c'), fk('c', 'b'), fk('b', 'a')])).toThrow(/cycle of foreign keys \(public\.c -> public\.b -> public\.a -> public\.c\)/);
  });
});

describe('oneArchiveDataOrder', () => {
  // A whole database's archive, as pg_restore --list prints it: table data by name, keys or not.
  const toc = parseToc(
    [
      '216; 1259 16390 TABLE public invoices app',
      '217; 1259 16400 TABLE public orders_2025 app',
      '218; 1259 16410 TABLE public tenants_a app',
      '215; 1259 16385 TABLE public vendors app',
      '3300; 0 16390 TABLE DATA public invoices app',
      '3301; 0 16400 TABLE DATA public orders_2025 app',
      '3302; 0 16420 SEQUENCE SET public invoice_no app',
      '3303; 0 16410 TABLE DATA public tenants_a app',
      '3304; 0 16385 TABLE DATA public vendors app',
      '3305; 2606 16395 FK CONSTRAINT public invoices invoices_vendor_id_fkey app',
    ].join('\n'),
  );
  const ids = (entries: readonly { id: number }[] | undefined) => entries?.map((e) => e.id);

  it('moves the referenced tables\' data before the referencing ones, every other entry where it was, and names the keys the archive broke', () => {
    const order = oneArchiveDataOrder(toc, undefined, [fk('invoices', 'vendors'), fk('orders_2025', 'tenants_a')]);
    expect(ids(order?.entries)).toEqual([216, 217, 218, 215, 3303, 3304, 3302, 3300, 3301, 3305]);
    expect(order?.against).toEqual([fk('invoices', 'vendors'), fk('orders_2025', 'tenants_a')]);
  });

  it('changes nothing when the archive\'s order breaks no key, or only a cycle\'s (as pg_dump left it)', () => {
    expect(oneArchiveDataOrder(toc, undefined, [fk('vendors', 'invoices'), fk('tenants_a', 'tenants_a')])).toBeUndefined();
    expect(oneArchiveDataOrder(toc, undefined, [fk('invoices', 'vendors'), fk('vendors', 'invoices')])).toBeUndefined();
    expect(oneArchiveDataOrder(toc, undefined, [])).toBeUndefined();
  });

  it('orders only the --table selection: a key to a table left out orders nothing', () => {
    const chosen = new Set([216, 217, 3300, 3301]);
    expect(oneArchiveDataOrder(toc, chosen, [fk('invoices', 'vendors'), fk('orders_2025', 'tenants_a')])).toBeUndefined();
    const order = oneArchiveDataOrder(toc, new Set([...chosen, 218, 3303]), [fk('invoices', 'vendors'), fk('orders_2025', 'tenants_a')]);
    expect(ids(order?.entries)).toEqual([216, 217, 218, 3300, 3303, 3301]);
  });
});
