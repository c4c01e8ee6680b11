/**
 * The backup run: its time budget (run-budget.ts) → credentials → for each database
 * (independently) its backup (database.ts: connect and check versions → pg_dump streamed into the
 * store → manifest) → optional globals → prune the databases that succeeded → alerts and metrics. The Lambda handler, the CLI and host mode all call
 * `runBackup`; it never throws for a database's failure, it reports it (status "failed") after
 * alerting, so each front door decides how to end (the handler throws, the CLI exits 1).
 */
import type { Config } from '../config.ts';
import type { Deps } from '../deps.ts';
import { ConfigError, InterruptedError, PgS3BackupError, PruneError, TimeBudgetError, type Stage } from '../errors.ts';
import { databasesToBackUp } from '../pg/discover.ts';
import { formatFailure, formatSuccess } from '../notify.ts';
import { redact as redactText, type BackupMetrics } from '../observability.ts';
import { toolCommand, toolVersion, type Version } from '../pg/pg-dump.ts';
import { pruneDatabase, pruneGlobals, type LockedBackup } from './retention.ts';
import { createStore } from '../store/create.ts';
import type { BackupStore } from '../store/store.ts';
import type { ResolvedCapabilities } from '../store/capabilities.ts';
import { isCapabilityRefusal } from '../store/probe.ts';
import { randomBytes } from 'node:crypto';
import { fetchCredentials, type DbCredentials } from '../pg/credentials.ts';
import { untilAborted } from '../budget.ts';
import { RunBudget, type StageTracker } from './run-budget.ts';
import { backupDatabase, backupGlobals, type BackupSummary, type DatabaseContext, type GlobalsSummary } from './database.ts';

export type { BackupSummary, GlobalsSummary };

export interface BackupRequest {
  /** Overrides DATABASES for this run. */
  readonly databases?: readonly string[] | undefined;
  /** Recorded in the manifests: `scheduled`, `on-demand`, an operator's words… */
  readonly reason?: string | undefined;
  /** Prune reports what it would delete without deleting; the backups themselves are taken. */
  readonly dryRun?: boolean | undefined;
  /**
   * false: no prune step at all (no retention, no stale-upload abort); the bucket's lifecycle
   * rule still applies. The CLI's `backup --no-prune`. Default true.
   */
  readonly prune?: boolean | undefined;
}

/** Per-invocation facts (the Lambda context; the CLI passes its signal handling). */
export interface Invocation {
  readonly requestId?: string | undefined;
  /** Lambda's `context.getRemainingTimeInMillis`: the run stops TIME_MARGIN_SECONDS before it runs out. */
  readonly remainingTimeMs?: (() => number) | undefined;
  /**
   * Aborted when the run must stop at once (the CLI's SIGTERM/SIGINT); its reason (an
   * InterruptedError) is what the alert reports. pg_dump is stopped and the upload aborted.
   */
  readonly signal?: AbortSignal | undefined;
}

export interface BackupFailure {
  readonly database: string;
  readonly stage: Stage;
  readonly message: string;
  readonly hint: string | undefined;
  /** The dump key attempted, if one was chosen. */
  readonly key: string | undefined;
}

export interface RunResult {
  readonly status: 'succeeded' | 'failed';
  readonly backups: readonly BackupSummary[];
  /** Deleted keys (with dryRun: the keys that would be deleted). */
  readonly pruned: readonly string[];
  readonly failures: readonly BackupFailure[];
  readonly globals?: GlobalsSummary | undefined;
  readonly dryRun: boolean;
}

/** Pseudo database name in alerts when the databases are not known yet (secret or config failed). */
export const ALL_DATABASES = '(all)';

/** Pseudo database name used in alerts about the globals file. */
export const GLOBALS_ALERT_NAME = '(globals)';

