/**
 * One database's backup: connect and check versions → pg_dump in a snapshot (its rows counted in
 * that snapshot) streamed into the store → the key checked where the store has no conditional
 * writes → the manifest. And the globals (roles, tablespaces) by pg_dumpall. The run
 * (backup.ts) calls them in turn, with the run's bounded store and a progress it tracks.
 */
import { buildGlobalsKey } from '../store/backup-key.ts';
import type { Config } from '../config.ts';
import type { Deps } from '../deps.ts';
import { PgS3BackupError } from '../errors.ts';
import { ENCRYPTED_MANIFEST_FORMAT_VERSION, MANIFEST_FORMAT_VERSION, SHARDED_MANIFEST_FORMAT_VERSION, type Manifest } from '../store/manifest.ts';
import { dumpSharded, plaintextOf } from './shards.ts';
import { ENCRYPTION_FORMAT, recipientFingerprint } from '../encryption.ts';
import { withDumpSnapshot } from '../pg/row-counts.ts';
import { whyNotSharded } from '../pg/shard-plan.ts';
import { throughput } from '../observability.ts';
import { connectionFor } from '../pg/connection.ts';
import { libpqEnv } from '../pg/env.ts';
import { checkServerVersion, pgDumpallGlobalsArgs, pgDumpArgs, toolCommand, type Version } from '../pg/pg-dump.ts';
import { openDirectChannel, startTool, startToolDirect, type RunningTool } from '../pg/process.ts';
import { prepareTls } from '../pg/tls.ts';
import type { BackupStore } from '../store/store.ts';
import type { ResolvedCapabilities } from '../store/capabilities.ts';
import type { DbCredentials } from '../pg/connection.ts';
import { choosePartSize, MIN_STREAM_PART_SIZE, type StreamUploadOptions, type StreamUploadResult } from '../store/stream-upload.ts';
import { untilAborted } from '../budget.ts';
import type { WorkProgress } from './run-budget.ts';
import { TOOL_VERSION } from '../version.ts';

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

export interface GlobalsSummary {
  readonly key: string;
  readonly bytes: number;
  readonly sha256: string;
  /** Encrypted with age: the key ends with `.sql.age`. */
  readonly encrypted?: boolean;
}

export interface DatabaseContext {
  readonly config: Config;
  /** The run's deps: its waits are bounded by `signal`, its store requests by `store`. */
  readonly deps: Deps;
  /** Bounded by the run's signal; its clean-up after a failure is not. */
  readonly store: BackupStore;
  readonly creds: DbCredentials;
  readonly reason: string;
  readonly signal: AbortSignal;
  readonly startedAt: Date;
  readonly dumpVersion: () => Promise<Version>;
  readonly redact: (t: string) => string;
  /** Moved on as the backup goes, so that a failure (and the budget) reports the right stage and key. */
  readonly progress: WorkProgress;
  /** What the store can do (STORAGE_PROFILE, the probe, or AWS's by default). */
  readonly capabilities: (force?: boolean) => Promise<ResolvedCapabilities>;
  /** This run's id, in the key when the store has no conditional writes. */
  readonly runId: string;
}

