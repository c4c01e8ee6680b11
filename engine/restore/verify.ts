/**
 * The restore drill: proves a backup can be restored, without touching any real database.
 * SHA-256 against the manifest, `pg_restore --list` (the archive's table of contents reads), a
 * full restore into a scratch database created for the drill and always dropped, then a report
 * of what came back (tables, rows, sizes) and how long each step took.
 *
 * It never throws for a problem with the backup or the scratch server: every problem lands in
 * the report (`status: "failed"`, `problems`), so the report is always there to print or publish.
 */
import { randomBytes } from 'node:crypto';
import { DefinitionUnreadableError, DumpGoneError, ManifestGoneError, PgS3BackupError } from '../errors.ts';
import type { Manifest, RowCountMode, TableCount } from '../store/manifest.ts';
import { dropDatabase, serverVersion } from './admin.ts';
import { createScratchDatabase } from './locale-fallback.ts';
import type { RestoreDeps } from './deps.ts';
import { checkedManifest, downloadVerified, identitiesFor, type DownloadedDump } from './download.ts';
import { pgRestoreInto, readDefinition, readToc, summarizeErrors, type Toc } from './pg-restore.ts';
import { serverVersionNum, withClient } from '../pg/client.ts';
import { describeConnection, type PgConnection } from '../pg/connection.ts';
import { quoteIdent } from './database-definition.ts';
import { partTables, restoreDataParts } from './sharded-restore.ts';
import { databaseLocaleSql } from './server-versions.ts';
import { dataWithoutRelation } from './toc.ts';
import { startThrowawayServer, throwawayTarget, type ThrowawayServerOptions } from './throwaway-server.ts';

export interface VerifyOptions {
  readonly key: string;
  /** A server where the drill may create and drop a database; its URL's database is only used to connect. */
  readonly scratch: PgConnection;
  readonly jobs?: number;
}

export interface TableReport {
  readonly schema: string;
  readonly table: string;
  readonly rows: number;
  readonly bytes: number;
}

/** With ROW_COUNTS=estimate the planner's figures are compared within 10 % or 100 rows, whichever is larger. */
export function withinTolerance(mode: RowCountMode | undefined, expected: number, restored: number): boolean {
  if (mode !== 'estimate') return expected === restored;
  return Math.abs(restored - expected) <= Math.max(100, Math.ceil(expected * 0.1));
}

/** One table of the manifest against the restore. */
export interface TableCheck {
  readonly schema: string;
  readonly table: string;
  /** From the manifest (null: not counted at backup time). */
  readonly expectedRows: number | null;
  /** After the restore (null: the table is missing, or its count failed). */
  readonly restoredRows: number | null;
  readonly ok: boolean;
  readonly problem?: string;
}

/**
 * Compares the manifest's tables with what the restore gave back. Pure. The one comparison of
 * `verify` (--local, --scratch-url) and the nightly drill: the drill's alert tells the operator to
 * run `verify`, which must then fail on the same tables.
 */
export function compareCounts(mode: RowCountMode | undefined, expected: readonly TableCount[], restored: readonly TableReport[]): TableCheck[] {
  const byName = new Map(restored.map((t) => [`${t.schema}.${t.table}`, t]));
  return expected.map((e) => {
    const r = byName.get(`${e.schema}.${e.table}`);
    if (!r) return { schema: e.schema, table: e.table, expectedRows: e.rows, restoredRows: null, ok: false, problem: 'missing after the restore' };
    if (e.rows === null) return { schema: e.schema, table: e.table, expectedRows: null, restoredRows: r.rows, ok: true };
    const ok = withinTolerance(mode, e.rows, r.rows);
    return {
      schema: e.schema,
      table: e.table,
      expectedRows: e.rows,
      restoredRows: r.rows,
      ok,
      ...(ok ? {} : { problem: `${r.rows} rows restored, the backup held ${e.rows}${mode === 'estimate' ? ' (estimate; tolerance 10 % or 100 rows)' : ''}` }),
    };
  });
}

