/**
 * Shard planning (engine/pg/shard-plan.ts) and DUMP_JOBS's default (engine/config.ts): pure.
 * What the plan does against a real server is in test/engine/backup/sharded.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { archiveBounds, dataFilter, filterable, filterPattern, planShards, schemaFilter, type PlannedTable } from '../../../engine/pg/shard-plan.ts';
import { DEFAULT_QUEUE_SIZE, partSizeForDatabase } from '../../../engine/store/stream-upload.ts';
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

describe('archiveBounds: each archive\'s parts sized for its share of the database', () => {
  const GiB = 1024 ** 3;
  const TiB = 1024 * GiB;
  // What the archives' part buffers hold at once: each upload keeps its queue of parts plus the one filling.
  const buffers = (partSizes: readonly number[]) => partSizes.reduce((sum, p) => sum + p * (DEFAULT_QUEUE_SIZE + 1), 0);

  it('keeps the part buffers of a 1 TiB database in 6 shards at about one archive\'s, not 7 archives\' worth', () => {
    // Six equal tables of 120 GiB (720 GiB of tables) in a 1 TiB database (indexes, catalogs: the rest).
    const plan = planShards(Array.from({ length: 6 }, (_, i) => t(`events_${i}`, 120 * GiB)), 6)!;
    const bounds = archiveBounds(plan, TiB);
    expect(bounds.shards).toEqual([120 * GiB + 304 * GiB, ...Array.from({ length: 5 }, () => 120 * GiB)]);
    expect(bounds.schema).toBe(304 * GiB);
    const sharded = buffers([partSizeForDatabase(bounds.schema), ...bounds.shards.map((b) => partSizeForDatabase(b))]);
    const oneArchive = buffers([partSizeForDatabase(TiB)]);
    // Before: every archive sized for the whole database, 7 × one archive's buffers (≈ 3.5 GiB here).
    expect(sharded).toBeLessThanOrEqual(1.5 * oneArchive);
    expect(sharded).toBeLessThan(0.25 * 7 * oneArchive);
  });

  it('sizes every archive for the uploader\'s default bound when the database\'s size is unknown', () => {
    const plan = planShards([t('a', 10), t('b', 20)], 2)!;
    expect(archiveBounds(plan, undefined)).toEqual({ schema: undefined, shards: [undefined, undefined] });
  });

  it('never gives a negative bound when the tables measure more than the database (sizes read at different moments)', () => {
    const plan = planShards([t('a', 100), t('b', 200)], 2)!;
    expect(archiveBounds(plan, 250)).toEqual({ schema: 0, shards: [200, 100] });
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
