/**
 * `restore --data-only` of a sharded backup into a database whose schema is already there, its
 * foreign keys included: the order in which the data archives may load (pure, but for the
 * target's catalog query). A sharded backup's archives each hold some of the tables, and loaded
 * side by side (as `--create` and `--clean` do, before any constraint exists) a referencing
 * table's rows can arrive before the rows they reference: the foreign key refuses them. Nor is an
 * archive's own order always right: pg_dump orders a data-only archive's tables by the keys
 * between tables that have rows, and a key declared on a partitioned table joins no two such
 * tables (its partitions hold the rows, and its copies on them are not dumped).
 *
 * The foreign keys are the target's own (pg_constraint): they are the ones that check the rows,
 * whatever the backup held. When none crosses archives and each archive's order already puts a
 * key's referenced table first, the archives still load side by side. Else one after another:
 * whole archives in foreign-key order when their dependencies allow one; else table by table
 * (each archive streamed once per run of consecutive tables, with a `--use-list` of them; a run
 * reads its archive forward, so a table needed before an earlier one of the same archive makes
 * one more run of it). A cycle between tables of several archives has no order: refused before
 * any data archive is loaded (the schema archive's data pass, the sequences' values, has run by
 * then) (pg_restore `--disable-triggers` loads it, as a superuser; RDS has none). A cycle within
 * one archive keeps that archive's order, as a one-archive backup does.
 *
 * A one-archive backup's archive is worse off: pg_dump orders table data by a key only in a
 * data-only dump, so a whole database's archive lists it by name, keys or not. Its `--data-only`
 * restore takes the same order, as one archive's tables (oneArchiveDataOrder): the file is on disk,
 * so one run reads it in any order (a `--use-list`, restore.ts). A cycle of keys keeps pg_dump's
 * order there too (only pg_restore `--disable-triggers`, as a superuser, would load it).
 */
import { RestoreError } from '../errors.ts';
import { serverVersionNum, withClient } from '../pg/client.ts';
import type { PgConnection } from '../pg/connection.ts';
import type { TocEntry } from './toc.ts';

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

/** The TABLE entries of a table of contents by OID: the table a TABLE DATA entry (of the same OID, in any archive of one backup) fills. */
export function tablesByOid(entries: readonly TocEntry[]): Map<number, TableName> {
  return new Map(entries.filter((e) => e.desc === 'TABLE').map((e) => [e.oid, tableName(e.schema, e.tag)]));
}

/** `schema.name`, for messages. */
export function printableTable(t: TableName): string {
  return t.replace('\u0000', '.');
}

/**
 * The steps that load `partTables` (each archive's tables, by index, in the archive's own order)
 * so that every foreign key's referenced rows are there first; undefined when the archives may
 * load side by side (no foreign key crosses them, and each archive's own order already puts the
 * referenced tables of its keys first). A table's own partitions count as the table (pg_constraint
 * names the partitioned table, the query below names each partition).
 *
 * An archive's own order is followed only where it is right: pg_dump orders a data-only archive's
 * tables by a foreign key only when both tables have rows of their own, and a key declared on a
 * partitioned table joins none (the partitions' copies of it are not dumped), so its partitions
 * come by name, maybe before the rows they reference. An archive is read from a pipe: a run cannot
 * go back in it, so a table that must load before an earlier one of the same archive makes
 * another run of that archive.
 */