export interface VerifyProblem {
  readonly stage: string;
  readonly message: string;
  readonly hint?: string;
  /**
   * The backup, or one of its objects, did not exist when it was read (ManifestGoneError,
   * DumpGoneError): deleted after it was chosen. Only a failure of this kind makes the drill and
   * `verify --latest` take the newest backup again; any other problem is the backup's.
   */
  readonly gone?: true;
}

/** A problem of `err`: its stage (PgS3BackupError's, else `stage`), message and hint, and whether it says the backup is gone. */
export function problemOf(stage: string, err: unknown): VerifyProblem {
  const e = err as Error;
  return {
    stage: err instanceof PgS3BackupError ? err.stage : stage,
    message: e.message,
    ...(err instanceof PgS3BackupError && err.hint ? { hint: err.hint } : {}),
    ...(err instanceof ManifestGoneError || err instanceof DumpGoneError ? { gone: true as const } : {}),
  };
}

export interface VerifyReport {
  readonly status: 'ok' | 'failed';
  readonly key: string;
  readonly database: string | undefined;
  readonly backupStartedAt: string | undefined;
  /** The backup's source server (the manifest's `serverVersion`, `13.23`). */
  readonly backupServerVersion?: string;
  /** The server the scratch database was restored on (`18.1`): --local's and the drill's is the pg-server layer's. */
  readonly scratchServerVersion?: string;
  /** Set when those two are different majors: what the restore tried, and what it did not (versionNote). */
  readonly versionNote?: string;
  readonly bytes: number | undefined;
  readonly sha256: string | undefined;
  readonly sha256Verified: boolean;
  /** The backup is encrypted with age; with sha256Verified, its decrypted archive matched the manifest too. */
  readonly encrypted?: boolean;
  /** Entries in the archive's table of contents (`pg_restore --list`). */
  readonly tocEntries: number | undefined;
  /** Tables whose data the archive holds (TOC `TABLE DATA` entries). */
  readonly tocTablesWithData: number | undefined;
  /** The scratch database used (already dropped), and the server, password redacted. */
  readonly scratchDatabase: string;
  readonly scratchServer: string;
  /** The scratch database's encoding and locale (provider:locale), as the backup defined them. */
  readonly encoding: string | undefined;
  readonly locale: string | undefined;
  readonly tables: readonly TableReport[];
  /** How the manifest's counts were taken; absent: it has none (version 1, or ROW_COUNTS=off). */
  readonly rowCounts?: RowCountMode;
  /** The manifest's tables against the restore (`compareCounts`); empty without counts in the manifest. */
  readonly tableChecks?: readonly TableCheck[];
  /** `schema.table: problem` of each table that does not match the manifest (each is also a problem). */
  readonly failingTables?: readonly string[];
  readonly totalRows: number;
  /** pg_database_size of the restored scratch database. */
  readonly restoredBytes: number | undefined;
  /** Milliseconds per step; `server`: initdb and start of the throwaway server (verify --local, the drill). */
  readonly timingsMs: { readonly server?: number; readonly download?: number; readonly list?: number; readonly restore?: number; readonly inspect?: number; readonly total: number };
  readonly warnings: readonly string[];
  readonly problems: readonly VerifyProblem[];
  readonly verifiedAt: string;
}

/** A scratch database name nobody else uses: visible as ours, unique per run. */
export function scratchDatabaseName(now: Date, random = randomBytes(3).toString('hex')): string {
  return `pgs3b_verify_${now.toISOString().replace(/\D/g, '').slice(0, 14)}_${random}`;
}

/** A version's major (`13.23` → 13, `9.6.24` → 9.6), undefined when unreadable. */
function majorOf(version: string): number | undefined {
  const m = /^(\d+)(?:\.(\d+))?/.exec(version);
  if (!m) return undefined;
  const first = Number(m[1]);
  return first >= 10 ? first : Number(`${m[1]}.${m[2] ?? 0}`);
}

