/**
 * The nightly restore drill (issue 13): for each database, the newest complete backup is
 * downloaded (SHA-256 checked against its manifest), restored into a throwaway PostgreSQL started
 * in the temporary folder (the pg-server layer), and proven: every table the manifest lists (the
 * tables with data, counted in the dump's own snapshot at backup time) exists after the restore and
 * holds exactly the manifest's row count (within a stated tolerance when the backup recorded
 * estimates). The report goes next to the backup as `<dump key>.verify.json`; a failed drill
 * alerts with the failing tables; a database too large for the temporary folder is skipped with a
 * warning alert that says what to do.
 *
 * Never throws for one database's problem: each database gets its report; the caller decides the
 * run's outcome from the statuses.
 */
import { statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { Message } from '../notify.ts';
import { SUBJECT_PREFIX, subjectText } from '../notify.ts';
import type { EventSink } from '../events.ts';
import { TimeBudget } from '../budget.ts';
import { ManifestGoneError, TimeBudgetError } from '../errors.ts';
import type { Manifest, RowCountMode } from '../store/manifest.ts';
import type { RestoreDeps } from './deps.ts';
import { sweepStaleServers, type ThrowawayServerOptions } from './throwaway-server.ts';
import { problemOf, verifyOnThrowawayServer, type TableCheck, type VerifyProblem, type VerifyReport } from './verify.ts';

/** `<dump key>.verify.json`: the drill's report, next to the backup (the store lists and prunes it). */
export { VERIFY_REPORT_SUFFIX, verifyReportKeyFor } from '../store/backup-key.ts';
import { verifyReportKeyFor } from '../store/backup-key.ts';

/** Room kept free besides the dump and the restored data: WAL (max_wal_size 256 MB), catalogs, the server's own files. */
export const SERVER_OVERHEAD_BYTES = 512 * 1024 ** 2;
/** Without table sizes in the manifest (version 1, ROW_COUNTS=off): restored size ≈ 5 × the compressed dump. */
export const RESTORE_SIZE_FACTOR = 5;

/** The comparison of the manifest's tables with the restore lives in verify.ts: `verify` runs the same one. */
export { compareCounts, withinTolerance } from './verify.ts';
/** One table of the manifest against the restore (verify.ts, `TableCheck`). */
export type DrillTable = TableCheck;

/** Temporary space the drill of this backup needs: the dump, the restored database, the server's overhead. */
export function requiredTempBytes(manifest: Pick<Manifest, 'bytes' | 'tables'> & Partial<Pick<Manifest, 'plaintextBytes'>>): number {
  // An encrypted dump is decrypted as it downloads: the file is the archive (only 16 bytes per 64 KiB smaller).
  const dump = manifest.plaintextBytes ?? manifest.bytes;
  const restored = manifest.tables ? manifest.tables.reduce((s, t) => s + t.bytes, 0) : dump * RESTORE_SIZE_FACTOR;
  return dump + restored + SERVER_OVERHEAD_BYTES;
}

export interface DrillDatabaseReport {
  readonly kind: 'pg-s3-backup restore drill';
  readonly status: 'ok' | 'failed' | 'skipped';
  /** Why a skipped drill was skipped (absent: too large for the temporary folder, as before this field). */
  readonly skipReason?: 'too large' | 'pruned while drilled';
  readonly database: string;
  /** The backup drilled (absent when the database has no complete backup). */
  readonly key: string | undefined;
  readonly drilledAt: string;
  /** How the manifest's counts were taken; absent: the manifest has none (version 1 or ROW_COUNTS=off). */
  readonly rowCounts: RowCountMode | undefined;
  readonly tables: readonly DrillTable[];
  /** `schema.table: problem`, for the alert and `list`. */
  readonly failingTables: readonly string[];
  readonly problems: readonly VerifyProblem[];
  readonly warnings: readonly string[];
  readonly requiredTempBytes: number | undefined;
  readonly availableTempBytes: number | undefined;
  /** The restore's own report: SHA-256, TOC, timings per step, restored size. */
  readonly verify: VerifyReport | undefined;
  readonly whatToDo: string | undefined;
}

export interface DrillDeps {
  readonly restore: RestoreDeps;
  /** The newest complete backup of `database` (dump key), or undefined. */
  readonly newestBackup: (database: string) => Promise<string | undefined>;
  readonly readManifest: (dumpKey: string) => Promise<Manifest>;
  /** Writes `<dump key>.verify.json`. */
  readonly writeReport: (dumpKey: string, body: string) => Promise<void>;
  /** Publishes an alert (never throws). */
  readonly alert: (message: Message) => Promise<void>;
  /** Where the drill reports (engine/events.ts): `drill finished` also makes DrillSucceeded/DrillFailed. */
  readonly events: EventSink;
  /** Free bytes in `dir` (default: statfs). */
  readonly freeBytes?: ((dir: string) => number) | undefined;
  readonly now?: (() => Date) | undefined;
}

/**
 * A database is started only with at least this much of the budget left: less is too short to
 * start a server and restore anything, and would only turn a database into a failed one.
 */
export const DRILL_MIN_START_MS = 60_000;

export interface DrillOptions {
  /** In this order (drill-run.ts puts the longest undrilled first). */
  readonly databases: readonly string[];
  /**
   * The time left for drilling, in ms (the invocation's remaining time less its margin): no
   * database is started with less than DRILL_MIN_START_MS left, and one still running when it
   * reaches 0 is stopped and reported failed. Absent: no bound (a host).
   */
  readonly timeLeftMs?: (() => number) | undefined;
  readonly server: ThrowawayServerOptions;
  readonly jobs?: number | undefined;
  /** Free bytes of the temporary folder (default: statfs); tests and the size check's doc use it. */
  readonly freeBytes?: ((dir: string) => number) | undefined;
  /** Lambda's `context.getRemainingTimeInMillis`: the drill stops DRILL_MARGIN_MS (or TIME_MARGIN_SECONDS) before it runs out. */
  readonly remainingTimeMs?: (() => number) | undefined;
}

function statfsFree(dir: string): number {
  const s = statfsSync(dir);
  return Number(s.bavail) * Number(s.bsize);
}

const FAILED_WHAT_TO_DO =
  'Do not count on this backup: check the report (<dump key>.verify.json), then run `pg-s3-backup verify --key <dump key> --local` from a host to see the restore in full. ' +
  'A SHA-256 mismatch means the object changed after the backup (S3 access logs, CloudTrail); a table missing or short means the restore lost data: keep older backups (raise RETENTION_COUNT) until it is understood.';

export interface DrillRun {
  readonly reports: readonly DrillDatabaseReport[];
  /** Not started: the time budget ran out first (alerted; no report written, so the next run starts with them). */
  readonly notReached: readonly string[];
}

/**
 * Drills every database in turn; one database's problem never stops the others. With a time
 * budget, the run stops before it runs out: the databases not reached are named in one alert and
 * an event, and get no report (so their last report stays the oldest and the next run takes them
 * first); the database the budget ran out on is stopped and reported failed (it alerts: it may not
 * fit in one run, and it goes to the back of the next run's order).
 */
export async function runDrill(deps: DrillDeps, options: DrillOptions): Promise<DrillRun> {
  const parentDir = options.server.parentDir ?? tmpdir();
  // A sandbox reused after a run killed at its timeout may still hold that run's server.
  for (const dir of sweepStaleServers(parentDir)) deps.events({ event: 'drill.stale-server-removed', stage: 'drill', dir });
  const reports: DrillDatabaseReport[] = [];
  const budgetAtStart = options.timeLeftMs?.();
  for (const [i, database] of options.databases.entries()) {
    const t0 = Date.now();
    const left = options.timeLeftMs?.();
    if (left !== undefined && left < DRILL_MIN_START_MS) {
      const notReached = options.databases.slice(i);
      deps.events({ event: 'drill.budget-exhausted', stage: 'drill', notReached, budgetMs: budgetAtStart ?? 0 });
      await deps.alert(formatNotReachedAlert(notReached, reports.length, budgetAtStart ?? 0));
      return { reports, notReached };
    }
    const report = left === undefined ? await drillDatabase(deps, options, database, parentDir) : await withinBudget(deps, options, database, parentDir, left);
    reports.push(report);
    if (report.key) {
      await deps.writeReport(report.key, JSON.stringify(report, null, 2)).catch((err: unknown) => {
        deps.events({ event: 'drill.report-failed', stage: 'drill', database, key: report.key, error: (err as Error).message });
      });
    }
    if (report.status !== 'ok') await deps.alert(formatDrillAlert(report));
    // From the start of this database's drill to its report written and its alert sent (DrillDurationMs).
    deps.events({ event: 'drill.finished', stage: 'drill', database, key: report.key, status: report.status, failingTables: report.failingTables, durationMs: Date.now() - t0 });
  }
  return { reports, notReached: [] };
}

/** One database's drill, stopped (download, pg_restore) when `leftMs` runs out: then it failed, saying why. */
async function withinBudget(deps: DrillDeps, options: DrillOptions, database: string, parentDir: string, leftMs: number): Promise<DrillDatabaseReport> {
  // An interruption of the drill (deps.restore.signal) stops it too, with its own reason.
  const budget = new TimeBudget({
    ms: leftMs,
    interrupt: deps.restore.signal,
    expired: (elapsedMs) =>
      new TimeBudgetError(`the drill's time budget ran out while this database was drilled (${Math.round(leftMs / 1000)} s were left when it started)`, { bytesWritten: 0, elapsedMs }, { hint: DOES_NOT_FIT }),
  });
  try {
    const report = await drillDatabase({ ...deps, restore: { ...deps.restore, signal: budget.signal } }, options, database, parentDir);
    if (!budget.expired) return report;
    return {
      ...report,
      status: 'failed',
      problems: [...report.problems.filter((p) => !/abort/i.test(p.message)), { stage: 'drill', message: (budget.signal.reason as Error).message }],
      whatToDo: DOES_NOT_FIT,
    };
  } finally {
    budget.end();
  }
}

const DOES_NOT_FIT =
  'This database does not fit in what is left of one drill run. Give it its own drill (the drill function with {"databases": ["<name>"]}, or a second drill schedule), or drill it from a host: ' +
  '`pg-s3-backup verify --latest --database <name> --local`.';

/** The alert of a run that stopped at its time budget: which databases it did not reach, and what happens next. */
export function formatNotReachedAlert(notReached: readonly string[], drilled: number, budgetMs: number): Message {
  const names = notReached.slice(0, 100).map((d) => `  - ${d}`);
  return {
    subject: subjectText(`${SUBJECT_PREFIX} restore drill stopped at its time budget: ${notReached.length} database(s) not drilled`),
    body: [
      `The restore drill stopped before the function's timeout: ${drilled} database(s) drilled in its ${Math.round(budgetMs / 1000)} s budget, ${notReached.length} not reached:`,
      ...names,
      ...(notReached.length > 100 ? [`  … and ${notReached.length - 100} more`] : []),
      '',
      'The next drill starts with them (databases are drilled oldest report first, never-drilled first of all).',
      'What to do: if this repeats, the databases no longer fit in one 15-minute run: split DATABASES across two drill schedules, or drill the largest from a host (`pg-s3-backup verify --latest --database <name> --local`). A database left undrilled also trips its DrillSucceeded dead-man alarm (when the "databases" context names it).',
    ].join('\n'),
  };
}

/**
 * Backups one database's drill picks at most: each further pick follows a backup deleted while it
 * was drilled (a prune, a newer backup having completed). One more than the picks a backup run
 * can cause; past it the drill is skipped rather than chasing a bucket pruned faster than it drills.
 */
export const DRILL_PICKS = 3;

/**
 * Whether the backup at `key` is gone (its manifest S3 says does not exist): a drill that failed
 * on such a backup says nothing about it, nor about the backups there are.
 */
export async function backupGone(readManifest: (dumpKey: string) => Promise<unknown>, key: string): Promise<boolean> {
  return readManifest(key).then(
    () => false,
    (err: unknown) => err instanceof ManifestGoneError,
  );
}

/**
 * Runs `attempt` (one drill or verify of the newest backup) again while it failed only because
 * its backup vanished under it: a problem marked `gone`, and its manifest gone too. A backup that
 * failed on its own stays failed, pruned since or not. At most DRILL_PICKS attempts, another only
 * while `mayRetry()` allows it; `onGone` hears of each backup found deleted, and whether another
 * attempt follows. `gone`: those backups, the last attempt's too when `gaveUp`.
 */
export async function againWhilePruned<R extends { readonly status: string; readonly key: string | undefined; readonly problems: readonly VerifyProblem[] }>(
  attempt: () => Promise<R>,
  options: {
    readonly readManifest: (dumpKey: string) => Promise<unknown>;
    readonly mayRetry?: () => boolean;
    readonly onGone?: (key: string, again: boolean) => void;
  },
): Promise<{ readonly result: R; readonly gone: readonly string[]; readonly gaveUp: boolean }> {
  const gone: string[] = [];
  for (;;) {
    const result = await attempt();
    const key = result.key;
    const pruned = result.status === 'failed' && key !== undefined && result.problems.some((p) => p.gone) && (await backupGone(options.readManifest, key));
    if (!pruned) return { result, gone, gaveUp: false };
    gone.push(key);
    const again = gone.length < DRILL_PICKS && (options.mayRetry?.() ?? true);
    options.onGone?.(key, again);
    if (!again) return { result, gone, gaveUp: true };
  }
}

/**
 * `verify --latest`: verifies the newest backup (`pick`) and, when that verify failed on a backup
 * deleted meanwhile (a prune running at the same time), the newest then (againWhilePruned). The
 * report is of a backup that was there when it was verified, with the deleted ones named in its
 * warnings: a FAILED (and `--alert`'s FAILED alert) then means the backup is bad.
 */
export async function verifyNewest(
  pick: () => Promise<string>,
  verify: (key: string) => Promise<VerifyReport>,
  readManifest: (dumpKey: string) => Promise<unknown>,
  onGone: (key: string) => void,
): Promise<VerifyReport> {
  const { result, gone, gaveUp } = await againWhilePruned(async () => verify(await pick()), { readManifest, onGone: (key, again) => again && onGone(key) });
  // The last one's own problems say it was deleted when the picks ran out.
  const notes = (gaveUp ? gone.slice(0, -1) : gone).map((k) => `backup ${k} was deleted (by a prune, or by hand) while it was verified: the newest backup was verified instead`);
  return notes.length === 0 ? result : { ...result, warnings: [...notes, ...result.warnings] };
}

/**
 * One database's drill of its newest backup. A drill that failed on a backup deleted meanwhile (a
 * backup run's prune: RETENTION_COUNT=1 and a newer backup completed, or GFS) is no failed drill:
 * the drill picks the newest again and says so in the report's warnings (againWhilePruned); after
 * DRILL_PICKS such picks, or with less than DRILL_MIN_START_MS left for another, it is skipped,
 * with no report (the next drill starts with the database).
 */
async function drillDatabase(deps: DrillDeps, options: DrillOptions, database: string, parentDir: string): Promise<DrillDatabaseReport> {
  let left: number | undefined;
  const { result: report, gone, gaveUp } = await againWhilePruned(() => drillNewest(deps, options, database, parentDir), {
    readManifest: deps.readManifest,
    // Stopped (the budget, a signal): its failure stands. Another pick starts only with the time a database's drill is given to start (as runDrill's).
    mayRetry: () => {
      left = options.timeLeftMs?.();
      return !deps.restore.signal?.aborted && (left === undefined || left >= DRILL_MIN_START_MS);
    },
    onGone: (key, again) =>
      deps.events({ event: 'warning', message: `restore drill of "${database}": backup ${key} was deleted (by a prune, or by hand) while it was drilled; ${again ? 'taking the newest backup again' : 'giving up'}` }),
  });
  // Stopped while drilling a backup deleted under it: the stop is the failure it reports.
  const stopped = gaveUp && deps.restore.signal?.aborted === true;
  if (!gaveUp || stopped) {
    const notes = (stopped ? gone.slice(0, -1) : gone).map((k) => `backup ${k} was deleted (by a prune, or by hand) while it was drilled: the drill took the newest backup again`);
    return notes.length === 0 ? report : { ...report, warnings: [...notes, ...report.warnings] };
  }
  const outOfTime = gone.length < DRILL_PICKS;
  const one = gone.length === 1;
  return {
    ...report,
    status: 'skipped',
    skipReason: 'pruned while drilled',
    key: undefined,
    rowCounts: undefined,
    tables: [],
    failingTables: [],
    problems: [],
    warnings: gone.map((k) => `backup ${k} was deleted (by a prune, or by hand) while it was drilled`),
    requiredTempBytes: undefined,
    availableTempBytes: undefined,
    verify: undefined,
    whatToDo:
      (outOfTime
        ? `The ${one ? 'backup' : `${gone.length} backups`} the drill took ${one ? 'was' : 'were'} deleted before ${one ? 'its' : 'their'} restore was done, and too little of the drill run was left to restore the newest (${Math.round((left ?? 0) / 1000)} s). The drill proved nothing about ${one ? 'it' : 'them'}, good or bad. `
        : `Each of the ${DRILL_PICKS} backups the drill took was deleted before its restore was done: backups complete and are pruned faster than the drill restores one. The drill proved nothing about them, good or bad. `) +
      'Schedule the drill apart from the backups, or keep more than one backup (RETENTION_COUNT, or GFS), so that the one drilled outlives the next backup run.',
  };
}

async function drillNewest(deps: DrillDeps, options: DrillOptions, database: string, parentDir: string): Promise<DrillDatabaseReport> {
  const drilledAt = (deps.now ?? (() => new Date()))().toISOString();
  const base = {
    kind: 'pg-s3-backup restore drill' as const,
    database,
    drilledAt,
    tables: [] as DrillTable[],
    failingTables: [] as string[],
    warnings: [] as string[],
    verify: undefined,
  };
  let key: string | undefined;
  let manifest: Manifest;
  try {
    key = await deps.newestBackup(database);
    if (!key) {
      return { ...base, status: 'failed', key: undefined, rowCounts: undefined, problems: [{ stage: 'drill', message: `no complete backup of "${database}"` }], requiredTempBytes: undefined, availableTempBytes: undefined, whatToDo: 'Check that the backup function runs (its own alarms) and that DATABASES names this database.' };
    }
    manifest = await deps.readManifest(key);
  } catch (err) {
    return { ...base, status: 'failed', key, rowCounts: undefined, problems: [{ ...problemOf('drill', err), stage: 'drill' }], requiredTempBytes: undefined, availableTempBytes: undefined, whatToDo: FAILED_WHAT_TO_DO };
  }
  const rowCounts = manifest.tables ? manifest.rowCounts : undefined;
  const required = requiredTempBytes(manifest);
  const available = (deps.freeBytes ?? statfsFree)(parentDir);
  if (required > available) {
    return {
      ...base,
      status: 'skipped',
      skipReason: 'too large',
      key,
      rowCounts,
      problems: [],
      warnings: [`the drill needs about ${gb(required)} of temporary space (dump ${gb(manifest.bytes)}, restored database, server), the function has ${gb(available)}`],
      requiredTempBytes: required,
      availableTempBytes: available,
      whatToDo:
        'Raise the drill function\'s ephemeral storage (drillEphemeralStorageMiB, up to 10240) if that is enough; otherwise drill this database from a host with the space: ' +
        '`pg-s3-backup verify --latest --database <name> --local --temp-dir <big folder>`, or run it in the container runner (the scale issue).',
    };
  }

  const verify = await verifyOnThrowawayServer(deps.restore, { key, ...(options.jobs === undefined ? {} : { jobs: options.jobs }), server: { ...options.server, parentDir } });
  // verify compared the manifest's tables with the restore (and made each mismatch a problem).
  const problems = [...verify.problems];
  const warnings = [...verify.warnings];
  const tables = [...(verify.tableChecks ?? [])];
  const failingTables = [...(verify.failingTables ?? [])];
  const status = problems.length === 0 ? 'ok' : 'failed';
  return { ...base, status, key, rowCounts, tables, failingTables, problems, warnings, requiredTempBytes: required, availableTempBytes: available, verify, whatToDo: status === 'ok' ? undefined : FAILED_WHAT_TO_DO };
}

function gb(bytes: number): string {
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}

/** The alert of a drill that failed or was skipped: what, which tables, what to do. */
export function formatDrillAlert(r: DrillDatabaseReport): Message {
  const word = r.status === 'skipped' ? `SKIPPED (${r.skipReason ?? 'too large'})` : 'FAILED';
  const lines = [
    `Restore drill ${word} for database "${r.database}".`,
    `Backup: ${r.key ?? '(none)'}`,
    `Drilled at: ${r.drilledAt}`,
    ...(r.failingTables.length ? ['', 'Failing tables:', ...r.failingTables.slice(0, 50).map((t) => `  - ${t}`), ...(r.failingTables.length > 50 ? [`  … and ${r.failingTables.length - 50} more`] : [])] : []),
    ...(r.problems.length ? ['', 'Problems:', ...r.problems.filter((p) => !r.failingTables.includes(p.message)).slice(0, 20).map((p) => `  - (${p.stage}) ${p.message}`)] : []),
    ...(r.warnings.length ? ['', 'Warnings:', ...r.warnings.map((w) => `  - ${w}`)] : []),
    // Restored on the layer's major, not the backup's: errors may be that major's alone.
    ...(r.verify?.versionNote ? ['', `Note: ${r.verify.versionNote}.`] : []),
    ...(r.whatToDo ? ['', `What to do: ${r.whatToDo}`] : []),
    ...(r.key ? ['', `Full report: ${verifyReportKeyFor(r.key)}`] : []),
  ];
  return { subject: subjectText(`${SUBJECT_PREFIX} restore drill ${word}: ${r.database}`), body: lines.join('\n') };
}

/** What the drill function needs beyond the engine's usual pieces. */
export interface DrillRunSettings {
  /** The pg-server layer (default /opt/pg-server). */
  readonly serverLayerRoot?: string | undefined;
  /** Where the dump and the throwaway server go (default: the OS temporary folder, /tmp on Lambda). */
  readonly tempDir?: string | undefined;
  readonly jobs?: number | undefined;
  /** Free bytes of the temporary folder (default: statfs); tests and the size check's doc use it. */
  readonly freeBytes?: ((dir: string) => number) | undefined;
  /** Lambda's `context.getRemainingTimeInMillis`: the drill stops DRILL_MARGIN_MS (or TIME_MARGIN_SECONDS) before it runs out. */
  readonly remainingTimeMs?: (() => number) | undefined;
}