export async function backupDatabase(database: string, ctx: DatabaseContext): Promise<BackupSummary> {
  const { config, deps, store, progress } = ctx;
  const emit = deps.events;
  const t0 = Date.now();
  ctx.signal.throwIfAborted();
  const conn = connectionFor(ctx.creds, database, config);
  prepareTls(conn);
  emit({ event: 'backup.connecting', stage: 'connect', database, host: conn.host, port: conn.port, sslmode: conn.sslmode });
  progress.enter('dump');
  const pgDump = await untilAborted(ctx.dumpVersion(), ctx.signal);
  progress.enter('connect');
  const server = await untilAborted(deps.serverInfo(conn), ctx.signal);
  checkServerVersion(server, pgDump);
  // DUMP_JOBS > 1: data-only pg_dumps side by side in the same snapshot (shards.ts), unless this
  // pg_dump rules it out (said below, once the dump starts). Encrypted or not: each archive is its own age file.
  const notSharded = whyNotSharded(config.dumpJobs, pgDump.major);

  progress.enter('upload');
  const caps = await untilAborted(ctx.capabilities(), ctx.signal);
  const partSize = choosePartSize(deps.partSize, server.databaseBytes, caps);
  const { key, release } = await store.reserveDumpKey(database, ctx.startedAt, caps.conditionalWrites ? undefined : ctx.runId);
  progress.key = key;
  try {
    progress.enter('dump');
    emit({ event: 'backup.dump.started', stage: 'dump', database, key, serverVersion: server.text, pgDumpVersion: pgDump.text, compression: config.compression, databaseBytes: server.databaseBytes });
    ctx.signal.throwIfAborted();
    // pg_dump in a snapshot exported by a connection that counts the rows in that same snapshot
    // (ROW_COUNTS): the manifest then says exactly what the dump holds.
    // pg_dump's stdout read straight into the upload's part buffers (engine/pg/direct-output.ts).
    // The channel is opened first: pg_dump then starts at once in the snapshot, before the counts.
    const stdout = await openDirectChannel();
    if (notSharded) emit({ event: 'warning', message: notSharded });
    const shardJobs = notSharded ? 1 : config.dumpJobs;
    const { result, counts } = await withDumpSnapshot(conn, config.rowCounts, async (snapshot, client) => {
      const sharded = shardJobs > 1 && snapshot && client
        ? await dumpSharded(client, snapshot, {
            spawn: deps.spawn, pgDump: toolCommand('pg_dump', config, deps.pgTools), env: libpqEnv(conn), redact: ctx.redact,
            compression: config.compression, lockWaitTimeoutSeconds: config.lockWaitTimeoutSeconds, jobs: shardJobs, key, signal: ctx.signal,
            databaseBytes: server.databaseBytes,
            upload: async (partKey, tool, signal, onBytes, boundBytes) => {
              // Each archive's parts sized for its share of the database, not all of it (archiveBounds).
              const r = await uploadToolOutput(deps, { ...ctx, signal, capabilities: caps }, partKey, tool, { partSize: choosePartSize(deps.partSize, boundBytes, caps), onProgress: onBytes });
              if (!caps.conditionalWrites) await store.confirmSoleObject(partKey, { bytes: r.bytes, etag: r.etag });
              return r;
            },
            remove: (k) => store.removeObject(k),
            onProgress: (b) => {
              progress.bytes = b;
              emit({ event: 'backup.dump.progress', database, key, bytes: b });
            },
          })
        : undefined;
      if (sharded) return { ...sharded.schema, bytes: sharded.bytes, sharded };
      const tool = startTool(deps.spawn, toolCommand('pg_dump', config, deps.pgTools), [...pgDumpArgs(config.compression, config.lockWaitTimeoutSeconds), ...(snapshot ? [`--snapshot=${snapshot}`] : [])], {
        env: libpqEnv(conn),
        redact: ctx.redact,
        stdout,
      });
      return uploadToolOutput(deps, { ...ctx, capabilities: caps }, key, tool, {
        partSize,
        onProgress: (b) => {
          progress.bytes = b;
          emit({ event: 'backup.dump.progress', database, key, bytes: b });
        },
      });
    }, { lockTimeoutSeconds: config.lockWaitTimeoutSeconds, exportAlways: shardJobs > 1 }).finally(() => {
      // Not used when the dump never started; closing a used one again does nothing.
      stdout?.childEnd.destroy();
      stdout?.output.destroy();
    });
    for (const warning of counts.warnings) emit({ event: 'backup.row-counts.incomplete', stage: 'dump', database, key, warning });
    const sharded = 'sharded' in result ? result.sharded : undefined;
    progress.bytes = result.bytes;
    // Written without If-None-Match: the key must hold exactly what this run wrote (a sharded dump's upload checked each).
    if (!caps.conditionalWrites && !sharded) await store.confirmSoleObject(key, { bytes: result.bytes, etag: result.etag });
    const finishedAt = deps.now();
    const durationMs = Date.now() - t0;
    emit({ event: 'backup.dump.uploaded', stage: 'upload', database, key, bytes: result.bytes, sha256: result.sha256, durationMs, bytesPerSecond: throughput(result.bytes, durationMs) });

    progress.enter('manifest');
    const recipients = config.encryptRecipients;
    const manifest: Manifest = {
      formatVersion: sharded ? SHARDED_MANIFEST_FORMAT_VERSION : result.plaintext ? ENCRYPTED_MANIFEST_FORMAT_VERSION : MANIFEST_FORMAT_VERSION,
      database,
      key,
      // A sharded backup: the schema archive's, its data archives in `parts`.
      bytes: sharded ? sharded.schema.bytes : result.bytes,
      sha256: result.sha256,
      ...(sharded ? { parts: [...sharded.parts] } : {}),
      ...(result.plaintext && recipients
        ? {
            encryption: { format: ENCRYPTION_FORMAT, recipients: recipients.map(recipientFingerprint) },
            ...plaintextOf(result),
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
      await store.putManifest(manifest, caps);
    } catch (err) {
      // Without its manifest the dump is not a backup: remove it now rather than leave an orphan
      // (through the store's clean-up: the budget may be what failed the manifest).
      const leftover = sharded
        ? await sharded.removeAll()
        : await store.removeObject(key).then((reason) => (reason === undefined ? undefined : { objectKey: key, reason }));
      if (leftover !== undefined && err instanceof PgS3BackupError) err.leftover = leftover;
      throw err;
    }
    emit({ event: 'backup.complete', stage: 'manifest', database, key, bytes: result.bytes, sha256: result.sha256, durationMs });
    return { database, key, bytes: result.bytes, sha256: result.sha256, durationMs, ...(result.plaintext ? { encrypted: true } : {}) };
  } finally {
    release();
  }
}

export type GlobalsContext = Pick<DatabaseContext, 'config' | 'deps' | 'store' | 'creds' | 'signal' | 'startedAt' | 'redact' | 'progress' | 'capabilities'> & {
  /** The database pg_dumpall connects to. */
  readonly database: string;
};

export async function backupGlobals(ctx: GlobalsContext): Promise<GlobalsSummary> {
  const { config, deps, store } = ctx;
  ctx.signal.throwIfAborted();
  const conn = connectionFor(ctx.creds, ctx.database, config);
  prepareTls(conn);
  const encrypted = (config.encryptRecipients?.length ?? 0) > 0;
  // The globals have no manifest: the `.age` suffix is what says they are encrypted.
  const key = buildGlobalsKey(store.prefix, ctx.startedAt, { encrypted });
  ctx.progress.key = key;
  const caps = await untilAborted(ctx.capabilities(), ctx.signal);
  const tool = await startToolDirect(deps.spawn, toolCommand('pg_dumpall', config, deps.pgTools), [...pgDumpallGlobalsArgs(), `--database=${ctx.database}`], { env: libpqEnv(conn), redact: ctx.redact, tool: 'pg_dumpall' });
  const result = await uploadToolOutput(deps, { ...ctx, capabilities: caps }, key, tool, {
    // Roles and tablespaces: kilobytes.
    partSize: deps.partSize ?? MIN_STREAM_PART_SIZE,
    contentType: encrypted ? 'application/octet-stream' : 'application/sql',
    checkMagic: false,
    toolName: 'pg_dumpall',
  });
  if (!caps.conditionalWrites) await store.confirmSoleObject(key, { bytes: result.bytes, etag: result.etag });
  deps.events({ event: 'backup.globals.uploaded', stage: 'upload', key, bytes: result.bytes, sha256: result.sha256, encrypted });
  return { key, bytes: result.bytes, sha256: result.sha256, ...(encrypted ? { encrypted } : {}) };
}

/** A tool's stdout streamed to `key`, with the part size and queue the deps set, bounded by the run's signal and the stall watchdog. */
function uploadToolOutput(
  deps: Deps,
  ctx: { readonly config: Config; readonly signal: AbortSignal; readonly store: BackupStore; readonly capabilities: ResolvedCapabilities },
  key: string,
  tool: RunningTool,
  extra: Pick<StreamUploadOptions, 'partSize' | 'onProgress' | 'contentType' | 'checkMagic' | 'toolName'>,
): Promise<StreamUploadResult> {
  return ctx.store.upload({
    key,
    tool,
    queueSize: deps.queueSize,
    signal: ctx.signal,
    stallMs: ctx.config.dumpStallMs,
    onNotice: (message, attributes) => deps.events({ event: 'backup.upload.notice', ...attributes, stage: 'upload', message }),
    maxParts: ctx.capabilities.maxParts,
    conditional: ctx.capabilities.conditionalWrites,
    ...(ctx.capabilities.checksumSha256 ? {} : { partChecksum: 'none' as const }),
    encryptTo: ctx.config.encryptRecipients,
    ...extra,
  });
}