export async function runBackup(request: BackupRequest, config: Config, deps: Deps, invocation: Invocation = {}): Promise<RunResult> {
  const runStartedAt = deps.now();
  // One signal for the whole run: the budget or an interruption aborts every AWS call, pg_dump and
  // the upload, wherever the run is; alerts and clean-up then use the unbounded clients.
  const budget = new RunBudget({
    runTimeoutMs: config.runTimeoutMs,
    remainingTimeMs: invocation.remainingTimeMs,
    timeMarginMs: config.timeMarginMs,
    interrupt: invocation.signal,
    start: { database: ALL_DATABASES, stage: 'secret' },
    hint: budgetHint,
  });
  try {
    return await runBounded(request, config, deps, invocation, budget, runStartedAt);
  } finally {
    budget.end();
  }
}

/** What the budget's hint says, by the stage it ended in. */
function budgetHint(stage: Stage, lambda: boolean): string {
  const more = lambda
    ? 'give the function a longer timeout (15 min at most), or run large databases in host mode'
    : 'raise RUN_TIMEOUT_SECONDS if the databases are that large';
  switch (stage) {
    case 'secret':
      return 'Secrets Manager did not answer in time: check the secretsmanager VPC endpoint or NAT, and AWS_*_TIMEOUT_SECONDS.';
    case 'connect':
      return 'The database did not answer in time: check the network path and PG_CONNECT_TIMEOUT.';
    case 'upload':
    case 'manifest':
    case 'prune':
      return `S3 did not answer in time (stage ${stage}): check the S3 VPC endpoint or NAT and S3's health; AWS_*_TIMEOUT_SECONDS bound each request.`;
    default:
      return `Too much work for the time allowed: ${more}, or split DATABASES over several schedules.`;
  }
}

/** What every step of one run shares: its bounded clients and store, where it is, and how it reports. */
interface Run {
  readonly config: Config;
  /** The caller's deps (unbounded: alerts); the run's waits are bounded by `signal`. */
  readonly deps: Deps;
  /** Every request cancelled with the run; the clean-up after a failure is not (it has its own bound). */
  readonly store: BackupStore;
  readonly signal: AbortSignal;
  readonly tracker: StageTracker;
  readonly invocation: Invocation;
  readonly dryRun: boolean;
  /** false: `backup --no-prune`, no prune step (BackupRequest.prune). */
  readonly prune: boolean;
  readonly backups: BackupSummary[];
  readonly failures: BackupFailure[];
  readonly redact: (t: string) => string;
  /** A failure: recorded, its event, its alert. `complete`: the backup is whole, only pruning failed. */
  readonly report: (database: string, err: unknown, stage: Stage, key: string | undefined, startedAt: Date, complete?: { readonly bytes: number }) => Promise<void>;
  /** One database's metrics: the event (EMF lines in Lambda), and PutMetricData where configured. */
  readonly measured: (m: BackupMetrics) => Promise<void>;
}

