/**
 * `restore --data-only` of a sharded backup into a database whose schema is already there, its
 * foreign keys included: the order in which the data archives may load (pure, but for the
 * target's catalog query). A one-archive data-only restore needs none of this: pg_dump sorts a
 * data-only archive's tables so that referenced tables come first. A sharded backup's archives
 * each hold some of the tables, and loaded side by side (as `--create` and `--clean` do, before
 * any constraint exists) a referencing table's rows can arrive before the rows they reference:
 * the foreign key refuses them.
 *
 * The foreign keys are the target's own (pg_constraint): they are the ones that check the rows,
 * whatever the backup held. Without one between tables of different archives, the archives still
 * load side by side. Else one after another: whole archives in foreign-key order when their
 * dependencies allow one; when they run both ways between two archives, table by table (each
 * archive streamed once per run of consecutive tables, with a `--use-list` of them). A cycle
 * between tables themselves has no order: refused before any data archive is loaded (the schema
 * archive's data pass, the sequences' values, has run by then) (pg_restore
 * `--disable-triggers` loads it, as a superuser; RDS has none).
 */
import { RestoreError } from '../errors.ts';
import { withClient } from '../pg/client.ts';
import type { PgConnection } from '../pg/connection.ts';

/** A table as `schema\0name` (the target's catalog, and the schema archive's TABLE entries). */
export type TableName = string;

export interface ForeignKey {
  /** The referencing table (its partitions included). */
  readonly from: TableName;
  /** The referenced table (its partitions included). */
  readonly to: TableName;
}

/** One load: archive `part` (its index) whole, or only `tables` of it (in this order). */
export interface DataStep {
  readonly part: number;
  readonly tables?: readonly TableName[];
}

export function tableName(schema: string, name: string): TableName {
  return `${schema}\u0000${name}`;
}

function printable(t: TableName): string {
  return t.replace('\u0000', '.');
}

/**
 * The steps that load `partTables` (each archive's tables, by index) so that every foreign key's
 * referenced rows are there first; undefined when no foreign key crosses archives (they may load
 * side by side). A table's own partitions count as the table (pg_constraint names each, the
 * query below expands them).
 */
export function dataOnlySteps(partTables: readonly (readonly TableName[])[], fks: readonly ForeignKey[]): DataStep[] | undefined {
  const partOf = new Map<TableName, number>();
  partTables.forEach((tables, i) => tables.forEach((t) => partOf.set(t, i)));
  const edges = fks.filter((fk) => fk.from !== fk.to && partOf.has(fk.from) && partOf.has(fk.to));
  const crossing = edges.filter((fk) => partOf.get(fk.from) !== partOf.get(fk.to));
  if (crossing.length === 0) return undefined;

  // Whole archives, referenced first, when their dependencies have an order (ties: manifest order).
  const partOrder = topologicalOrder(
    partTables.map((_, i) => i),
    crossing.map((fk) => ({ before: partOf.get(fk.to)!, after: partOf.get(fk.from)! })),
    () => undefined,
  );
  if (partOrder) return partOrder.map((part) => ({ part }));

  // Both ways between archives: table by table, staying in one archive while it has a table ready.
  const tables = partTables.flat();
  const tableOrder = topologicalOrder(
    tables,
    edges.map((fk) => ({ before: fk.to, after: fk.from })),
    (ready, previous) => (previous === undefined ? undefined : ready.find((t) => partOf.get(t) === partOf.get(previous))),
  );
  if (!tableOrder) {
    throw new RestoreError(
      `the backup's tables reference each other in a cycle of foreign keys (${cycleOf(tables, edges).map(printable).join(' -> ')}): no order loads their data while the foreign keys are in place; no row of the data archives was loaded`,
      {
        hint:
          'Restore into a new database with --create (its foreign keys are made after the rows are in), or with --clean; or drop these foreign keys, restore --data-only, and create them again ' +
          '(pg_restore --data-only --disable-triggers, as a superuser, is the other way).',
      },
    );
  }
  const steps: { part: number; tables: TableName[] }[] = [];
  for (const t of tableOrder) {
    const part = partOf.get(t)!;
    const last = steps.at(-1);
    if (last?.part === part) last.tables.push(t);
    else steps.push({ part, tables: [t] });
  }
  // An archive with no table (the large objects alone) loads whole, first: nothing references it.
  const empty = partTables.flatMap((ts, i) => (ts.length === 0 ? [{ part: i }] : []));
  return [...empty, ...steps];
}

