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
import { ConfigError, PgS3BackupError, TimeBudgetError, type Stage } from '../errors.ts';
import { MANIFEST_FORMAT_VERSION, type Manifest } from '../store/manifest.ts';
import { selectDatabases } from '../pg/discover.ts';
import { withDumpSnapshot } from './row-counts.ts';
import { formatFailure, formatSuccess, publish } from '../notify.ts';
import { redact as redactText, throughput } from '../observability.ts';
import { connectionFor } from '../pg/connection.ts';
import { libpqEnv } from '../pg/env.ts';
import { checkServerVersion, pgDumpallGlobalsArgs, pgDumpArgs, toolCommand, toolVersion, type Version } from '../pg/pg-dump.ts';
import { startTool, type RunningTool } from '../pg/process.ts';
import { prepareTls } from '../pg/tls.ts';
import { pruneDatabase, pruneGlobals } from './retention.ts';
import { putManifest, reserveDumpKey, type S3Store } from '../store/s3-store.ts';
import { fetchCredentials, type DbCredentials } from '../secrets.ts';
import { MIN_STREAM_PART_SIZE, partSizeForDatabase, streamToS3, type StreamUploadOptions } from './stream-upload.ts';
import { TOOL_VERSION } from '../version.ts';
import { DeleteObjectCommand } from '@aws-sdk/client-s3';

export interface BackupRequest {
  /** Overrides DATABASES for this run. */
  readonly databases?: readonly string[] | undefined;
  /** Recorded in the manifests: `scheduled`, `on-demand`, an operator's words… */
  readonly reason?: string | undefined;
  /** Prune reports what it would delete without deleting; the backups themselves are taken. */
  readonly dryRun?: boolean | undefined;
}

/** Per-invocation facts (the Lambda context; the CLI passes nothing). */
export interface Invocation {
  readonly requestId?: string | undefined;
  /** Lambda's `context.getRemainingTimeInMillis`: the dump stops TIME_MARGIN_SECONDS before it runs out. */
  readonly remainingTimeMs?: (() => number) | undefined;
}