export function dataOnlySteps(partTables: readonly (readonly TableName[])[], fks: readonly ForeignKey[]): DataStep[] | undefined {
  const partOf = new Map<TableName, number>();
  const position = new Map<TableName, number>();
  partTables.forEach((tables, i) => tables.forEach((t, at) => (partOf.set(t, i), position.set(t, at))));
  const edges = fks.filter((fk) => fk.from !== fk.to && partOf.has(fk.from) && partOf.has(fk.to));
  const tables = partTables.flat();
  const component = components(tables, edges);
  const cyclic = (fk: ForeignKey) => component.get(fk.from) === component.get(fk.to);
  const crosses = (fk: ForeignKey) => partOf.get(fk.from) !== partOf.get(fk.to);
  // Within one archive, the referenced table after the referencing one: one run cannot load them.
  const backward = (fk: ForeignKey) => !crosses(fk) && position.get(fk.to)! > position.get(fk.from)!;
  const through = edges.find((fk) => cyclic(fk) && crosses(fk));
  if (through) {
    const among = edges.filter((fk) => cyclic(fk) && component.get(fk.from) === component.get(through.from));
    throw new RestoreError(
      `the backup's tables reference each other in a cycle of foreign keys (${cycleThrough(through, among).map(printableTable).join(' -> ')}): no order loads their data while the foreign keys are in place; no row of the data archives was loaded`,
      {
        hint:
          'Restore into a new database with --create (its foreign keys are made after the rows are in), or with --clean; or drop these foreign keys, restore --data-only, and create them again ' +
          '(pg_restore --data-only --disable-triggers, as a superuser, is the other way).',
      },
    );
  }
  // A cycle inside one archive (pg_dump warns of it) is left to that archive's own order, as a
  // one-archive backup's would be: its keys against that order are not followed.
  const kept = edges.filter((fk) => !(cyclic(fk) && backward(fk)));
  const crossing = kept.filter(crosses);
  const backwards = kept.some(backward);
  if (crossing.length === 0 && !backwards) return undefined;

  // Whole archives, referenced first, when their dependencies have an order (ties: manifest order).
  const partOrder = backwards
    ? undefined
    : topologicalOrder(
        partTables.map((_, i) => i),
        crossing.map((fk) => ({ before: partOf.get(fk.to)!, after: partOf.get(fk.from)! })),
        () => undefined,
      );
  if (partOrder) return partOrder.map((part) => ({ part }));

  // Table by table, staying in one archive (and going forward in it) while it has a table ready.
  const forward = (ready: readonly TableName[], previous: TableName | undefined) =>
    previous === undefined
      ? undefined
      : ready
          .filter((t) => partOf.get(t) === partOf.get(previous) && position.get(t)! > position.get(previous)!)
          .sort((x, y) => position.get(x)! - position.get(y)!)[0];
  // No cycle is left: every one crossing archives was refused, the others' backward keys dropped.
  const tableOrder = topologicalOrder(tables, kept.map((fk) => ({ before: fk.to, after: fk.from })), forward)!;
  // One run per stretch of one archive that goes forward in it.
  const steps: { part: number; tables: TableName[] }[] = [];
  for (const t of tableOrder) {
    const part = partOf.get(t)!;
    const last = steps.at(-1);
    if (last?.part === part && position.get(last.tables.at(-1)!)! < position.get(t)!) last.tables.push(t);
    else steps.push({ part, tables: [t] });
  }
  // An archive with no table (the large objects alone) loads whole, first: nothing references it.
  const empty = partTables.flatMap((ts, i) => (ts.length === 0 ? [{ part: i }] : []));
  return [...empty, ...steps];
}

/**
 * A one-archive backup's entries (those in `ids`, when given) for a `--use-list` that loads its
 * table data in the target's foreign-key order: its TABLE DATA entries moved where the keys need
 * them (dataOnlySteps, the archive as one part), every other entry where it was. Undefined when
 * the archive's order breaks no key: then nothing changes. `against`: the keys its order broke
 * (and the new one follows), by the referencing table's place in the archive.
 */
export function oneArchiveDataOrder(
  entries: readonly TocEntry[],
  ids: ReadonlySet<number> | undefined,
  fks: readonly ForeignKey[],
): { readonly entries: TocEntry[]; readonly against: ForeignKey[] } | undefined {
  const names = tablesByOid(entries);
  const chosen = entries.filter((e) => ids === undefined || ids.has(e.id));
  const data = new Map<TableName, TocEntry>();
  for (const e of chosen) {
    const table = e.desc === 'TABLE DATA' ? names.get(e.oid) : undefined;
    if (table !== undefined) data.set(table, e);
  }
  const tables = [...data.keys()];
  const steps = dataOnlySteps([tables], fks);
  if (!steps) return undefined;
  // One archive: its steps are stretches of one order of all its tables (the runs a pipe would need).
  const order = steps.flatMap((s) => s.tables ?? tables);
  const queue = order.map((t) => data.get(t)!);
  const moved = new Set(queue);
  const was = new Map(tables.map((t, i) => [t, i]));
  const now = new Map(order.map((t, i) => [t, i]));
  const against = fks
    .filter((fk) => was.has(fk.from) && was.has(fk.to) && was.get(fk.to)! > was.get(fk.from)! && now.get(fk.to)! < now.get(fk.from)!)
    .sort((x, y) => was.get(x.from)! - was.get(y.from)! || was.get(x.to)! - was.get(y.to)!);
  return { entries: chosen.map((e) => (moved.has(e) ? queue.shift()! : e)), against };
}

/**
 * Kahn's order of `nodes` (`before` each time before `after`), undefined on a cycle. Among the
 * nodes ready, `prefer` may choose one (`previous`: the one placed last); else the first in `nodes`' order.
 */