/**
 * Kahn's order of `nodes` (`before` each time before `after`), undefined on a cycle. Among the
 * nodes ready, `prefer` may choose one (`previous`: the one placed last); else the first in `nodes`' order.
 */
function topologicalOrder<T>(nodes: readonly T[], edges: readonly { before: T; after: T }[], prefer: (ready: readonly T[], previous: T | undefined) => T | undefined): T[] | undefined {
  const waiting = new Map<T, number>(nodes.map((n) => [n, 0]));
  for (const e of edges) waiting.set(e.after, (waiting.get(e.after) ?? 0) + 1);
  const done: T[] = [];
  const left = new Set(nodes);
  while (left.size > 0) {
    const ready = [...left].filter((n) => waiting.get(n) === 0);
    if (ready.length === 0) return undefined;
    const next = prefer(ready, done.at(-1)) ?? ready[0]!;
    left.delete(next);
    done.push(next);
    for (const e of edges) if (e.before === next) waiting.set(e.after, waiting.get(e.after)! - 1);
  }
  return done;
}

/** One cycle among `edges` (for the message): walked back from a table that never became ready. */
function cycleOf(tables: readonly TableName[], edges: readonly ForeignKey[]): TableName[] {
  const stuck = new Set(tables);
  // Peel off what is not on a cycle's path (no incoming edge from the stuck set), as Kahn's order does.
  for (let changed = true; changed; ) {
    changed = false;
    for (const t of stuck) {
      if (!edges.some((e) => e.from === t && e.to !== t && stuck.has(e.to))) {
        stuck.delete(t);
        changed = true;
      }
    }
  }
  const start = [...stuck][0];
  if (start === undefined) return [];
  const path = [start];
  for (let t = start; ; ) {
    t = edges.find((e) => e.from === t && e.to !== t && stuck.has(e.to))!.to;
    const seen = path.indexOf(t);
    if (seen >= 0) return [...path.slice(seen), t];
    path.push(t);
  }
}

/**
 * The target's foreign keys between different tables, each partition of either side named (a
 * partition's rows are its own archive entry): what will check the rows a data-only restore loads.
 * Only the keys as declared (`conparentid = 0`): PostgreSQL also records a copy of a partitioned
 * table's key on each partition of either side, and expanding every copy's trees again made the
 * query grow with partitions squared (38 s for two tables of 300 partitions). A table's key to
 * itself (`conrelid = confrelid`) orders nothing, as for a plain table: expanded over a
 * partitioned table it paired its partitions both ways, a cycle nobody declared, and the restore
 * was refused.
 */
export async function targetForeignKeys(target: PgConnection, database: string): Promise<ForeignKey[]> {
  const rows = await withClient(target, database, async (c) =>
    (
      await c.query<{ from_schema: string; from_table: string; to_schema: string; to_table: string }>(`
        SELECT DISTINCT rn.nspname AS from_schema, r.relname AS from_table, fn.nspname AS to_schema, f.relname AS to_table
        FROM pg_catalog.pg_constraint c
        CROSS JOIN LATERAL (SELECT relid FROM pg_catalog.pg_partition_tree(c.conrelid) UNION SELECT c.conrelid) a(relid)
        CROSS JOIN LATERAL (SELECT relid FROM pg_catalog.pg_partition_tree(c.confrelid) UNION SELECT c.confrelid) b(relid)
        JOIN pg_catalog.pg_class r ON r.oid = a.relid JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
        JOIN pg_catalog.pg_class f ON f.oid = b.relid JOIN pg_catalog.pg_namespace fn ON fn.oid = f.relnamespace
        WHERE c.contype = 'f' AND c.conparentid = 0 AND c.conrelid <> c.confrelid AND a.relid <> b.relid`)
    ).rows,
  ).catch((err: unknown) => {
    throw new RestoreError(`--data-only could not read the foreign keys of database "${database}" (to order the backup's data archives): ${(err as Error).message}`, { cause: err });
  });
  return rows.map((r) => ({ from: tableName(r.from_schema, r.from_table), to: tableName(r.to_schema, r.to_table) }));
}
