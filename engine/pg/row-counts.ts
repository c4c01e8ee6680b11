/**
 * Row counts in the dump's own snapshot (issue 13). One connection opens a REPEATABLE READ
 * transaction and exports its snapshot; pg_dump runs with `--snapshot=<that id>`, so it sees
 * exactly the same data; meanwhile the same transaction lists the tables whose data pg_dump writes
 * and counts their rows. A restore drill can then prove that every table holds exactly what the
 * database held at backup time, not merely "something".
 *
 * ROW_COUNTS: `exact` (count(*) of every table: reads every table once more, concurrently with the
 * dump), `estimate` (the planner's reltuples as of the snapshot: free), `off` (no snapshot, no list:
 * the manifest says so). Counting never fails a backup: a table that cannot be counted gets
 * `rows: null`, a snapshot that cannot be exported gives a backup without counts and a warning.
 */
import type pg from 'pg';
import { withClient } from './client.ts';
import type { PgConnection } from './connection.ts';
import type { RowCountMode, TableCount } from '../store/manifest.ts';

/**
 * The tables pg_dump writes data for: ordinary and partitioned tables outside the system schemas,
 * not temporary, not members of an extension (pg_dump leaves their data to the extension, except
 * configuration tables, which a drill need not prove). A partitioned parent holds no rows itself
 * (`ONLY`): its partitions are listed on their own.
 */
export const TABLES_SQL = `
SELECT n.nspname AS schema, c.relname AS table, c.relkind AS kind, c.reltuples::float8 AS estimate,
       pg_total_relation_size(c.oid)::bigint AS bytes
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2`;

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export interface SnapshotCounts {
  readonly mode: RowCountMode;
  /** Absent with mode "off". */
  readonly tables?: readonly TableCount[];
  /** Why counts are missing or partial (never fails the backup). */
  readonly warnings: readonly string[];
  /** Time spent counting (concurrently with the dump). */
  readonly ms: number;
}

/** The planner's figure: reltuples < 0 means never analyzed (unknown); a partitioned parent holds none itself. */
export function estimateRows(kind: string, estimate: number): number | null {
  if (kind === 'p') return 0;
  return estimate < 0 ? null : Math.round(estimate);
}

/** Lists and counts in the open transaction; each count behind a savepoint so one failure does not end the snapshot. */
export async function countTables(client: Pick<pg.Client, 'query'>, mode: Exclude<RowCountMode, 'off'>, warnings: string[]): Promise<TableCount[]> {
  const rows = (await client.query<{ schema: string; table: string; kind: string; estimate: number; bytes: string }>(TABLES_SQL)).rows;
  const tables: TableCount[] = [];
  for (const r of rows) {
    let count: number | null;
    if (mode === 'estimate') {
      count = estimateRows(r.kind, Number(r.estimate));
    } else {
      try {
        await client.query('SAVEPOINT pgs3_count');
        count = Number((await client.query<{ n: string }>(`SELECT count(*) AS n FROM ONLY ${quoteIdent(r.schema)}.${quoteIdent(r.table)}`)).rows[0]!.n);
        await client.query('RELEASE SAVEPOINT pgs3_count');
      } catch (err) {
        await client.query('ROLLBACK TO SAVEPOINT pgs3_count').catch(() => {});
        warnings.push(`could not count ${r.schema}.${r.table}: ${(err as Error).message}`);
        count = null;
      }
    }
    tables.push({ schema: r.schema, table: r.table, rows: count, bytes: Number(r.bytes) });
  }
  return tables;
}

/**
 * Runs `dump(snapshot)` with an exported snapshot held open until both the dump and the counts are
 * done. With mode "off", or when no snapshot can be exported, `dump(undefined)` runs as before.
 */
export async function withDumpSnapshot<T>(
  conn: PgConnection,
  mode: RowCountMode,
  dump: (snapshot: string | undefined, client?: Pick<pg.Client, 'query'>) => Promise<T>,
  options: {
    readonly lockTimeoutSeconds?: number | undefined;
    /**
     * Export a snapshot even with mode "off" (a sharded dump: its pg_dumps must share one), and
     * hand `dump` the exporting connection (its first queries run before the counts').
     */
    readonly exportAlways?: boolean | undefined;
  } = {},
): Promise<{ result: T; counts: SnapshotCounts }> {
  if (mode === 'off' && !options.exportAlways) return { result: await dump(undefined), counts: { mode, warnings: [], ms: 0 } };
  const warnings: string[] = [];
  let dumped = false;
  try {
    return await withClient(conn, conn.database, async (client) => {
      // READ ONLY, REPEATABLE READ: the counts see the snapshot pg_dump imports. row_security off
      // as pg_dump does: a table that row-level security would filter fails to count instead of
      // being counted short.
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY');
      await client.query('SET LOCAL row_security = off');
      // A count never waits on a lock longer than pg_dump does (PG_LOCK_WAIT_TIMEOUT): a table
      // held in ACCESS EXCLUSIVE is reported uncounted instead of holding the run.
      if (options.lockTimeoutSeconds !== undefined) await client.query(`SET LOCAL lock_timeout = '${Math.trunc(options.lockTimeoutSeconds)}s'`);
      const snapshot = (await client.query<{ s: string }>('SELECT pg_export_snapshot() AS s')).rows[0]!.s;
      dumped = true;
      const dumping = dump(snapshot, client);
      const started = Date.now();
      const counting = (mode === 'off' ? Promise.resolve(undefined) : countTables(client, mode, warnings)).then(
        (tables) => ({ tables, ms: Date.now() - started }),
        (err: unknown) => {
          warnings.push(`row counts unavailable: ${(err as Error).message}`);
          return { tables: undefined, ms: Date.now() - started };
        },
      );
      // The dump's outcome first (its failure is the backup's); the counts never throw.
      const result = await dumping;
      const { tables, ms } = await counting;
      await client.query('COMMIT').catch(() => {});
      return { result, counts: { mode, ...(tables ? { tables } : {}), warnings, ms } };
    });
  } catch (err) {
    // The snapshot connection failed before the dump started: dump without counts (the dump's own
    // connection reports a real connection problem). A failure of the dump itself propagates.
    if (dumped) throw err;
    warnings.push(`no snapshot could be exported for row counts: ${(err as Error).message}`);
    return { result: await dump(undefined), counts: { mode, warnings, ms: 0 } };
  }
}