async function runBounded(request: BackupRequest, config: Config, deps: Deps, invocation: Invocation, budget: RunBudget, runStartedAt: Date): Promise<RunResult> {
  const emit = deps.events;
  const { signal } = budget;
  const dryRun = request.dryRun ?? false;
  let secrets: string[] = [];
  const redact = (t: string) => redactText(t, secrets);
  const failures: BackupFailure[] = [];
  /** After the run was stopped, whatever failed failed because of it: report the reason. */
  const why = (err: unknown): unknown =>
    signal.aborted && !(err instanceof TimeBudgetError) && !(err instanceof InterruptedError) ? signal.reason : err;
  const run: Run = {
    config,
    deps,
    store: createStore(config, deps).bounded(signal),
    signal,
    tracker: budget.tracker,
    invocation,
    dryRun,
    prune: request.prune !== false,
    backups: [],
    failures,
    redact,
    measured: async (m) => {
      emit({ event: 'backup.measured', ...m });
      await deps.publishMetrics?.(m);
    },
    report: async (database, err, stage, key, startedAt, complete) => {
      const error = complete ? pruneFailure(why(err)) : toError(why(err), stage);
      const failure: BackupFailure = {
        database,
        stage: error.stage,
        message: redact(error.message),
        hint: error.hint,
        key,
      };
      failures.push(failure);
      emit({
        event: 'backup.failed',
        database,
        stage: failure.stage,
        key,
        hint: failure.hint,
        requestId: invocation.requestId,
        error: redact(`${error.name}: ${error.message}`),
      });
      const message = formatFailure({
        database,
        stage: error.stage,
        error,
        key,
        bucket: config.bucket,
        requestId: invocation.requestId,
        startedAt,
        failedAt: deps.now(),
        redact,
        ...(complete ? { completeBytes: complete.bytes } : {}),
      });
      await deps.alerts.send({ kind: 'failed', message });
    },
  };
  const { backups } = run;

  emit({ event: 'backup.started', stage: 'config', reason: request.reason ?? 'on-demand', dryRun, requestId: invocation.requestId, bucket: config.bucket, prefix: config.prefix });

  let creds: DbCredentials;
  try {
    creds = await untilAborted(fetchCredentials(config.credentials, deps.secrets, signal), signal);
    secrets = [creds.password];
  } catch (err) {
    for (const db of request.databases ?? config.databases ?? [ALL_DATABASES]) {
      await run.report(db, err, 'secret', undefined, runStartedAt);
      await run.measured({ database: db, succeeded: false, bytes: 0, durationMs: 0 });
    }
    return { status: 'failed', backups, pruned: [], failures, dryRun };
  }

  let databases: readonly string[];
  try {
    databases = await databasesToBackUp(request.databases, config, creds, deps);
  } catch (err) {
    await run.report(ALL_DATABASES, err, 'connect', undefined, runStartedAt);
    return { status: 'failed', backups, pruned: [], failures, dryRun };
  }
  if (databases.length === 0) {
    const err = new ConfigError(config.discover ? `DATABASES=* found no database matching DATABASE_INCLUDE=${config.discover.include.join(',')} DATABASE_EXCLUDE=${config.discover.exclude.join(',')}` : 'no database to back up: set DATABASES, or put "dbname" in the secret (or the database in DATABASE_URL)');
    await run.report(ALL_DATABASES, err, 'config', undefined, runStartedAt);
    return { status: 'failed', backups, pruned: [], failures, dryRun };
  }

  const shared = sharedContext(run, creds, request.reason ?? 'on-demand');
  const notStarted = await backUpDatabases(run, shared, databases);
  if (notStarted.length > 0) await reportNotStarted(run, notStarted, runStartedAt);

  let globals: GlobalsSummary | undefined;
  if (config.backupGlobals && !signal.aborted) {
    const startedAt = deps.now();
    const progress = run.tracker.begin(GLOBALS_ALERT_NAME, 'dump');
    try {
      globals = await backupGlobals({ ...shared, database: databases[0]!, startedAt, progress });
    } catch (err) {
      await run.report(GLOBALS_ALERT_NAME, err, progress.stage, progress.key, startedAt);
    }
  }

  const { pruned, locked } = await prune(run, globals);
  const status = failures.length === 0 ? 'succeeded' : 'failed';
  emit({ event: 'backup.finished', status, backups: backups.length, failures: failures.length, pruned: pruned.length, dryRun });
  if (status === 'succeeded' && config.notifyOnSuccess) {
    await deps.alerts.send({ kind: 'news', message: formatSuccess(backups, pruned, config.bucket, locked) });
  }
  return { status, backups, pruned, failures, globals, dryRun };
}