/**
 * When the backup's server and the scratch server are different majors (a PostgreSQL 13 backup on
 * --local's and the drill's throwaway 18): what the restore tried, and what it did not. pg_dump
 * 18 writes what each major can load, but a database may hold what a newer major no longer accepts
 * (a view over a catalog column it removed, a postfix operator before 14): restored on 18 it fails
 * where a restore into 13 works, and a restore that works on 18 says nothing of one into 13.
 */
export function versionNote(backupServerVersion: string | undefined, scratchServerVersion: string | undefined): string | undefined {
  if (backupServerVersion === undefined || scratchServerVersion === undefined) return undefined;
  const source = majorOf(backupServerVersion);
  const scratch = majorOf(scratchServerVersion);
  if (source === undefined || scratch === undefined || source === scratch) return undefined;
  return (
    `the backup is of PostgreSQL ${backupServerVersion} and was restored on PostgreSQL ${scratchServerVersion}: this tried a restore into PostgreSQL ${scratch}, ` +
    `not into ${source} (verify --scratch-url on a PostgreSQL ${source} server tries that)`
  );
}

/**
 * Tables, partitioned parents and populated materialized views (one created WITH NO DATA has no
 * rows to count, and counting it is an error).
 */
const TABLES_SQL = `
SELECT n.nspname AS schema, c.relname AS table, pg_total_relation_size(c.oid)::bigint AS bytes
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE (c.relkind IN ('r', 'p') OR (c.relkind = 'm' AND c.relispopulated)) AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_to%'
ORDER BY 1, 2`;

/** Where a stop found the verify, by the last stage it completed. */
const STAGE_WORDS = { start: 'before the backup was downloaded', downloaded: 'before the restore finished', restored: 'while the restored rows were counted' } as const;

