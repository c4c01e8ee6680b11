/**
 * targetForeignKeys (data-only-order.ts) on a server older than 18: no `conenforced` column there
 * (NOT ENFORCED is 18's), so the query must not name it; and a key declared on partitioned tables
 * is named for each partition on both sides (the data entries are the partitions). On 18 the NOT
 * ENFORCED case runs through the CLI: sharded-data-only.test.ts.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { targetForeignKeys, type ForeignKey } from '../../../engine/restore/data-only-order.ts';
import { startPostgres, type TestPostgres } from '../../support/postgres.ts';

let pg: TestPostgres;

beforeAll(async () => {
  pg = await startPostgres({ major: 13 });
  await pg.query(`CREATE DATABASE keys TEMPLATE template0 ENCODING 'UTF8' LOCALE 'en_US.UTF-8'`);
  await pg.query(
    `
    CREATE TABLE tenants (id int PRIMARY KEY) PARTITION BY RANGE (id);
    CREATE TABLE tenants_a PARTITION OF tenants FOR VALUES FROM (1) TO (100);
    CREATE TABLE tenants_b PARTITION OF tenants FOR VALUES FROM (100) TO (MAXVALUE);
    CREATE TABLE orders (id int NOT NULL, tenant_id int NOT NULL REFERENCES tenants (id), placed date NOT NULL) PARTITION BY RANGE (placed);
    CREATE TABLE orders_2025 PARTITION OF orders FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
    CREATE TABLE notes (id int PRIMARY KEY, parent int REFERENCES notes (id), tenant_id int REFERENCES tenants_a (id));
    `,
    [],
    'keys',
  );
}, 120_000);

afterAll(async () => {
  await pg?.stop();
});

it('reads the foreign keys of a PostgreSQL 13 target (no conenforced), each partition of either side named, self-references left out', async () => {
  const [v] = await pg.query<{ v: string }>(`SELECT current_setting('server_version_num') AS v`);
  expect(Math.floor(Number(v!.v) / 10000)).toBe(13);
  const name = (fk: ForeignKey) => `${fk.from.replace('\u0000', '.')} -> ${fk.to.replace('\u0000', '.')}`;
  const fks = (await targetForeignKeys(pg.connection('keys'), 'keys')).map(name).sort();
  expect(fks).toEqual(
    [
      'public.notes -> public.tenants_a',
      ...['public.orders', 'public.orders_2025'].flatMap((from) => ['public.tenants', 'public.tenants_a', 'public.tenants_b'].map((to) => `${from} -> ${to}`)),
    ].sort(),
  );
});
