/**
 * The backup pipeline: one run = credentials → for each database (independently) connect and
 * check versions → pg_dump streamed into S3 → manifest → optional globals → prune the databases
 * that succeeded → alerts and metrics. The Lambda handler, the CLI and host mode all call
 * `runBackup`; it never throws for a database's failure, it reports it (status "failed") after
 * alerting, so each front door decides how to end (the handler throws, the CLI exits 1).
 */
import { buildGlobalsKey } from '../store/backup-key.ts';
import type { Config } from '../config.ts';
import type { Deps } from '../deps.ts';
import { ConfigError, InterruptedError, PgS3BackupError, PruneError, TimeBudgetError, type Stage } from '../errors.ts';
import { ENCRYPTED_MANIFEST_FORMAT_VERSION, MANIFEST_FORMAT_VERSION, type Manifest } from '../store/manifest.ts';
import { ENCRYPTION_FORMAT, recipientFingerprint } from '../encryption.ts';
import { selectDatabases } from '../pg/discover.ts';
import { withDumpSnapshot } from './row-counts.ts';
import { formatFailure, formatSuccess, publish } from '../notify.ts';
import { redact as redactText, throughput, type BackupMetrics } from '../observability.ts';
import { connectionFor } from '../pg/connection.ts';
import { libpqEnv } from '../pg/env.ts';
import { checkServerVersion, pgDumpallGlobalsArgs, pgDumpArgs, toolCommand, toolVersion, type Version } from '../pg/pg-dump.ts';
import { openDirectChannel, startTool, startToolDirect, type RunningTool } from '../pg/process.ts';
import { prepareTls } from '../pg/tls.ts';
import { pruneDatabase, pruneGlobals, type LockedBackup } from './retention.ts';
import { abortStaleUploads } from './stale-uploads.ts';
import { confirmSoleObject, putManifest, reserveDumpKey, type S3Store } from '../store/s3-store.ts';
import type { ResolvedCapabilities } from '../store/capabilities.ts';
import { forgetCachedProbe, isCapabilityRefusal, resolveCapabilities } from '../store/probe.ts';
import { randomBytes } from 'node:crypto';
import { fetchCredentials, type DbCredentials } from '../secrets.ts';
import { choosePartSize, DEFAULT_CLEANUP_TIMEOUT_MS, MIN_STREAM_PART_SIZE, streamToS3, type StreamUploadOptions } from './stream-upload.ts';
import { TOOL_VERSION } from '../version.ts';
import { DeleteObjectCommand, type S3Client } from '@aws-sdk/client-s3';

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

export interface BackupSummary {
  readonly database: string;
  readonly key: string;
  /** As stored: for an encrypted backup, the age file's. */
  readonly bytes: number;
  readonly sha256: string;
  readonly durationMs: number;
  /** Encrypted with age (ENCRYPT_RECIPIENTS). */
  readonly encrypted?: boolean;
}

export interface BackupFailure {
  readonly database: string;
  readonly stage: Stage;
  readonly message: string;
  readonly hint: string | undefined;
  /** The dump key attempted, if one was chosen. */
  readonly key: string | undefined;
}

export interface GlobalsSummary {
  readonly key: string;
  readonly bytes: number;
  readonly sha256: string;
  /** Encrypted with age: the key ends with `.sql.age`. */
  readonly encrypted?: boolean;
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

export function storeFor(config: Pick<Config, 'bucket' | 'prefix'>, deps: Pick<Deps, 's3'>): S3Store {
  return { s3: deps.s3, bucket: config.bucket, prefix: config.prefix };
}

/**
 * An AWS client whose every call is cancelled when `signal` fires: the run's time budget and its
 * interruption reach every stage (secret, key check, upload, manifest, prune) this way.
 */
export function boundedClient<C extends { send: (...args: never[]) => Promise<unknown> }>(client: C, signal: AbortSignal): C {
  return new Proxy(client, {
    get(target, prop, receiver) {
      if (prop !== 'send') return Reflect.get(target, prop, receiver) as unknown;
      return (command: unknown, options?: { abortSignal?: AbortSignal }) => {
        const abortSignal = options?.abortSignal ? AbortSignal.any([signal, options.abortSignal]) : signal;
        return (target.send as (c: unknown, o: unknown) => Promise<unknown>)(command, { ...options, abortSignal });
      };
    },
  });
}

/** Resolves or rejects with `work`, or rejects with the signal's reason as soon as it fires. */
export function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e as Error);
      },
    );
  });
}