export async function verifyBackup(deps: RestoreDeps, options: VerifyOptions): Promise<VerifyReport> {
  const now = deps.now ?? Date.now;
  const started = now();
  const scratchDatabase = scratchDatabaseName(new Date(started));
  const problems: VerifyProblem[] = [];
  const warnings: string[] = [];
  const timings: { download?: number; list?: number; restore?: number; inspect?: number } = {};
  const fail = (stage: string, err: unknown) => {
    problems.push(problemOf(stage, err));
    deps.events?.({ event: 'verify.problem', stage, message: (err as Error).message });
  };

  let manifest: Manifest | undefined;
  let dump: DownloadedDump | undefined;
  let toc: Toc | undefined;
  let properties: { encoding: string; locale: string } | undefined;
  let tables: TableReport[] = [];
  let restoredBytes: number | undefined;
  let scratchServerVersion: string | undefined;
  let created = false;
  /** A sharded backup's data archives all matched their SHA-256 as they streamed. */
  let partsVerified = false;
  /**
   * How far the verify got: a stop (deadline, signal) is judged by it, not by the signal alone. A
   * stop that lands after the rows were counted (while the scratch database is dropped) still
   * compares them; one before does not, and the warning names the stage it reached.
   */
  let reached: 'start' | 'downloaded' | 'restored' | 'inspected' = 'start';
  /** The stop itself reached `fail` (it was thrown by what it interrupted). */
  let stopRecorded = false;
  try {
    manifest = checkedManifest(await deps.source.readManifest(options.key), options.key);
    deps.events?.({ event: 'restore.manifest', key: manifest.key, database: manifest.database, bytes: manifest.bytes, startedAt: manifest.startedAt });
    // Read once: a sharded backup's data archives need them too.
    const identities = await identitiesFor(deps, manifest);
    dump = await downloadVerified(deps, manifest, identities);
    timings.download = dump.ms;
    reached = 'downloaded';

    const listStarted = now();
    toc = await readToc(deps, dump.path, manifest.tables);
    timings.list = now() - listStarted;
    const tocRead = toc;
    const manifestRead = manifest;
    // A sharded backup's schema archive holds no table's data: its data archives do (as the report counts them).
    deps.events?.({ event: 'verify.toc', entries: toc.entries.length, tablesWithData: toc.tablesWithData.length + partTables(manifest) });

    // The scratch database as the backup defines its own (encoding, locale, provider, settings):
    // a drill on a database that differs from production proves less.
    const definition = await readDefinition(deps, dump.path, toc, manifest.database, scratchDatabase).catch((err: unknown) => {
      // A name pg_restore will not write (a line break): the tables are still drilled, in a plain scratch database.
      if (!(err instanceof DefinitionUnreadableError)) throw err;
      warnings.push(`${err.message}: the scratch database was created from template0 with this server's defaults`);
      return [];
    });
    // Which server proves the restore: the report names it beside the backup's.
    scratchServerVersion = (await serverVersion(options.scratch)).text;
    // Owners, role settings and grants name roles of the production server that a scratch server need not have.
    const noRoles = { noOwner: true, noAcl: true };
    // The backup's locale when the server has it, else the closest one and a warning (locale-fallback.ts).
    const defined = await createScratchDatabase(options.scratch, scratchDatabase, definition, noRoles);
    created = true;
    if (defined.warning) {
      warnings.push(defined.warning);
      deps.events?.({ event: 'warning', message: defined.warning });
    }
    // Every pass runs whatever fails (keepGoing): one index that cannot be built must not hide the
    // rows that did come back; the errors are the problems, the tables are still counted.
    const restored = await pgRestoreInto(deps, options.scratch, scratchDatabase, dump.path, {
      jobs: options.jobs,
      ...noRoles,
      keepGoing: true,
      earlierErrors: defined.errors,
      tablesTotal: toc.tablesWithData.length + partTables(manifest),
      afterData: manifest.parts
        ? async (onLine) => {
            const r = await restoreDataParts(deps, options.scratch, scratchDatabase, manifestRead, { ...noRoles, identities, onLine });
            // An archive pg_restore gave up on was not read to its end: its checksum is unknown, not verified.
            partsVerified = r.unverified.length === 0;
            for (const k of r.unverified) warnings.push(`data archive ${k} was not read to its end (pg_restore failed first): its SHA-256 was not checked`);
            return r;
          }
        : undefined,
    });
    timings.restore = restored.ms;
    reached = 'restored';
    warnings.push(...restored.warnings);
    if (restored.errors.length > 0) problems.push(restoreErrorsProblem(restored.errors, versionNote(manifest.serverVersion, scratchServerVersion)));

    const inspectStarted = now();
    const inspected = await inspect(options.scratch, scratchDatabase, problems);
    ({ tables, restoredBytes, properties } = inspected);
    timings.inspect = now() - inspectStarted;
    reached = 'inspected';
    deps.events?.({ event: 'verify.inspected', tables: tables.length, ms: timings.inspect });
    for (const t of dataWithoutRelation(tocRead.entries, inspected.relations)) {
      problems.push({ stage: 'verify', message: `the archive holds data for table ${t}, which does not exist after the restore` });
    }
  } catch (err) {
    if (deps.signal?.aborted) stopRecorded = true;
    fail('verify', err);
  } finally {
    await dump?.remove();
    if (created) {
      await dropDatabase(options.scratch, scratchDatabase).catch((err: unknown) => {
        problems.push({ stage: 'verify', message: `could not drop the scratch database "${scratchDatabase}": ${(err as Error).message}`, hint: 'Drop it by hand (DROP DATABASE).' });
      });
    }
  }

  // Every table the manifest counted (format 2+) must be back with its rows, as the drill checks:
  // once the dump was verified and the restore got somewhere. Not when it was stopped (its
  // deadline, a signal): the tables it did not reach are not the backup's fault, the stop is the
  // problem, and the report says the tables were not compared.
  const counted = manifest?.tables;
  const stopped = deps.signal?.aborted === true;
  const compare = counted !== undefined && dump !== undefined && (stopped ? reached === 'inspected' : tables.length + problems.length > 0);
  if (stopped && counted && dump !== undefined && reached !== 'inspected') {
    warnings.push(`stopped ${STAGE_WORDS[reached]}: the tables were not compared with the manifest's row counts`);
  }
  const tableChecks = compare ? compareCounts(manifest?.rowCounts, counted, tables) : [];
  const failingTables = tableChecks.filter((t) => !t.ok).map((t) => `${t.schema}.${t.table}: ${t.problem}`);
  for (const f of failingTables) problems.push({ stage: 'verify', message: f });
  // A stopped verify never says ok: what it did not get to is unproven, and the stop is why.
  if (stopped && !stopRecorded) {
    const reason = deps.signal?.reason instanceof Error ? deps.signal.reason.message : String(deps.signal?.reason);
    problems.push({ stage: 'verify', message: `the verify was stopped ${reached === 'inspected' ? 'after every restored table was counted (while cleaning up)' : `(${STAGE_WORDS[reached]})`}: ${reason}` });
  }
  if (manifest && !counted) warnings.push('the manifest holds no row counts (written before row counts, or ROW_COUNTS=off): only the restore itself and the archive\'s tables are proven');

  const report: VerifyReport = {
    status: problems.length === 0 ? 'ok' : 'failed',
    key: manifest?.key ?? options.key,
    database: manifest?.database,
    backupStartedAt: manifest?.startedAt,
    ...(manifest ? { backupServerVersion: manifest.serverVersion } : {}),
    ...(scratchServerVersion === undefined ? {} : { scratchServerVersion }),
    ...withVersionNote(manifest?.serverVersion, scratchServerVersion),
    bytes: manifest?.bytes,
    sha256: manifest?.sha256,
    sha256Verified: dump !== undefined && (manifest?.parts === undefined || partsVerified),
    ...(manifest?.encryption ? { encrypted: true } : {}),
    tocEntries: toc?.entries.length,
    // A sharded backup's tables with data are in its data archives too.
    tocTablesWithData: toc === undefined ? undefined : toc.tablesWithData.length + (manifest ? partTables(manifest) : 0),
    scratchDatabase,
    scratchServer: describeConnection(options.scratch).replace(/\/[^/?]*(\?|$)/, '$1'),
    encoding: properties?.encoding,
    locale: properties?.locale,
    tables,
    ...(counted && manifest?.rowCounts ? { rowCounts: manifest.rowCounts } : {}),
    tableChecks,
    failingTables,
    totalRows: tables.reduce((sum, t) => sum + t.rows, 0),
    restoredBytes,
    timingsMs: { ...timings, total: now() - started },
    warnings,
    problems,
    verifiedAt: new Date(now()).toISOString(),
  };
  deps.events?.({ event: 'verify.finished', status: report.status, tables: tables.length, rows: report.totalRows, ms: report.timingsMs.total });
  return report;
}