export interface BackupSummary {
  readonly database: string;
  readonly key: string;
  readonly bytes: number;
  readonly sha256: string;
  readonly durationMs: number;
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

export async function runBackup(request: BackupRequest, config: Config, deps: Deps, invocation: Invocation = {}): Promise<RunResult> {
  const log = deps.log;
  const runStartedAt = deps.now();
  const remaining = invocation.remainingTimeMs?.();
  const deadline = remaining === undefined ? undefined : Date.now() + remaining - config.timeMarginMs;
  const store = storeFor(config, deps);
  const reason = request.reason ?? 'on-demand';
  const dryRun = request.dryRun ?? false;
  const backups: BackupSummary[] = [];
  const failures: BackupFailure[] = [];
  let secrets: string[] = [];
  const redact = (t: string) => redactText(t, secrets);

  const report = async (database: string, err: unknown, stage: Stage, key: string | undefined, startedAt: Date) => {
    const error = toError(err, stage);
    const failure: BackupFailure = {
      database,
      stage: error.stage,
      message: redact(error.message),
      hint: error.hint,
      key,
    };
    failures.push(failure);
    log.error('backup failed', {
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
    });
    await publish(deps.sns, config.alertTopicArn, message, log);
  };

  log.info('run started', { stage: 'config', reason, dryRun, requestId: invocation.requestId, bucket: config.bucket, prefix: config.prefix });

  let creds: DbCredentials;
  try {
    creds = await fetchCredentials(config.credentials, deps.secrets);
    secrets = [creds.password];
  } catch (err) {
    for (const db of request.databases ?? config.databases ?? [ALL_DATABASES]) {
      await report(db, err, 'secret', undefined, runStartedAt);
      deps.metrics.backupFinished({ database: db, succeeded: false, bytes: 0, durationMs: 0 });
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

  for (const database of databases) {
    const startedAt = deps.now();
    const t0 = Date.now();
    const progress: { stage: Stage; key: string | undefined; bytes: number } = { stage: 'connect', key: undefined, bytes: 0 };
    try {
      const summary = await backupDatabase(database, { config, deps, store, creds, reason, deadline, startedAt, dumpVersion, redact, progress });
      backups.push(summary);
      deps.metrics.backupFinished({ database, succeeded: true, bytes: summary.bytes, durationMs: summary.durationMs });
    } catch (err) {
      await report(database, err, progress.stage, progress.key, startedAt);
      deps.metrics.backupFinished({ database, succeeded: false, bytes: progress.bytes, durationMs: Date.now() - t0 });
    }
  }

  let globals: GlobalsSummary | undefined;
  if (config.backupGlobals) {
    const startedAt = deps.now();
    const progress: { stage: Stage; key: string | undefined } = { stage: 'dump', key: undefined };
    try {
      globals = await backupGlobals({ config, deps, store, creds, database: databases[0]!, deadline, startedAt, redact, progress });
    } catch (err) {
      await report(GLOBALS_ALERT_NAME, err, progress.stage, progress.key, startedAt);
    }
  }

  // Prune only the databases whose backup succeeded in this run: a failing database keeps
  // every backup it has until it works again.
  const pruned: string[] = [];
  for (const b of backups) {
    try {
      // Ages and order come from S3's clock (the listing's Date header, LastModified); this host's
      // clock is only the fallback when S3 sends no Date. What this run just wrote is never pruned,
      // whatever any clock says.
      const res = await pruneDatabase(store, b.database, { retentionCount: config.retentionCount, now: new Date(), dryRun, log, protect: new Set([b.key]) });
      pruned.push(...res.deleted);
    } catch (err) {
      await report(b.database, err, 'prune', undefined, deps.now());
    }
  }
  if (globals) {
    try {
      pruned.push(...(await pruneGlobals(store, { retentionCount: config.retentionCount, dryRun, log, protect: new Set([globals.key]) })).deleted);
    } catch (err) {
      await report(GLOBALS_ALERT_NAME, err, 'prune', undefined, deps.now());
    }
  }

  const status = failures.length === 0 ? 'succeeded' : 'failed';
  log.info('run finished', { status, backups: backups.length, failures: failures.length, pruned: pruned.length, dryRun });
  if (status === 'succeeded' && config.notifyOnSuccess) {
    await publish(deps.sns, config.alertTopicArn, formatSuccess(backups, pruned, config.bucket), log);
  }
  return { status, backups, pruned, failures, globals, dryRun };
}

interface DatabaseContext {
  readonly config: Config;
  readonly deps: Deps;
  readonly store: S3Store;
  readonly creds: DbCredentials;
  readonly reason: string;
  readonly deadline: number | undefined;
  readonly startedAt: Date;
  readonly dumpVersion: () => Promise<Version>;
  readonly redact: (t: string) => string;
  /** Updated as the backup moves on, so that a failure reports the right stage and key. */
  readonly progress: { stage: Stage; key: string | undefined; bytes: number };
}

async function backupDatabase(database: string, ctx: DatabaseContext): Promise<BackupSummary> {
  const { config, deps, store, progress } = ctx;
  const log = deps.log;
  const t0 = Date.now();
  checkBudget(ctx.deadline, 0, 0);
  const conn = connectionFor(ctx.creds, database, config);
  prepareTls(conn);
  log.info('connecting', { stage: 'connect', database, host: conn.host, port: conn.port, sslmode: conn.sslmode });
  progress.stage = 'dump';
  const pgDump = await ctx.dumpVersion();
  progress.stage = 'connect';
  const server = await deps.serverInfo(conn);
  checkServerVersion(server, pgDump);

  progress.stage = 'upload';
  const { key, release } = await reserveDumpKey(store, database, ctx.startedAt);
  progress.key = key;
  try {
    progress.stage = 'dump';
    log.info('dump started', { stage: 'dump', database, key, serverVersion: server.text, pgDumpVersion: pgDump.text, compression: config.compression, databaseBytes: server.databaseBytes });
    // pg_dump in a snapshot exported by a connection that counts the rows in that same snapshot
    // (ROW_COUNTS): the manifest then says exactly what the dump holds.
    const { result, counts } = await withDumpSnapshot(conn, config.rowCounts, (snapshot) => {
      const tool = startTool(deps.spawn, toolCommand('pg_dump', config, deps.pgTools), [...pgDumpArgs(config.compression), ...(snapshot ? [`--snapshot=${snapshot}`] : [])], {
        env: libpqEnv(conn),
        redact: ctx.redact,
      });
      return uploadToolOutput(deps, store, key, tool, ctx.deadline, {
        partSize: deps.partSize ?? partSizeForDatabase(server.databaseBytes),
        onProgress: (b) => {
          progress.bytes = b;
          deps.onDumpProgress?.({ database, key, bytes: b });
        },
      });
    });
    for (const warning of counts.warnings) log.warn('row counts', { stage: 'dump', database, key, warning });
    progress.bytes = result.bytes;
    const finishedAt = deps.now();
    const durationMs = Date.now() - t0;
    log.info('dump uploaded', { stage: 'upload', database, key, bytes: result.bytes, sha256: result.sha256, durationMs, bytesPerSecond: throughput(result.bytes, durationMs) });

    progress.stage = 'manifest';
    const manifest: Manifest = {
      formatVersion: MANIFEST_FORMAT_VERSION,
      database,
      key,
      bytes: result.bytes,
      sha256: result.sha256,
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
      await putManifest(store, manifest);
    } catch (err) {
      // Without its manifest the dump is not a backup: remove it now rather than leave an orphan.
      await deps.s3.send(new DeleteObjectCommand({ Bucket: store.bucket, Key: key })).catch(() => {});
      throw err;
    }
    log.info('backup complete', { stage: 'manifest', database, key, bytes: result.bytes, sha256: result.sha256, durationMs });
    return { database, key, bytes: result.bytes, sha256: result.sha256, durationMs };
  } finally {
    release();
  }
}

/** Throws the timeout error if the budget is already spent (before a database starts). */
function checkBudget(deadline: number | undefined, bytesWritten: number, elapsedMs: number): void {
  if (deadline !== undefined && Date.now() >= deadline) {
    throw new TimeBudgetError('not started: the time budget of this invocation is already spent', { bytesWritten, elapsedMs }, {
      hint: 'Too many or too large databases for one invocation: give the function more memory, split DATABASES over several schedules, or use host mode for large databases.',
    });
  }
}

interface GlobalsContext {
  readonly config: Config;
  readonly deps: Deps;
  readonly store: S3Store;
  readonly creds: DbCredentials;
  /** The database pg_dumpall connects to. */
  readonly database: string;
  readonly deadline: number | undefined;
  readonly startedAt: Date;
  readonly redact: (t: string) => string;
  readonly progress: { stage: Stage; key: string | undefined };
}

async function backupGlobals(ctx: GlobalsContext): Promise<GlobalsSummary> {
  const { config, deps, store } = ctx;
  checkBudget(ctx.deadline, 0, 0);
  const conn = connectionFor(ctx.creds, ctx.database, config);
  prepareTls(conn);
  const key = buildGlobalsKey(store.prefix, ctx.startedAt);
  ctx.progress.key = key;
  const tool = startTool(deps.spawn, toolCommand('pg_dumpall', config, deps.pgTools), [...pgDumpallGlobalsArgs(), `--database=${ctx.database}`], { env: libpqEnv(conn), redact: ctx.redact, tool: 'pg_dumpall' });
  const result = await uploadToolOutput(deps, store, key, tool, ctx.deadline, {
    // Roles and tablespaces: kilobytes.
    partSize: deps.partSize ?? MIN_STREAM_PART_SIZE,
    contentType: 'application/sql',
    checkMagic: false,
    toolName: 'pg_dumpall',
  });
  deps.log.info('globals uploaded', { stage: 'upload', key, bytes: result.bytes, sha256: result.sha256 });
  return { key, bytes: result.bytes, sha256: result.sha256 };
}

/** A tool's stdout streamed to `key`, with the part size and queue the deps set. */
function uploadToolOutput(
  deps: Deps,
  store: S3Store,
  key: string,
  tool: RunningTool,
  deadline: number | undefined,
  extra: Pick<StreamUploadOptions, 'partSize' | 'onProgress' | 'contentType' | 'checkMagic' | 'toolName'>,
): ReturnType<typeof streamToS3> {
  return streamToS3({ s3: deps.s3, bucket: store.bucket, key, tool, queueSize: deps.queueSize, deadline, ...extra });
}

/** Any error as a PgS3BackupError of the stage it happened in (keeping the original as cause). */
function toError(err: unknown, stage: Stage): PgS3BackupError {
  if (err instanceof PgS3BackupError) return err;
  const e = err instanceof Error ? err : new Error(String(err));
  return new PgS3BackupError(stage, `${e.name}: ${e.message}`, { cause: e });
}

/**
 * The databases of this run: the request's, else DATABASES, else (DATABASES=*) the server's list
 * filtered by the patterns, else the secret's own database.
 */
export async function databasesToBackUp(
  request: Pick<BackupRequest, 'databases'>,
  config: Pick<Config, 'databases' | 'discover' | 'sslMode' | 'sslRootCert' | 'inLambda' | 'connectTimeoutSeconds'>,
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
