/**
 * `restore --table` of a partitioned table brings its partitions (every level), and of a
 * materialized view the tables it reads with their rows (issue 22, item 11: pagila's
 * `--table payment` gave 0 rows, exit 0, nothing said). The result names every table restored.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runCli, startCliServices, type CliServices } from '../support/cli.ts';

let svc: CliServices;

beforeAll(async () => {
  svc = await startCliServices();
  await svc.pg.query('CREATE DATABASE shop');
  for (const sql of [
    'CREATE TABLE payment (id int, paid date, amount int) PARTITION BY RANGE (paid)',
    "CREATE TABLE payment_p1 PARTITION OF payment FOR VALUES FROM ('2022-01-01') TO ('2022-02-01')",
    "CREATE TABLE payment_p2 PARTITION OF payment FOR VALUES FROM ('2022-02-01') TO ('2022-03-01') PARTITION BY RANGE (id)",
    'CREATE TABLE payment_p2a PARTITION OF payment_p2 FOR VALUES FROM (0) TO (100000)',
    "INSERT INTO payment SELECT i, date '2022-01-01' + (i % 50), i FROM generate_series(1, 1000) i",
    'CREATE INDEX ON payment (paid)',
    'CREATE TABLE rental (id int PRIMARY KEY)',
    'INSERT INTO rental SELECT generate_series(0, 9)',
    'CREATE MATERIALIZED VIEW sales AS SELECT count(*) AS n, sum(amount) AS total FROM payment JOIN rental ON rental.id = payment.id % 10',
  ]) await svc.pg.query(sql, [], 'shop');
  const run = await runCli(['backup', '--database', 'shop', '--reason', 'restore --table test'], svc.env);
  expect(run.code, run.stderr).toBe(0);
}, 300_000);

afterAll(async () => {
  await svc?.stop();
});

async function restoreTable(table: string, target: string) {
  const run = await runCli(['restore', '--latest', '--database', 'shop', '--create', '--table', table, '--target-url', svc.pg.urlFor(target)], svc.env);
  expect(run.code, run.stderr).toBe(0);
  return run;
}

it('--table payment restores its partitions and every row (it gave 0 rows)', async () => {
  const run = await restoreTable('payment', 'pay_copy');
  const [count] = await svc.pg.query<{ n: string }>('SELECT count(*) AS n FROM payment', [], 'pay_copy');
  expect(Number(count!.n)).toBe(1000);
  // The partitions' index too, attached to the parent's.
  const [indexes] = await svc.pg.query<{ n: string }>("SELECT count(*) AS n FROM pg_indexes WHERE tablename LIKE 'payment%'", [], 'pay_copy');
  expect(Number(indexes!.n)).toBe(4);
  expect(run.result).toMatchObject({ tables: ['public.payment', 'public.payment_p1', 'public.payment_p2', 'public.payment_p2a'], notRestored: [] });
});

it('--table sales (a materialized view) restores the tables it reads, so it is not empty', async () => {
  const run = await restoreTable('sales', 'sales_copy');
  const source = await svc.pg.query('SELECT n, total FROM sales', [], 'shop');
  expect(await svc.pg.query('SELECT n, total FROM sales', [], 'sales_copy')).toEqual(source);
  expect(source[0]).toMatchObject({ n: '1000' });
  const [named, ...also] = run.result!.tables as string[];
  expect(named).toBe('public.sales');
  expect(also.sort()).toEqual(['public.payment', 'public.payment_p1', 'public.payment_p2', 'public.payment_p2a', 'public.rental']);
});