function withVersionNote(backup: string | undefined, scratch: string | undefined): { versionNote?: string } {
  const note = versionNote(backup, scratch);
  return note === undefined ? {} : { versionNote: note };
}

/**
 * pg_restore's errors as one problem: what failed, in its own words (the first ones hold the
 * cause). `across`: the versionNote of a restore on another major than the backup's server, where
 * the errors may be that major's alone, not the backup's.
 */
function restoreErrorsProblem(errors: readonly string[], across?: string): VerifyProblem {
  const sameMajor =
    'the objects named above are missing from a restore. A common cause is a function used by an index, a constraint or a default ' +
    'that reads another table without its schema (pg_restore runs with an empty search_path): qualify the names in the function (or give it SET search_path), then take a new backup.';
  return {
    stage: 'restore',
    message: `pg_restore reported ${errors.length} error${errors.length === 1 ? '' : 's'} (the rows that came back are counted all the same)${across ? `; ${across}` : ''}:\n${summarizeErrors(errors)}`,
    hint: across
      ? 'The backup was restored on another PostgreSQL major than its own server\'s, so these errors may be that major\'s alone: an object it no longer accepts (a view or ' +
        'function over a catalog column or feature it removed, a postfix operator before 14, …) fails here and restores on the backup\'s own major. Verify on a server of ' +
        'the backup\'s major (verify --scratch-url) to prove the restore you would run today; fix those objects in the source before upgrading to this major. ' +
        `If the errors are not about such objects: ${sameMajor}`
      : `The backup does not restore cleanly: ${sameMajor}`,
  };
}

