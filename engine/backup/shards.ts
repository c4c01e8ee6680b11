/**
 * Sharded dumps (issue 24 §1, DUMP_JOBS > 1): one exported snapshot, one pg_dump for the schema
 * archive and N data-only pg_dumps (`--snapshot`, each with its own `--filter` file), each streamed
 * to its own multipart upload with its own SHA-256 and format gate (stream-upload.ts). Which table
 * goes where, and where sequences, large objects and materialized views go: engine/pg/shard-plan.ts.
 *
 * All or nothing: the first archive that fails stops every other pg_dump and aborts every other
 * upload (one AbortController shared by the N + 1 streams), and the archives already complete are
 * deleted, so a failed sharded backup leaves no object and no multipart upload behind; only then
 * is the failure thrown. The manifest (format 4, listing the parts) is written by the caller after
 * every archive is complete. Memory: each stream holds its own (queue + 1) parts, bounded per shard.
 * Encrypted backups (ENCRYPT_RECIPIENTS): `upload` encrypts each archive to the recipients, so
 * every part is its own age file, hashed as stored, with its plaintext digest beside it.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PgS3BackupError, type Leftover } from '../errors.ts';
import type { ManifestPart } from '../store/manifest.ts';
import { partKeyFor } from '../store/backup-key.ts';
import { pgDumpArgs } from '../pg/pg-dump.ts';
import { startToolDirect, type RunningTool, type SpawnFn } from '../pg/process.ts';
import type { SpawnCommand } from '../pg/tools.ts';
import { archiveBounds, dataFilter, filterable, planShards, schemaFilter, shardTables, type ShardPlan } from '../pg/shard-plan.ts';
import { DUMP_DIR_PREFIX, markOwner } from '../restore/leftovers.ts';
import type { StreamUploadResult } from '../store/stream-upload.ts';
import type pg from 'pg';

export interface ShardedDumpOptions {
  readonly spawn: SpawnFn;
  readonly pgDump: SpawnCommand;
  /** pg_dump's whole environment (libpqEnv). */
  readonly env: Record<string, string>;
  readonly redact: (s: string) => string;
  readonly compression: string;
  readonly lockWaitTimeoutSeconds?: number | undefined;
  readonly jobs: number;
  /** The backup's key: the schema archive's; the data archives' keys derive from it. */
  readonly key: string;
  /** The run's signal (time budget, interruption). */
  readonly signal: AbortSignal;
  /** The database's size (pg_database_size), for sizing each archive's parts by its share; undefined: unknown. */
  readonly databaseBytes?: number | undefined;
  /**
   * Streams one archive to `key` (stream-upload.ts), stopped by `signal`; `onBytes` its progress;
   * `boundBytes` the database bytes it holds at most (its parts are sized for it: archiveBounds).
   */
  readonly upload: (key: string, tool: RunningTool, signal: AbortSignal, onBytes: (bytes: number) => void, boundBytes: number | undefined) => Promise<StreamUploadResult>;
  /** Deletes a complete archive again (the clean-up after another one failed): undefined, or why it could not. */
  readonly remove: (key: string) => Promise<string | undefined>;
  /** Where the filter files go (default: the OS temporary directory). */
  readonly tempDir?: string | undefined;
  /** All the archives' bytes so far. */
  readonly onProgress?: ((bytes: number) => void) | undefined;
}

export interface ShardedDumpResult {
  readonly plan: ShardPlan;
  /** The schema archive, at the backup's key. */
  readonly schema: StreamUploadResult;
  readonly parts: readonly ManifestPart[];
  /** Every archive's bytes. */
  readonly bytes: number;
  /** Deletes every archive (the manifest could not be written): undefined, or what could not be deleted. */
  removeAll(): Promise<Leftover | undefined>;
}

/**
 * Plans the shards in the snapshot `client` exported (`snapshot`), then dumps and uploads every
 * archive concurrently. Undefined (nothing started) when there is nothing to shard: no table with
 * data, or a table name a filter file cannot hold; the caller then dumps one archive.
 */