/** The bound of the clean-up after a failed upload: it must fit in the Lambda's margin with an alert. */
function cleanupTimeoutMs(config: Config): number {
  return Math.min(DEFAULT_CLEANUP_TIMEOUT_MS, 3 * config.aws.requestTimeoutMs);
}

export async function runBackup(request: BackupRequest, config: Config, deps: Deps, invocation: Invocation = {}): Promise<RunResult> {
  const runStartedAt = deps.now();
  const t0 = Date.now();
  const remaining = invocation.remainingTimeMs?.();
  const lambdaBudget = remaining === undefined ? Infinity : remaining - config.timeMarginMs;
  const budgetMs = Math.min(config.runTimeoutMs, lambdaBudget);
  const budgetName = lambdaBudget <= config.runTimeoutMs
    ? `the invocation's remaining time less TIME_MARGIN_SECONDS (${Math.round(config.timeMarginMs / 1000)} s)`
    : `RUN_TIMEOUT_SECONDS (${Math.round(config.runTimeoutMs / 1000)} s)`;
  /** Where the run is, for the budget's message. */
  const current: { database: string; stage: Stage } = { database: ALL_DATABASES, stage: 'secret' };
  // One signal for the whole run: the budget or an interruption aborts every AWS call, pg_dump and
  // the upload, wherever the run is; alerts and clean-up then use the unbounded clients.
  const run = new AbortController();
  const budgetTimer = setTimeout(() => {
    run.abort(new TimeBudgetError(`time budget exhausted after ${Math.round((Date.now() - t0) / 1000)} s, at stage "${current.stage}" of database ${JSON.stringify(current.database)} (${budgetName})`, { bytesWritten: 0, elapsedMs: Date.now() - t0 }, {
      hint: budgetHint(current.stage, lambdaBudget <= config.runTimeoutMs),
    }));
  }, Math.max(0, budgetMs));
  const onInterrupt = () => run.abort(invocation.signal?.reason);
  if (invocation.signal?.aborted) onInterrupt();
  else invocation.signal?.addEventListener('abort', onInterrupt, { once: true });
  try {
    return await runBounded(request, config, deps, invocation, { signal: run.signal, current, runStartedAt });
  } finally {
    clearTimeout(budgetTimer);
    invocation.signal?.removeEventListener('abort', onInterrupt);
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

interface RunScope {
  readonly signal: AbortSignal;
  readonly current: { database: string; stage: Stage };
  readonly runStartedAt: Date;
}

async function runBounded(request: BackupRequest, config: Config, deps: Deps, invocation: Invocation, scope: RunScope): Promise<RunResult> {
  const emit = deps.events;
  const { signal, current, runStartedAt } = scope;
  /** One database's metrics: the event (EMF lines in Lambda), and PutMetricData where configured. */
  const measured = async (m: BackupMetrics) => {
    emit({ event: 'backup measured', ...m });
    await deps.publishMetrics?.(m);
  };
  const bounded: Deps = { ...deps, s3: boundedClient(deps.s3, signal), secrets: boundedClient(deps.secrets, signal) };
  const store = storeFor(config, bounded);
  const reason = request.reason ?? 'on-demand';
  const dryRun = request.dryRun ?? false;
  const backups: BackupSummary[] = [];
  const failures: BackupFailure[] = [];
  let secrets: string[] = [];
  const redact = (t: string) => redactText(t, secrets);

  /** After the run was stopped, whatever failed failed because of it: report the reason. */
  const why = (err: unknown): unknown =>
    signal.aborted && !(err instanceof TimeBudgetError) && !(err instanceof InterruptedError) ? signal.reason : err;
  /** `complete`: the backup this run wrote is whole, only a later step (pruning) failed. */
  const report = async (database: string, err: unknown, stage: Stage, key: string | undefined, startedAt: Date, complete?: { readonly bytes: number }) => {
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
      event: 'backup failed',
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
    await publish(deps.sns, config.alertTopicArn, message, emit, config.alertTimeoutMs);
  };

  emit({ event: 'run started', stage: 'config', reason, dryRun, requestId: invocation.requestId, bucket: config.bucket, prefix: config.prefix });

  let creds: DbCredentials;
  try {
    creds = await untilAborted(fetchCredentials(config.credentials, bounded.secrets), signal);
    secrets = [creds.password];
  } catch (err) {
    for (const db of request.databases ?? config.databases ?? [ALL_DATABASES]) {
      await report(db, err, 'secret', undefined, runStartedAt);
      await measured({ database: db, succeeded: false, bytes: 0, durationMs: 0 });
    }
    return { status: 'failed', backups, pruned: [], failures, dryRun };
  }

  let databases: readonly string[];
  try {
    databases = await databasesToBackUp(request, config, creds, deps);
  } catch (err) {
    await report(ALL_DATABASES, err, 'connect', undefined, runStartedAt);
    return { status: 'failed', backups, pruned: [], failures, dryRun };
  }
  if (databases.length === 0) {
    const err = new ConfigError(config.discover ? `DATABASES=* found no database matching DATABASE_INCLUDE=${config.discover.include.join(',')} DATABASE_EXCLUDE=${config.discover.exclude.join(',')}` : 'no database to back up: set DATABASES, or put "dbname" in the secret (or the database in DATABASE_URL)');
    await report(ALL_DATABASES, err, 'config', undefined, runStartedAt);
    return { status: 'failed', backups, pruned: [], failures, dryRun };
  }

  let pgDumpVersion: Promise<Version> | undefined;
  const dumpVersion = () => (pgDumpVersion ??= toolVersion(deps.spawn, toolCommand('pg_dump', config, deps.pgTools)));

  // What the store can do (STORAGE_PROFILE, a cached or fresh probe, AWS's by default), found at
  // the first upload of the run (its stage, its time budget): never fails the run, a probe's own
  // failure gives the fallbacks that work on every store.
  const capabilityOptions = { profile: config.storageProfile, maxParts: config.storageMaxParts, onEvent: (message: string, attributes: Record<string, unknown>) => emit({ event: 'store probe', ...attributes, stage: 'upload', message }) };
  let resolved: Promise<ResolvedCapabilities> | undefined;
  const capabilities = (force = false): Promise<ResolvedCapabilities> => {
    if (!resolved || force) {
      resolved = resolveCapabilities(store, { ...capabilityOptions, now: deps.now(), force }).then((c) => {
        emit({ event: 'store capabilities', stage: 'upload', profile: config.storageProfile ?? '(unset)', source: c.source, conditionalWrites: c.conditionalWrites, checksumSha256: c.checksumSha256, maxParts: c.maxParts });
        return c;
      });
    }
    return resolved;
  };
  /** This run's id: in the keys on a store without conditional writes, where two runs must never pick the same key. */
  const runId = randomBytes(4).toString('hex');

  const notStarted: string[] = [];
  for (const database of databases) {
    if (signal.aborted) {
      notStarted.push(database);
      continue;
    }
    const startedAt = deps.now();
    const t0 = Date.now();
    current.database = database;
    const progress: { stage: Stage; key: string | undefined; bytes: number } = trackStage({ stage: 'connect', key: undefined, bytes: 0 }, current);
    try {
      const attempt = () => backupDatabase(database, { config, deps: bounded, cleanupS3: deps.s3, store, creds, reason, signal, startedAt, dumpVersion, redact, progress, capabilities, runId });
      let summary: BackupSummary;
      try {
        summary = await attempt();
      } catch (err) {
        // The store refused a header the probe (or its cache) said it takes: the store changed, or
        // the cache is stale. Probe again at once and take this database once more.
        if ((await capabilities()).source === 'profile' || signal.aborted || !isCapabilityRefusal(err)) throw err;
        emit({ event: 'the store refused a feature the engine assumed it has: probing the store, then taking the database again', stage: 'upload', database, error: redact(`${(err as Error).name}: ${(err as Error).message}`) });
        await forgetCachedProbe(store);
        await capabilities(true);
        progress.key = undefined;
        progress.bytes = 0;
        summary = await attempt();
      }
      backups.push(summary);
      await measured({ database, succeeded: true, bytes: summary.bytes, durationMs: summary.durationMs });
    } catch (err) {
      await report(database, err, progress.stage, progress.key, startedAt);
      await measured({ database, succeeded: false, bytes: progress.bytes, durationMs: Date.now() - t0 });
    }
  }

  if (notStarted.length > 0) {
    // One alert for every database the run never reached: the reason is the same for all.
    const reasonErr = toError(signal.reason, 'timeout');
    for (const database of notStarted) {
      failures.push({ database, stage: reasonErr.stage, message: redact(`not started: ${reasonErr.message}`), hint: reasonErr.hint, key: undefined });
      await measured({ database, succeeded: false, bytes: 0, durationMs: 0 });
    }
    const notStartedErr = new PgS3BackupError(reasonErr.stage, `not started: ${reasonErr.message}`, reasonErr.hint === undefined ? {} : { hint: reasonErr.hint });
    emit({ event: 'backup not started', databases: notStarted, stage: reasonErr.stage, error: redact(reasonErr.message) });
    const message = formatFailure({ database: notStarted.join(', '), stage: reasonErr.stage, error: notStartedErr, bucket: config.bucket, requestId: invocation.requestId, startedAt: runStartedAt, failedAt: deps.now(), redact });
    await publish(deps.sns, config.alertTopicArn, message, emit, config.alertTimeoutMs);
  }

  let globals: GlobalsSummary | undefined;
  if (config.backupGlobals && !signal.aborted) {
    const startedAt = deps.now();
    current.database = GLOBALS_ALERT_NAME;
    const progress: { stage: Stage; key: string | undefined } = trackStage({ stage: 'dump', key: undefined }, current);
    try {
      globals = await backupGlobals({ config, deps: bounded, cleanupS3: deps.s3, store, creds, database: databases[0]!, signal, startedAt, redact, progress, capabilities });
    } catch (err) {
      await report(GLOBALS_ALERT_NAME, err, progress.stage, progress.key, startedAt);
    }
  }

  // Prune only the databases whose backup succeeded in this run: a failing database keeps
  // every backup it has until it works again. A stopped run prunes nothing.
  const pruned: string[] = [];
  /** Backups pruning left in place because Object Lock still holds them (reported in the notice). */
  const locked: LockedBackup[] = [];
  const prune = request.prune !== false && !signal.aborted;
  for (const b of prune ? backups : []) {
    current.database = b.database;
    current.stage = 'prune';
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
      await report(b.database, err, 'prune', b.key, deps.now(), b);
    }
  }
  if (globals && prune && !signal.aborted) {
    try {
      const res = await pruneGlobals(store, { retentionCount: config.retentionCount, gfs: config.gfs, dryRun, events: emit, protect: new Set([globals.key]) });
      pruned.push(...res.deleted);
      locked.push(...res.locked);
    } catch (err) {
      await report(GLOBALS_ALERT_NAME, err, 'prune', globals.key, deps.now(), globals);
    }
  }
  // Multipart uploads a killed run left under the prefix (SIGKILL, a Lambda timeout) keep their
  // parts, billed and invisible: aborted here once older than STALE_UPLOAD_AGE_SECONDS, as prune
  // does. A failure costs only the parts (the lifecycle rule is the backstop): a warning, not a failed backup.
  if (prune && !signal.aborted) {
    await abortStaleUploads(store, { minAgeMs: config.staleUploadAgeMs, dryRun, events: emit }).catch((err: unknown) => {
      emit({ event: 'warning', message: redact((err as Error).message) });
    });
  }
  const status = failures.length === 0 ? 'succeeded' : 'failed';
  emit({ event: 'run finished', status, backups: backups.length, failures: failures.length, pruned: pruned.length, dryRun });
  if (status === 'succeeded' && config.notifyOnSuccess) {
    await publish(deps.sns, config.alertTopicArn, formatSuccess(backups, pruned, config.bucket, locked), emit, config.alertTimeoutMs);
  }
  return { status, backups, pruned, failures, globals, dryRun };
}

/** The stage as it moves, mirrored into the run's `current` (the budget's message names it). */
function trackStage<P extends { stage: Stage }>(progress: P, current: { stage: Stage }): P {
  current.stage = progress.stage;
  return new Proxy(progress, {
    set(target, prop, value, receiver) {
      if (prop === 'stage') current.stage = value as Stage;
      return Reflect.set(target, prop, value, receiver);
    },
  });
}

interface DatabaseContext {
  readonly config: Config;
  /** AWS clients bounded by the run's signal. */
  readonly deps: Deps;
  /** The unbounded S3 client, for the clean-up after a failure (the run's signal may have fired). */
  readonly cleanupS3: S3Client;
  readonly store: S3Store;
  readonly creds: DbCredentials;
  readonly reason: string;
  readonly signal: AbortSignal;
  readonly startedAt: Date;
  readonly dumpVersion: () => Promise<Version>;
  readonly redact: (t: string) => string;
  /** Updated as the backup moves on, so that a failure reports the right stage and key. */
  readonly progress: { stage: Stage; key: string | undefined; bytes: number };
  /** What the store can do (STORAGE_PROFILE, the probe, or AWS's by default). */
  readonly capabilities: () => Promise<ResolvedCapabilities>;
  /** This run's id, in the key when the store has no conditional writes. */
  readonly runId: string;
}

async function backupDatabase(database: string, ctx: DatabaseContext): Promise<BackupSummary> {
  const { config, deps, store, progress } = ctx;
  const emit = deps.events;
  const t0 = Date.now();
  throwIfAborted(ctx.signal);
  const conn = connectionFor(ctx.creds, database, config);
  prepareTls(conn);
  emit({ event: 'connecting', stage: 'connect', database, host: conn.host, port: conn.port, sslmode: conn.sslmode });
  progress.stage = 'dump';
  const pgDump = await untilAborted(ctx.dumpVersion(), ctx.signal);
  progress.stage = 'connect';
  const server = await untilAborted(deps.serverInfo(conn), ctx.signal);
  checkServerVersion(server, pgDump);

  progress.stage = 'upload';
  const caps = await untilAborted(ctx.capabilities(), ctx.signal);
  const { key, release } = await reserveDumpKey(store, database, ctx.startedAt, caps.conditionalWrites ? undefined : ctx.runId);
  progress.key = key;
  try {
    progress.stage = 'dump';
    emit({ event: 'dump started', stage: 'dump', database, key, serverVersion: server.text, pgDumpVersion: pgDump.text, compression: config.compression, databaseBytes: server.databaseBytes });
    throwIfAborted(ctx.signal);
    // pg_dump in a snapshot exported by a connection that counts the rows in that same snapshot
    // (ROW_COUNTS): the manifest then says exactly what the dump holds.
    // pg_dump's stdout read straight into the upload's part buffers (engine/pg/direct-output.ts).
    // The channel is opened first: pg_dump then starts at once in the snapshot, before the counts.
    const stdout = await openDirectChannel();
    const { result, counts } = await withDumpSnapshot(conn, config.rowCounts, (snapshot) => {
      const tool = startTool(deps.spawn, toolCommand('pg_dump', config, deps.pgTools), [...pgDumpArgs(config.compression, config.lockWaitTimeoutSeconds), ...(snapshot ? [`--snapshot=${snapshot}`] : [])], {
        env: libpqEnv(conn),
        redact: ctx.redact,
        stdout,
      });
      return uploadToolOutput(deps, { ...ctx, capabilities: caps }, store, key, tool, {
        partSize: choosePartSize(deps.partSize, server.databaseBytes, caps),
        onProgress: (b) => {
          progress.bytes = b;
          emit({ event: 'dump', database, key, bytes: b });
        },
      });
    }, { lockTimeoutSeconds: config.lockWaitTimeoutSeconds }).finally(() => {
      // Not used when the dump never started; closing a used one again does nothing.
      stdout?.childEnd.destroy();
      stdout?.output.destroy();
    });
    for (const warning of counts.warnings) emit({ event: 'row counts', stage: 'dump', database, key, warning });
    progress.bytes = result.bytes;
    // Written without If-None-Match: the key must hold exactly what this run wrote.
    if (!caps.conditionalWrites) await confirmSoleObject(store, key, { bytes: result.bytes, etag: result.etag });
    const finishedAt = deps.now();
    const durationMs = Date.now() - t0;
    emit({ event: 'dump uploaded', stage: 'upload', database, key, bytes: result.bytes, sha256: result.sha256, durationMs, bytesPerSecond: throughput(result.bytes, durationMs) });

    progress.stage = 'manifest';
    const recipients = config.encryptRecipients;
    const manifest: Manifest = {
      formatVersion: result.plaintext ? ENCRYPTED_MANIFEST_FORMAT_VERSION : MANIFEST_FORMAT_VERSION,
      database,
      key,
      bytes: result.bytes,
      sha256: result.sha256,
      ...(result.plaintext && recipients
        ? {
            encryption: { format: ENCRYPTION_FORMAT, recipients: recipients.map(recipientFingerprint) },
            plaintextBytes: result.plaintext.bytes,
            plaintextSha256: result.plaintext.sha256,
          }
        : {}),
      compression: config.compression,
      pgDumpVersion: pgDump.text,
      serverVersion: server.text,
      startedAt: ctx.startedAt.toISOString(),
      finishedAt: finishedAt.toISOString(),
      durationMs,
      reason: ctx.reason,
      runner: config.runningOn,
      toolVersion: TOOL_VERSION,
      rowCounts: counts.tables ? counts.mode : 'off',
      ...(counts.tables ? { tables: [...counts.tables] } : {}),
    };
    try {
      await putManifest(store, manifest, caps);
    } catch (err) {
      // Without its manifest the dump is not a backup: remove it now rather than leave an orphan
      // (through the unbounded client: the budget may be what failed the manifest).
      const deleted = await ctx.cleanupS3
        .send(new DeleteObjectCommand({ Bucket: store.bucket, Key: key }), { abortSignal: AbortSignal.timeout(cleanupTimeoutMs(config)) })
        .then(() => undefined, (e: unknown) => `${(e as Error).name}: ${(e as Error).message}`);
      if (deleted !== undefined && err instanceof PgS3BackupError) err.leftover = { objectKey: key, reason: deleted };
      throw err;
    }
    emit({ event: 'backup complete', stage: 'manifest', database, key, bytes: result.bytes, sha256: result.sha256, durationMs });
    return { database, key, bytes: result.bytes, sha256: result.sha256, durationMs, ...(result.plaintext ? { encrypted: true } : {}) };
  } finally {
    release();
  }
}

/** Throws the run's reason (time budget, interruption) if it has been stopped. */
function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) throw signal.reason as Error;
}