function topologicalOrder<T>(nodes: readonly T[], edges: readonly { before: T; after: T }[], prefer: (ready: readonly T[], previous: T | undefined) => T | undefined): T[] | undefined {
  const rank = new Map<T, number>(nodes.map((n, i) => [n, i]));
  const next = new Map<T, T[]>(nodes.map((n) => [n, []]));
  const waiting = new Map<T, number>(nodes.map((n) => [n, 0]));
  for (const e of edges) {
    next.get(e.before)!.push(e.after);
    waiting.set(e.after, waiting.get(e.after)! + 1);
  }
  let ready = nodes.filter((n) => waiting.get(n) === 0);
  const done: T[] = [];
  while (ready.length > 0) {
    const chosen = prefer(ready, done.at(-1)) ?? ready[0]!;
    done.push(chosen);
    const freed = next.get(chosen)!.filter((n) => {
      waiting.set(n, waiting.get(n)! - 1);
      return waiting.get(n) === 0;
    });
    ready = ready.filter((n) => n !== chosen);
    if (freed.length > 0) ready = [...ready, ...freed].sort((x, y) => rank.get(x)! - rank.get(y)!);
  }
  return done.length === nodes.length ? done : undefined;
}

/**
 * The strongly connected components of `nodes` (Tarjan's, without recursion: a database may have
 * thousands of partitions): two tables share one when each depends on the other through keys.
 */
function components<T>(nodes: readonly T[], edges: readonly { from: T; to: T }[]): Map<T, number> {
  const out = new Map<T, T[]>(nodes.map((n) => [n, []]));
  for (const e of edges) out.get(e.from)!.push(e.to);
  const index = new Map<T, number>();
  const low = new Map<T, number>();
  const component = new Map<T, number>();
  const stack: T[] = [];
  const onStack = new Set<T>();
  let counter = 0;
  let components = 0;
  const visit = (n: T) => {
    index.set(n, counter);
    low.set(n, counter++);
    stack.push(n);
    onStack.add(n);
  };
  for (const root of nodes) {
    if (index.has(root)) continue;
    visit(root);
    const work = [{ node: root, i: 0 }];
    while (work.length > 0) {
      const top = work.at(-1)!;
      const successors = out.get(top.node)!;
      if (top.i < successors.length) {
        const w = successors[top.i++]!;
        if (!index.has(w)) {
          visit(w);
          work.push({ node: w, i: 0 });
        } else if (onStack.has(w)) low.set(top.node, Math.min(low.get(top.node)!, index.get(w)!));
        continue;
      }
      work.pop();
      const parent = work.at(-1);
      if (parent) low.set(parent.node, Math.min(low.get(parent.node)!, low.get(top.node)!));
      if (low.get(top.node) === index.get(top.node)) {
        for (;;) {
          const w = stack.pop()!;
          onStack.delete(w);
          component.set(w, components);
          if (w === top.node) break;
        }
        components++;
      }
    }
  }
  return component;
}

/** The shortest cycle of keys through `first` (for the message): `first`, then back from its referenced table. */
function cycleThrough(first: ForeignKey, edges: readonly ForeignKey[]): TableName[] {
  const cameFrom = new Map<TableName, TableName>();
  const queue = [first.to];
  for (let i = 0; i < queue.length && !cameFrom.has(first.from); i++) {
    const t = queue[i]!;
    for (const e of edges) {
      if (e.from === t && e.to !== first.to && !cameFrom.has(e.to)) {
        cameFrom.set(e.to, t);
        queue.push(e.to);
      }
    }
  }
  const back: TableName[] = [];
  for (let t: TableName | undefined = first.from; t !== undefined && t !== first.to; t = cameFrom.get(t)) back.unshift(t);
  return [first.from, first.to, ...back];
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
  const rows = await withClient(target, database, async (c) => {
    // PostgreSQL 18's NOT ENFORCED keys check no row: they order nothing (nor close a cycle).
    // The column is 18's: an older server has only enforced keys, and no conenforced to read.
    const enforced = (await serverVersionNum(c)) >= 180000 ? ' AND c.conenforced' : '';
    return (
      await c.query<{ from_schema: string; from_table: string; to_schema: string; to_table: string }>(`
        SELECT DISTINCT rn.nspname AS from_schema, r.relname AS from_table, fn.nspname AS to_schema, f.relname AS to_table
        FROM pg_catalog.pg_constraint c
        CROSS JOIN LATERAL (SELECT relid FROM pg_catalog.pg_partition_tree(c.conrelid) UNION SELECT c.conrelid) a(relid)
        CROSS JOIN LATERAL (SELECT relid FROM pg_catalog.pg_partition_tree(c.confrelid) UNION SELECT c.confrelid) b(relid)
        JOIN pg_catalog.pg_class r ON r.oid = a.relid JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
        JOIN pg_catalog.pg_class f ON f.oid = b.relid JOIN pg_catalog.pg_namespace fn ON fn.oid = f.relnamespace
        WHERE c.contype = 'f' AND c.conparentid = 0 AND c.conrelid <> c.confrelid AND a.relid <> b.relid${enforced}`)
    ).rows;
  }).catch((err: unknown) => {
    throw new RestoreError(`--data-only could not read the foreign keys of database "${database}" (to order the backup's table data): ${(err as Error).message}`, { cause: err });
  });
  return rows.map((r) => ({ from: tableName(r.from_schema, r.from_table), to: tableName(r.to_schema, r.to_table) }));
}