export async function dumpSharded(client: Pick<pg.Client, 'query'>, snapshot: string, options: ShardedDumpOptions): Promise<ShardedDumpResult | undefined> {
  const plan = planShards(await shardTables(client), options.jobs);
  if (!plan || !filterable(plan)) return undefined;
  options.signal.throwIfAborted();

  // Filter files in a private folder marked as ours (a killed run's is swept like a dump's: leftovers.ts).
  const dir = await mkdtemp(join(options.tempDir ?? tmpdir(), DUMP_DIR_PREFIX));
  try {
    markOwner(dir);
    const schemaFile = join(dir, 'schema.filter');
    await writeFile(schemaFile, schemaFilter(plan), { mode: 0o600 });
    const dataFiles = await Promise.all(
      plan.shards.map(async (s, i) => {
        const file = join(dir, `data-${i + 1}.filter`);
        await writeFile(file, dataFilter(s), { mode: 0o600 });
        return file;
      }),
    );

    const base = [...pgDumpArgs(options.compression, options.lockWaitTimeoutSeconds), `--snapshot=${snapshot}`];
    const bounds = archiveBounds(plan, options.databaseBytes);
    const archives = [
      { key: options.key, bound: bounds.schema, args: [...base, `--filter=${schemaFile}`, '--no-large-objects'] },
      // --strict-names: a table a pattern fails to match fails the dump, never leaves its rows out silently.
      ...plan.shards.map((s, i) => ({ key: partKeyFor(options.key, i + 1), bound: bounds.shards[i], args: [...base, '--data-only', '--strict-names', `--filter=${dataFiles[i]!}`, ...(s.largeObjects ? ['--large-objects'] : [])] })),
    ];

    // One signal for every archive: the run's, or the first failure of any of them.
    const local = new AbortController();
    const signal = AbortSignal.any([options.signal, local.signal]);
    let first: unknown;
    const progress = archives.map(() => 0);
    const runs = archives.map(async (a, i) => {
      try {
        signal.throwIfAborted();
        const tool = await startToolDirect(options.spawn, options.pgDump, a.args, { env: options.env, redact: options.redact });
        return await options.upload(a.key, tool, signal, (b) => {
          progress[i] = b;
          options.onProgress?.(progress.reduce((x, y) => x + y, 0));
        }, a.bound);
      } catch (err) {
        // The first failure is the backup's; the others are its consequence (aborted by it).
        if (first === undefined) {
          first = signal.aborted && !local.signal.aborted ? (options.signal.reason as unknown) : err;
          local.abort(first);
        }
        throw err;
      }
    });
    const settled = await Promise.allSettled(runs);
    const done = settled.flatMap((s, i) => (s.status === 'fulfilled' ? [archives[i]!.key] : []));
    /** Deletes `keys`; the first that could not be deleted, with why. */
    const removeAll = async (keys: readonly string[]): Promise<Leftover | undefined> => {
      const outcomes = await Promise.all(keys.map(async (objectKey) => ({ objectKey, reason: await options.remove(objectKey) })));
      const failed = outcomes.flatMap((o) => (o.reason === undefined ? [] : [{ objectKey: o.objectKey, reason: o.reason }]));
      return failed[0] && { objectKey: failed.map((f) => f.objectKey).join(', '), reason: failed[0].reason };
    };
    if (first !== undefined || settled.some((s) => s.status === 'rejected')) {
      // Nothing of a failed backup stays: the archives that completed before the failure go too.
      const leftover = await removeAll(done);
      const err = (first ?? settled.find((s): s is PromiseRejectedResult => s.status === 'rejected')!.reason) as unknown;
      if (leftover && err instanceof PgS3BackupError) err.leftover = leftover;
      throw err;
    }
    const results = settled.map((s) => (s as PromiseFulfilledResult<StreamUploadResult>).value);
    const parts: ManifestPart[] = plan.shards.map((s, i) => ({
      key: archives[i + 1]!.key,
      bytes: results[i + 1]!.bytes,
      sha256: results[i + 1]!.sha256,
      tables: s.tables.length,
      tableBytes: s.bytes,
      largeObjects: s.largeObjects,
      ...plaintextOf(results[i + 1]!),
    }));
    return {
      plan,
      schema: results[0]!,
      parts,
      bytes: results.reduce((n, r) => n + r.bytes, 0),
      removeAll: () => removeAll(archives.map((a) => a.key)),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** An encrypted archive's plaintext size and digest, as a manifest part records them (nothing for a plain one). */
export function plaintextOf(r: StreamUploadResult): Pick<ManifestPart, 'plaintextBytes' | 'plaintextSha256'> {
  return r.plaintext ? { plaintextBytes: r.plaintext.bytes, plaintextSha256: r.plaintext.sha256 } : {};
}