interface GlobalsContext {
  readonly config: Config;
  readonly deps: Deps;
  readonly cleanupS3: S3Client;
  readonly store: S3Store;
  readonly creds: DbCredentials;
  /** The database pg_dumpall connects to. */
  readonly database: string;
  readonly signal: AbortSignal;
  readonly startedAt: Date;
  readonly redact: (t: string) => string;
  readonly progress: { stage: Stage; key: string | undefined };
  readonly capabilities: () => Promise<ResolvedCapabilities>;
}

async function backupGlobals(ctx: GlobalsContext): Promise<GlobalsSummary> {
  const { config, deps, store } = ctx;
  throwIfAborted(ctx.signal);
  const conn = connectionFor(ctx.creds, ctx.database, config);
  prepareTls(conn);
  const encrypted = (config.encryptRecipients?.length ?? 0) > 0;
  // The globals have no manifest: the `.age` suffix is what says they are encrypted.
  const key = buildGlobalsKey(store.prefix, ctx.startedAt, { encrypted });
  ctx.progress.key = key;
  const caps = await untilAborted(ctx.capabilities(), ctx.signal);
  const tool = await startToolDirect(deps.spawn, toolCommand('pg_dumpall', config, deps.pgTools), [...pgDumpallGlobalsArgs(), `--database=${ctx.database}`], { env: libpqEnv(conn), redact: ctx.redact, tool: 'pg_dumpall' });
  const result = await uploadToolOutput(deps, { ...ctx, capabilities: caps }, store, key, tool, {
    // Roles and tablespaces: kilobytes.
    partSize: deps.partSize ?? MIN_STREAM_PART_SIZE,
    contentType: encrypted ? 'application/octet-stream' : 'application/sql',
    checkMagic: false,
    toolName: 'pg_dumpall',
  });
  if (!caps.conditionalWrites) await confirmSoleObject(store, key, { bytes: result.bytes, etag: result.etag });
  deps.events({ event: 'globals uploaded', stage: 'upload', key, bytes: result.bytes, sha256: result.sha256, encrypted });
  return { key, bytes: result.bytes, sha256: result.sha256, ...(encrypted ? { encrypted } : {}) };
}

