/**
 * A one-archive backup (DUMP_JOBS=1, the default) restored `--data-only` into a database whose
 * schema, foreign keys included, is already there: pg_dump's order of the archive's table data
 * does not follow a key declared on partitioned tables (partitions come by name), so the data
 * pass must load them in the target's foreign-key order (data-only-order.ts).
 *
 * The fixture breaks pg_dump's order every time, no race needed: `orders` (partitioned) references
 * `tenants` (partitioned), and `orders_2025` sorts before `tenants_a` and `tenants_b`. A whole
 * database's archive lists table data by name, keys or not (pg_dump orders data by a key only in
 * a data-only dump): plain `invoices` referencing `vendors` come first too.
 */
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { backUp, runCli, startCliServices, type CliServices } from '../../support/cli.ts';

let svc: CliServices;
let key: string;

beforeAll(async () => {
  svc = await startCliServices();
  await svc.pg.query(`CREATE DATABASE tenancy TEMPLATE template0 ENCODING 'UTF8' LOCALE 'en_US.UTF-8'`);
  await svc.pg.query(
    `
    CREATE TABLE tenants (id int PRIMARY KEY, name text NOT NULL) PARTITION BY RANGE (id);
    CREATE TABLE tenants_a PARTITION OF tenants FOR VALUES FROM (1) TO (1001);
    CREATE TABLE tenants_b PARTITION OF tenants FOR VALUES FROM (1001) TO (MAXVALUE);
    INSERT INTO tenants SELECT g, 'tenant ' || g FROM generate_series(1, 1200) g;
    CREATE TABLE orders (id int NOT NULL, tenant_id int NOT NULL REFERENCES tenants (id), placed date NOT NULL, PRIMARY KEY (id, placed)) PARTITION BY RANGE (placed);
    CREATE TABLE orders_2025 PARTITION OF orders FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
    CREATE TABLE orders_2026 PARTITION OF orders FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
    INSERT INTO orders SELECT g, 1 + g % 1200, CASE WHEN g % 2 = 0 THEN DATE '2025-06-01' ELSE DATE '2026-06-01' END FROM generate_series(1, 3000) g;
    CREATE TABLE vendors (id int PRIMARY KEY, name text NOT NULL);
    CREATE TABLE invoices (id int PRIMARY KEY, vendor_id int NOT NULL REFERENCES vendors (id));
    INSERT INTO vendors SELECT g, 'vendor ' || g FROM generate_series(1, 50) g;
    INSERT INTO invoices SELECT g, 1 + g % 50 FROM generate_series(1, 200) g;
    `,
    [],
    'tenancy',
  );
  const b = await backUp(svc.clients, { ...svc.env, DATABASES: 'tenancy' }, 'data-only');
  expect(b.manifest.parts).toBeUndefined();
  key = b.key;
  const schema = await runCli(['restore', '--key', key, '--target-url', svc.pg.urlFor('tenancy_copy'), '--create', '--schema-only'], svc.env);
  expect(schema.code, schema.stderr).toBe(0);
}, 240_000);

afterAll(async () => {
  await svc?.stop();
});

// Each test starts from the empty tables of the schema-only copy.
beforeEach(async () => {
  await svc.pg.query('TRUNCATE tenants, orders, vendors, invoices', [], 'tenancy_copy');
});

const ALL = { tenants: '1200', orders: '3000', orders2025: '1500', vendors: '50', invoices: '200' };

async function counts(): Promise<typeof ALL> {
  const [row] = await svc.pg.query<typeof ALL>(
    `SELECT (SELECT count(*) FROM tenants) AS tenants, (SELECT count(*) FROM orders) AS orders, (SELECT count(*) FROM orders_2025) AS "orders2025",
      (SELECT count(*) FROM vendors) AS vendors, (SELECT count(*) FROM invoices) AS invoices`,
    [],
    'tenancy_copy',
  );
  return row!;
}

/** The `jobs` each `restore.progress` event of a CLI run reported. */
function progressJobs(run: { events: Record<string, unknown>[] }): unknown[] {
  return [...new Set(run.events.filter((e) => e.event === 'restore.progress').map((e) => e.jobs))];
}

it('restore --data-only of a one-archive backup loads a key declared on partitioned tables in foreign-key order, with --jobs too', async () => {
  const data = await runCli(['restore', '--key', key, '--target-url', svc.pg.urlFor('tenancy_copy'), '--data-only'], svc.env);
  expect(data.code, data.stderr).toBe(0);
  expect(await counts()).toEqual(ALL);
  await svc.pg.query('TRUNCATE tenants, orders, vendors, invoices', [], 'tenancy_copy');

  // --jobs would schedule the tables side by side: the order needs one job, and the run says so.
  const jobs = await runCli(['restore', '--key', key, '--target-url', svc.pg.urlFor('tenancy_copy'), '--data-only', '--jobs', '3'], svc.env);
  expect(jobs.code, jobs.stderr).toBe(0);
  expect(await counts()).toEqual(ALL);
  expect(progressJobs(jobs)).toEqual([1]);
  expect(jobs.events.filter((e) => e.event === 'warning').map((e) => e.message)).toEqual([
    "--data-only: the archive's table data comes in an order the target's foreign keys refuse (public.invoices before public.vendors, which it references; 4 more such keys): it loads in foreign-key order, in one pg_restore job instead of --jobs 3",
  ]);
});

it('restore --data-only --table of a one-archive backup loads the named tables in foreign-key order; --jobs is kept when the order breaks no key', async () => {
  const named = await runCli(['restore', '--key', key, '--target-url', svc.pg.urlFor('tenancy_copy'), '--data-only', '--table', 'orders', '--table', 'tenants'], svc.env);
  expect(named.code, named.stderr).toBe(0);
  expect(await counts()).toEqual({ ...ALL, vendors: '0', invoices: '0' });
  await svc.pg.query('TRUNCATE tenants, orders, vendors, invoices', [], 'tenancy_copy');

  // The tenants alone: no key between them, so their data loads as the archive has it, with --jobs.
  const tenants = await runCli(['restore', '--key', key, '--target-url', svc.pg.urlFor('tenancy_copy'), '--data-only', '--table', 'tenants', '--jobs', '2'], svc.env);
  expect(tenants.code, tenants.stderr).toBe(0);
  expect(await counts()).toEqual({ ...ALL, orders: '0', orders2025: '0', vendors: '0', invoices: '0' });
  expect(progressJobs(tenants)).toEqual([2]);
  expect(tenants.events.filter((e) => e.event === 'warning')).toEqual([]);
});
