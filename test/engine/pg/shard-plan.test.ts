/**
 * Shard planning (engine/pg/shard-plan.ts) and DUMP_JOBS's default (engine/config.ts): pure.
 * What the plan does against a real server is in test/engine/backup/sharded.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { dataFilter, filterable, filterPattern, planShards, schemaFilter, type PlannedTable } from '../../../engine/pg/shard-plan.ts';
import { defaultDumpJobs, loadConfig } from '../../../engine/config.ts';

const t = (table: string, bytes: number, schema = 'public'): PlannedTable => ({ schema, table, bytes });

describe('planShards', () => {
  it('gives the largest table a shard of its own and balances the rest, largest first', () => {
    const plan = planShards([t('a', 10), t('big', 100), t('b', 40), t('c', 30), t('d', 25)], 2)!;
    expect(plan.shards.map((s) => s.tables.map((x) => x.table))).toEqual([['big'], ['a', 'b', 'c', 'd']]);
    expect(plan.shards.map((s) => s.bytes)).toEqual([100, 105]);
    expect(plan.shards.map((s) => s.largeObjects)).toEqual([true, false]);
  });

  it('never makes more shards than tables, and none without tables (an empty filter would dump every table)', () => {
    expect(planShards([t('a', 1), t('b', 2)], 4)!.shards).toHaveLength(2);
    expect(planShards([], 4)).toBeUndefined();
  });

  it('is the same for the same catalog (names break size ties), whatever the order it was read in', () => {
    const tables = [t('x', 5), t('y', 5), t('z', 5), t('w', 5)];
    expect(planShards(tables, 3)).toEqual(planShards([...tables].reverse(), 3));
  });
});

describe('filter files', () => {
  it('quote every name so that it matches itself alone (pattern characters, quotes, dots)', () => {
    expect(filterPattern({ schema: 'Odd "Schema"', table: '*.?tab' })).toBe('"Odd ""Schema"""."*.?tab"');
    const plan = planShards([t('a', 2), t('b"c', 1, 's.x')], 2)!;
    expect(dataFilter(plan.shards[0]!)).toBe('include table "public"."a"\n');
    expect(schemaFilter(plan)).toBe('exclude table_data "public"."a"\nexclude table_data "s.x"."b""c"\n');
  });

  it('cannot hold a name with a line break: the plan is then not filterable (one archive is dumped)', () => {
    expect(filterPattern({ schema: 'public', table: 'two\nlines' })).toBeUndefined();
    expect(filterable(planShards([t('two\nlines', 1), t('b', 1)], 2)!)).toBe(false);
  });
});

describe('DUMP_JOBS', () => {
  it("defaults to the Lambda function's vCPUs by memory (1 up to 1,769 MB, 6 at 10,240 MB), 1 elsewhere", () => {
    expect([128, 1769, 1770, 3008, 10_240].map(defaultDumpJobs)).toEqual([1, 1, 2, 2, 6]);
    expect(defaultDumpJobs(undefined)).toBe(1);
    const host = { BACKUP_BUCKET: 'my-backups', DATABASE_URL: 'postgres://u:p@h/db' };
    const lambda = { BACKUP_BUCKET: 'my-backups', DB_SECRET_ID: 'db-secret', AWS_LAMBDA_FUNCTION_NAME: 'f', AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '3008' };
    expect(loadConfig(host).dumpJobs).toBe(1);
    expect(loadConfig(lambda).dumpJobs).toBe(2);
    expect(loadConfig({ ...lambda, DUMP_JOBS: '4' }).dumpJobs).toBe(4);
    expect(() => loadConfig({ ...host, DUMP_JOBS: '0' })).toThrow(/DUMP_JOBS/);
  });
});