/** A tool's stdout streamed to `key`, with the part size and queue the deps set, bounded by the run's signal and the stall watchdog. */
function uploadToolOutput(
  deps: Deps,
  ctx: { readonly config: Config; readonly signal: AbortSignal; readonly cleanupS3: S3Client; readonly capabilities: ResolvedCapabilities },
  store: S3Store,
  key: string,
  tool: RunningTool,
  extra: Pick<StreamUploadOptions, 'partSize' | 'onProgress' | 'contentType' | 'checkMagic' | 'toolName'>,
): ReturnType<typeof streamToS3> {
  return streamToS3({
    s3: deps.s3,
    cleanupS3: ctx.cleanupS3,
    cleanupTimeoutMs: cleanupTimeoutMs(ctx.config),
    bucket: store.bucket,
    key,
    tool,
    queueSize: deps.queueSize,
    signal: ctx.signal,
    stallMs: ctx.config.dumpStallMs,
    onNotice: (message, attributes) => deps.events({ event: 'upload notice', ...attributes, stage: 'upload', message }),
    maxParts: ctx.capabilities.maxParts,
    conditional: ctx.capabilities.conditionalWrites,
    ...(ctx.capabilities.checksumSha256 ? {} : { partChecksum: 'none' as const }),
    encryptTo: ctx.config.encryptRecipients,
    ...extra,
  });
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

/**
 * The databases of this run: the request's, else DATABASES, else (DATABASES=*) the server's list
 * filtered by the patterns, else the secret's own database.
 */
export async function databasesToBackUp(
  request: Pick<BackupRequest, 'databases'>,
  config: Pick<Config, 'databases' | 'discover' | 'sslMode' | 'sslRootCert' | 'rdsCaBundle' | 'inLambda' | 'connectTimeoutSeconds'>,
  creds: DbCredentials,
  deps: Pick<Deps, 'listDatabases'>,
): Promise<readonly string[]> {
  if (request.databases) return request.databases;
  if (config.databases) return config.databases;
  if (config.discover) {
    // The maintenance database every PostgreSQL (and RDS) has, unless the secret names another.
    const names = await deps.listDatabases(connectionFor(creds, creds.dbname ?? 'postgres', config));
    return selectDatabases(names, config.discover);
  }
  return creds.dbname ? [creds.dbname] : [];
}