/**
 * What came back: each table's exact row count (ONLY: a partition's rows are counted once, in the
 * partition), each count on its own so that one failure is reported without hiding the others.
 */
async function inspect(
  target: PgConnection,
  database: string,
  problems: VerifyProblem[],
): Promise<{ tables: TableReport[]; restoredBytes: number; relations: { schema: string; name: string }[]; properties: { encoding: string; locale: string } }> {
  return withClient(target, database, async (c) => {
    const rows = (await c.query<{ schema: string; table: string; bytes: string }>(TABLES_SQL)).rows;
    const tables: TableReport[] = [];
    for (const r of rows) {
      // Exact counts: this is a drill on a scratch copy, and an estimate would hide a lost row.
      const ident = `${quoteIdent(r.schema)}.${quoteIdent(r.table)}`;
      try {
        const n = (await c.query<{ n: string }>(`SELECT count(*) AS n FROM ONLY ${ident}`)).rows[0]!.n;
        tables.push({ schema: r.schema, table: r.table, rows: Number(n), bytes: Number(r.bytes) });
      } catch (err) {
        problems.push({ stage: 'verify', message: `counting the rows of ${r.schema}.${r.table} failed: ${(err as Error).message}` });
      }
    }
    const relations = (
      await c.query<{ schema: string; name: string }>(
        "SELECT n.nspname AS schema, c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'm', 'f')",
      )
    ).rows;
    // The locale's columns depend on the scratch server's version (datlocale is 17+).
    const localeSql = databaseLocaleSql(await serverVersionNum(c));
    const db = (
      await c.query<{ s: string; encoding: string; locale: string }>(
        `SELECT pg_database_size(current_database())::bigint AS s, pg_encoding_to_char(encoding) AS encoding, ${localeSql} AS locale
         FROM pg_database WHERE datname = current_database()`,
      )
    ).rows[0]!;
    return { tables, restoredBytes: Number(db.s), relations, properties: { encoding: db.encoding, locale: db.locale } };
  });
}

export interface VerifyLocalOptions extends Omit<VerifyOptions, 'scratch'> {
  /** The throwaway server: layer root, temporary folder, bounds. */
  readonly server: ThrowawayServerOptions;
}

/**
 * The same drill on a throwaway PostgreSQL started for it (the pg-server layer) and thrown away
 * after: no scratch server to provide. Like verifyBackup it never throws for a problem: a server
 * that cannot start is a problem in the report.
 */
export async function verifyOnThrowawayServer(deps: RestoreDeps, options: VerifyLocalOptions): Promise<VerifyReport> {
  const now = deps.now ?? Date.now;
  const started = now();
  let server;
  try {
    deps.events?.({ event: 'verify.server', status: 'starting' });
    server = await startThrowawayServer(options.server);
    deps.events?.({ event: 'verify.server', status: 'started', ms: now() - started });
  } catch (err) {
    const e = err as Error;
    return {
      status: 'failed',
      key: options.key,
      database: undefined,
      backupStartedAt: undefined,
      bytes: undefined,
      sha256: undefined,
      sha256Verified: false,
      tocEntries: undefined,
      tocTablesWithData: undefined,
      scratchDatabase: '',
      scratchServer: 'throwaway server (not started)',
      encoding: undefined,
      locale: undefined,
      tables: [],
      totalRows: 0,
      restoredBytes: undefined,
      timingsMs: { total: now() - started },
      warnings: [],
      problems: [{ stage: err instanceof PgS3BackupError ? err.stage : 'drill', message: e.message, ...(err instanceof PgS3BackupError && err.hint ? { hint: err.hint } : {}) }],
      verifiedAt: new Date(now()).toISOString(),
    };
  }
  const serverMs = now() - started;
  try {
    const { jobs } = options;
    const report = await verifyBackup(deps, { key: options.key, scratch: throwawayTarget(server), ...(jobs === undefined ? {} : { jobs }) });
    return { ...report, scratchServer: 'throwaway server (pg-server layer), removed', timingsMs: { ...report.timingsMs, server: serverMs, total: now() - started } };
  } finally {
    await server.stop();
  }
}
