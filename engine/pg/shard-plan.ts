/**
 * Sharded dumps (issue 24 §1): which tables each data-only pg_dump writes, and the `--filter`
 * files that say so. Pure, apart from the one catalog query run in the dump's own snapshot.
 *
 * Where everything goes, deliberately:
 * - the schema archive (the backup's own key): every object's definition (pre- and post-data),
 *   sequence values (SEQUENCE SET), materialized views' REFRESH (post-data: pg_restore orders them
 *   after the indexes they may need), and the data of extension configuration tables (pg_dump
 *   decides it with the extension); the sharded tables' data is excluded by `exclude table_data`,
 *   large objects by `--no-large-objects`;
 * - data archive 1..N: `--data-only` of its tables (`include table`), balanced by size;
 *   archive 1 alone also carries the large objects (`--large-objects`: their metadata counts as
 *   data in a data-only archive, so it is restored with them).
 * Filter files, not argv: a database of 50,000 tables would not fit in one command line (and its
 * names would show in `ps`).
 */
import type pg from 'pg';

/** Why a run with DUMP_JOBS > 1 dumps one archive after all; undefined: it can shard (encrypted or not: each archive is its own age file). */
export function whyNotSharded(jobs: number, pgDumpMajor: number): string | undefined {
  if (jobs <= 1) return undefined;
  // --filter is pg_dump 17's.
  if (pgDumpMajor < 17) return `DUMP_JOBS=${jobs} needs pg_dump 17 or newer (--filter), this one is ${pgDumpMajor}: one archive is dumped`;
  return undefined;
}

/**
 * The tables whose rows pg_dump writes, with their size in the snapshot: ordinary tables (a
 * partition is one; a partitioned parent holds no rows), not temporary, outside the system
 * schemas, not members of an extension (their data goes with the extension, in the schema archive).
 * pg_table_size: heap and TOAST, what COPY reads; indexes are not dumped.
 */
export const SHARD_TABLES_SQL = `
SELECT n.nspname AS schema, c.relname AS table, pg_table_size(c.oid)::bigint AS bytes
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2`;

export interface PlannedTable {
  readonly schema: string;
  readonly table: string;
  /** pg_table_size in the snapshot. */
  readonly bytes: number;
}

export interface Shard {
  readonly tables: readonly PlannedTable[];
  readonly bytes: number;
  /** This archive carries the large objects (the first one only). */
  readonly largeObjects: boolean;
}

export interface ShardPlan {
  /** At most the jobs asked for, never more than the tables (an archive without a table would dump every table). */
  readonly shards: readonly Shard[];
  /** Every sharded table: their data is excluded from the schema archive. */
  readonly tables: readonly PlannedTable[];
}

/** The tables to shard, read in the dump's snapshot (the connection that exported it). */
export async function shardTables(client: Pick<pg.Client, 'query'>): Promise<PlannedTable[]> {
  const rows = (await client.query<{ schema: string; table: string; bytes: string }>(SHARD_TABLES_SQL)).rows;
  return rows.map((r) => ({ schema: r.schema, table: r.table, bytes: Number(r.bytes) }));
}

/**
 * Largest first, each to the lightest shard so far (longest-processing-time first: within 4/3 of
 * the best split, exact when one table dominates: it gets a shard of its own and the rest share
 * the others). Ties go to the lower shard, names break size ties: the same catalog gives the same
 * plan. Undefined when there is nothing to shard (no table with data).
 */
export function planShards(tables: readonly PlannedTable[], jobs: number): ShardPlan | undefined {
  const n = Math.min(Math.max(1, Math.trunc(jobs)), tables.length);
  if (n === 0) return undefined;
  const order = [...tables].sort((a, b) => b.bytes - a.bytes || compareNames(a, b));
  const bins = Array.from({ length: n }, () => ({ tables: [] as PlannedTable[], bytes: 0 }));
  for (const t of order) {
    let lightest = bins[0]!;
    for (const b of bins) if (b.bytes < lightest.bytes) lightest = b;
    lightest.tables.push(t);
    lightest.bytes += t.bytes;
  }
  return {
    shards: bins.map((b, i) => ({ tables: b.tables.sort(compareNames), bytes: b.bytes, largeObjects: i === 0 })),
    tables: [...tables].sort(compareNames),
  };
}

function compareNames(a: PlannedTable, b: PlannedTable): number {
  const x = `${a.schema}\u0000${a.table}`;
  const y = `${b.schema}\u0000${b.table}`;
  return x < y ? -1 : x > y ? 1 : 0;
}

/**
 * A name as a `--filter` pattern that matches it alone: double-quoted (inside quotes `*`, `?`,
 * `.` and the other pattern characters are literal, `""` is a quote). A filter file is read line
 * by line: a name with a line break cannot be written, hence undefined (the caller dumps one archive).
 */
export function filterPattern(t: Pick<PlannedTable, 'schema' | 'table'>): string | undefined {
  if (/[\n\r]/.test(t.schema) || /[\n\r]/.test(t.table)) return undefined;
  return `"${t.schema.replace(/"/g, '""')}"."${t.table.replace(/"/g, '""')}"`;
}

/** Whether every sharded table can be named in a filter file. */
export function filterable(plan: ShardPlan): boolean {
  return plan.tables.every((t) => filterPattern(t) !== undefined);
}

/** The filter file of one data archive: `include table` of each of its tables. */
export function dataFilter(shard: Shard): string {
  return shard.tables.map((t) => `include table ${filterPattern(t)!}\n`).join('');
}

/** The filter file of the schema archive: every sharded table's data left to the data archives. */
export function schemaFilter(plan: ShardPlan): string {
  return plan.tables.map((t) => `exclude table_data ${filterPattern(t)!}\n`).join('');
}