/** What each database's backup (and the globals') shares within one run. */
function sharedContext(run: Run, creds: DbCredentials, reason: string): Omit<DatabaseContext, 'startedAt' | 'progress'> {
  const { config, deps, store } = run;
  const emit = deps.events;
  let pgDumpVersion: Promise<Version> | undefined;
  // What the store can do (STORAGE_PROFILE, a cached or fresh probe, AWS's by default), found at
  // the first upload of the run (its stage, its time budget): never fails the run, a probe's own
  // failure gives the fallbacks that work on every store.
  const capabilityOptions = { profile: config.storageProfile, maxParts: config.storageMaxParts, onEvent: (message: string, attributes: Record<string, unknown>) => emit({ event: 'store.probe', ...attributes, stage: 'upload', message }) };
  let resolved: Promise<ResolvedCapabilities> | undefined;
  return {
    config,
    deps,
    store,
    creds,
    reason,
    signal: run.signal,
    redact: run.redact,
    dumpVersion: () => (pgDumpVersion ??= toolVersion(deps.spawn, toolCommand('pg_dump', config, deps.pgTools))),
    capabilities: (force = false) => {
      if (!resolved || force) {
        resolved = store.capabilities({ ...capabilityOptions, now: deps.now(), force }).then((c) => {
          emit({ event: 'store.capabilities', stage: 'upload', profile: config.storageProfile ?? '(unset)', source: c.source, conditionalWrites: c.conditionalWrites, checksumSha256: c.checksumSha256, maxParts: c.maxParts });
          return c;
        });
      }
      return resolved;
    },
    /** This run's id: in the keys on a store without conditional writes, where two runs must never pick the same key. */
    runId: randomBytes(4).toString('hex'),
  };
}

/** Each database in turn, each independently; the names of those the run never reached (it was stopped). */
async function backUpDatabases(run: Run, shared: Omit<DatabaseContext, 'startedAt' | 'progress'>, databases: readonly string[]): Promise<string[]> {
  const emit = run.deps.events;
  const notStarted: string[] = [];
  for (const database of databases) {
    if (run.signal.aborted) {
      notStarted.push(database);
      continue;
    }
    const startedAt = run.deps.now();
    const t0 = Date.now();
    const progress = run.tracker.begin(database, 'connect');
    try {
      const attempt = () => backupDatabase(database, { ...shared, startedAt, progress });
      let summary: BackupSummary;
      try {
        summary = await attempt();
      } catch (err) {
        // The store refused a header the probe (or its cache) said it takes: the store changed, or
        // the cache is stale. Probe again at once and take this database once more.
        if ((await shared.capabilities()).source === 'profile' || run.signal.aborted || !isCapabilityRefusal(err)) throw err;
        emit({ event: 'store.feature-refused', stage: 'upload', database, error: run.redact(`${(err as Error).name}: ${(err as Error).message}`) });
        await run.store.forgetCapabilities();
        await shared.capabilities(true);
        progress.key = undefined;
        progress.bytes = 0;
        summary = await attempt();
      }
      run.backups.push(summary);
      await run.measured({ database, succeeded: true, bytes: summary.bytes, durationMs: summary.durationMs });
    } catch (err) {
      await run.report(database, err, progress.stage, progress.key, startedAt);
      await run.measured({ database, succeeded: false, bytes: progress.bytes, durationMs: Date.now() - t0 });
    }
  }
  return notStarted;
}

/** One alert for every database the run never reached: the reason is the same for all. */
async function reportNotStarted(run: Run, notStarted: readonly string[], runStartedAt: Date): Promise<void> {
  const { config, deps, redact } = run;
  const reasonErr = toError(run.signal.reason, 'timeout');
  for (const database of notStarted) {
    run.failures.push({ database, stage: reasonErr.stage, message: redact(`not started: ${reasonErr.message}`), hint: reasonErr.hint, key: undefined });
    await run.measured({ database, succeeded: false, bytes: 0, durationMs: 0 });
  }
  const notStartedErr = new PgS3BackupError(reasonErr.stage, `not started: ${reasonErr.message}`, reasonErr.hint === undefined ? {} : { hint: reasonErr.hint });
  deps.events({ event: 'backup.not-started', databases: notStarted, stage: reasonErr.stage, error: redact(reasonErr.message) });
  const message = formatFailure({ database: notStarted.join(', '), stage: reasonErr.stage, error: notStartedErr, bucket: config.bucket, requestId: run.invocation.requestId, startedAt: runStartedAt, failedAt: deps.now(), redact });
  await deps.alerts.send({ kind: 'failed', message });
}

/**
 * Prunes only the databases whose backup succeeded in this run: a failing database keeps every
 * backup it has until it works again. A stopped run prunes nothing. Then the stale uploads.
 */
async function prune(run: Run, globals: GlobalsSummary | undefined): Promise<{ pruned: string[]; locked: LockedBackup[] }> {
  const { config, deps, store, signal, dryRun } = run;
  const emit = deps.events;
  const pruned: string[] = [];
  /** Backups pruning left in place because Object Lock still holds them (reported in the notice). */
  const locked: LockedBackup[] = [];
  const prune = run.prune && !signal.aborted;
  for (const b of prune ? run.backups : []) {
    run.tracker.enter(b.database, 'prune');
    try {
      // Ages and order come from S3's clock (the listing's Date header, LastModified); this host's
      // clock is only the fallback when S3 sends no Date. What this run just wrote is never pruned,
      // whatever any clock says.
      const res = await pruneDatabase(store, b.database, { retentionCount: config.retentionCount, gfs: config.gfs, now: new Date(), dryRun, events: emit, protect: new Set([b.key]) });
      pruned.push(...res.deleted);
      locked.push(...res.locked);
    } catch (err) {
      // The key of the complete backup: the alert must say it exists, not that nothing was written,
      // whatever stage the error names (a manifest GET fails as ManifestError, stage "manifest").
      await run.report(b.database, err, 'prune', b.key, deps.now(), b);
    }
  }
  if (globals && prune && !signal.aborted) {
    try {
      const res = await pruneGlobals(store, { retentionCount: config.retentionCount, gfs: config.gfs, dryRun, events: emit, protect: new Set([globals.key]) });
      pruned.push(...res.deleted);
      locked.push(...res.locked);
    } catch (err) {
      await run.report(GLOBALS_ALERT_NAME, err, 'prune', globals.key, deps.now(), globals);
    }
  }
  // Multipart uploads a killed run left under the prefix (SIGKILL, a Lambda timeout) keep their
  // parts, billed and invisible: aborted here once older than STALE_UPLOAD_AGE_SECONDS, as prune
  // does. A failure costs only the parts (the lifecycle rule is the backstop): a warning, not a failed backup.
  if (prune && !signal.aborted) {
    await store.sweepStaleUploads({ minAgeMs: config.staleUploadAgeMs, dryRun, events: emit }).catch((err: unknown) => {
      emit({ event: 'warning', message: run.redact((err as Error).message) });
    });
  }
  return { pruned, locked };
}

/** Any error as a PgS3BackupError of the stage it happened in (keeping the original as cause). */
function toError(err: unknown, stage: Stage): PgS3BackupError {
  if (err instanceof PgS3BackupError) return err;
  const e = err instanceof Error ? err : new Error(String(err));
  return new PgS3BackupError(stage, `${e.name}: ${e.message}`, { cause: e });
}

/**
 * An error of the prune step after a complete backup, as a PruneError (stage "prune") that keeps
 * the original's message, hint and cause: the manifest reads of retention fail as ManifestError
 * (stage "manifest"), the time budget as TimeBudgetError, and the alert must not read as if the
 * backup itself had failed at that stage.
 */
function pruneFailure(err: unknown): PgS3BackupError {
  if (err instanceof PgS3BackupError && err.stage === 'prune') return err;
  const e = err instanceof Error ? err : new Error(String(err));
  const hint = err instanceof PgS3BackupError ? err.hint : undefined;
  return new PruneError(`pruning the older backups failed: ${e instanceof PgS3BackupError ? e.message : `${e.name}: ${e.message}`}`, {
    cause: e,
    hint: hint ?? 'Run `pg-s3-backup prune` once S3 answers again, or let the next run prune.',
  });
}
