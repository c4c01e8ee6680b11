/**
 * pg_dump's stdout → S3 multipart upload, with SHA-256 on the fly and bounded memory, failing
 * closed. The stream that feeds the upload does not end when pg_dump's stdout ends: it ends only
 * once pg_dump has exited 0 and its output began with `PGDMP`. Otherwise it errors, the uploader
 * (multipart.ts) aborts the multipart upload (or never sends the single PutObject) and nothing lands at the key.
 */
import { DeleteObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { DumpError, dumpHint, TimeBudgetError, UploadError, type ProcessOutcome } from '../errors.ts';
import { describeExit, type RunningTool } from '../pg/process.ts';
import { uploadMultipart, type PartChecksum } from './multipart.ts';

/** pg_dump's custom-format archives start with these bytes. */
export const CUSTOM_FORMAT_MAGIC = Buffer.from('PGDMP');

const MiB = 1024 * 1024;
export const S3_MAX_PARTS = 10_000;
export const S3_MIN_PART_SIZE = 5 * MiB;
/** The largest dump the part size must allow for. */
export const MAX_DUMP_BYTES = 200 * 1024 ** 3;

/**
 * The smallest whole-MiB part size that fits `maxBytes` in 9,000 parts (10% headroom under S3's
 * 10,000): 200 GiB → 23 MiB. Memory is about (queueSize + 1) × part size.
 */
export function partSizeFor(maxBytes: number = MAX_DUMP_BYTES): number {
  return Math.max(S3_MIN_PART_SIZE, Math.ceil(maxBytes / (S3_MAX_PARTS * 0.9) / MiB) * MiB);
}

/** The smallest part the engine uses: below it, request overhead shows; memory is (queue + 1) parts. */
export const MIN_STREAM_PART_SIZE = 8 * MiB;
/**
 * How much larger than its database a dump may be, for sizing parts. A custom-format dump is
 * compressed and holds no indexes, so it is normally well under the database's size; 4× leaves
 * room for `--compress=none` over TOAST-compressed data.
 */
export const DUMP_TO_DATABASE_BOUND = 4;

/**
 * Part size for a dump of a database of `databaseBytes`: 8 MiB (memory stays at about 80 MiB of
 * parts, whatever the size) until the S3 part cap needs larger parts, i.e. beyond ~17 GiB of
 * database; unknown size → the 200 GiB sizing. A dump that still outgrows 10,000 parts makes
 * the uploader fail the upload, which aborts it: fail closed, never a truncated object.
 */
export function partSizeForDatabase(databaseBytes: number | undefined): number {
  if (databaseBytes === undefined || !Number.isFinite(databaseBytes)) return partSizeFor();
  return Math.max(MIN_STREAM_PART_SIZE, partSizeFor(databaseBytes * DUMP_TO_DATABASE_BOUND));
}

/** Parts in flight at once. */
export const DEFAULT_QUEUE_SIZE = 2;

/**
 * Counts the bytes (and hashes them, unless `hashWhole` is false: the uploader hashes each part
 * itself), checks the magic, and holds back end-of-stream until `verdict` says the producer
 * succeeded.
 */
export class DumpGate extends Transform {
  bytes = 0;
  private readonly hash: Hash | undefined;
  private head = Buffer.alloc(0);
  constructor(
    private readonly verdict: () => Promise<void>,
    private readonly checkMagic = true,
    private readonly onBytes?: (total: number) => void,
    hashWhole = true,
  ) {
    super({ highWaterMark: MiB });
    this.hash = hashWhole ? createHash('sha256') : undefined;
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.checkMagic && this.head.length < CUSTOM_FORMAT_MAGIC.length) {
      this.head = Buffer.concat([this.head, chunk.subarray(0, CUSTOM_FORMAT_MAGIC.length - this.head.length)]);
      if (!CUSTOM_FORMAT_MAGIC.subarray(0, this.head.length).equals(this.head)) {
        cb(new DumpError(`pg_dump's output does not start with the custom-format signature PGDMP (got ${JSON.stringify(this.head.toString('latin1'))})`, {
          hint: 'PG_DUMP_BIN must be pg_dump itself; the backup runs it with --format=custom.',
        }));
        return;
      }
    }
    this.bytes += chunk.length;
    this.hash?.update(chunk);
    this.onBytes?.(this.bytes);
    cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    const fail = (err: unknown) => cb(err as Error);
    this.verdict().then(() => {
      if (this.checkMagic && this.bytes < CUSTOM_FORMAT_MAGIC.length) {
        cb(new DumpError(`pg_dump exited 0 but wrote ${this.bytes} byte(s), not a dump`, { hint: 'Run PG_DUMP_BIN by hand to see what it does.' }));
      } else {
        cb();
      }
    }, fail);
  }
  digest(): string {
    if (!this.hash) throw new Error('DumpGate: built without hashing');
    return this.hash.digest('hex');
  }
}

export interface StreamUploadOptions {
  readonly s3: S3Client;
  readonly bucket: string;
  readonly key: string;
  readonly tool: RunningTool;
  readonly partSize?: number;
  readonly queueSize?: number | undefined;
  /** Absolute time (ms since epoch) by which the dump must have finished; see TimeBudgetError. */
  readonly deadline?: number | undefined;
  readonly contentType?: string;
  /** `true` for pg_dump (custom format); pg_dumpall's plain SQL has no signature. */
  readonly checkMagic?: boolean;
  /** For error messages: pg_dump, pg_dumpall. */
  readonly toolName?: string;
  readonly onProgress?: (bytes: number) => void;
  /** Checksum of each multipart part (multipart.ts; the bench measures both). */
  readonly partChecksum?: PartChecksum | undefined;
}

export interface StreamUploadResult {
  readonly bytes: number;
  /** SHA-256 of the whole dump, lowercase hex (computed by the uploader in its one pass). */
  readonly sha256: string;
  readonly parts: number;
  readonly outcome: ProcessOutcome;
}

export async function streamToS3(opts: StreamUploadOptions): Promise<StreamUploadResult> {
  const { tool } = opts;
  const toolName = opts.toolName ?? 'pg_dump';
  const now = Date.now;
  const started = now();
  let failure: Error | undefined;
  let outcome: ProcessOutcome | undefined;
  let timer: NodeJS.Timeout | undefined;

  const gate = new DumpGate(async () => {
    outcome = await tool.finished;
    if (outcome.exitCode !== 0 || outcome.signal) {
      throw new DumpError(`${toolName} failed: ${describeExit(outcome.exitCode, outcome.signal, toolName)}${outcome.stderrTail.length ? `\n${outcome.stderrTail.join('\n')}` : ''}`, {
        outcome,
        hint: dumpHint(outcome),
      });
    }
    // The dump is whole: only CompleteMultipartUpload is left, which the budget must not interrupt.
    if (timer) clearTimeout(timer);
  }, opts.checkMagic ?? true, opts.onProgress, false);

  /** First failure wins; it stops pg_dump and errors the stream so the upload aborts. */
  let killTimer: NodeJS.Timeout | undefined;
  const fail = (err: Error) => {
    if (failure) return;
    failure = err;
    tool.child.kill('SIGTERM');
    // Closing our end of the pipe makes any writer still holding it (a wrapper's child) die of SIGPIPE.
    tool.child.stdout?.destroy();
    // pg_dump ends on SIGTERM; anything that ignores it is killed outright.
    killTimer = setTimeout(() => tool.child.kill('SIGKILL'), 5000);
    killTimer.unref();
    gate.destroy(err);
  };
  tool.finished.catch((err: Error) => fail(err));
  gate.on('error', (err) => fail(err));
  tool.child.stdout!.on('error', (err) => fail(err));
  tool.child.stdout!.pipe(gate);

  if (opts.deadline !== undefined) {
    timer = setTimeout(() => {
      const elapsedMs = now() - started;
      fail(new TimeBudgetError(
        `time budget exhausted after ${Math.round(elapsedMs / 1000)} s with ${gate.bytes} bytes uploaded: dump stopped, upload aborted`,
        { bytesWritten: gate.bytes, elapsedMs },
        { hint: 'Give the function more memory (more CPU and network) or a longer timeout (15 min at most); for databases that cannot be dumped within 15 minutes, run the CLI or scripts/backup.sh on a host (host mode).' },
      ));
    }, Math.max(0, opts.deadline - now()));
  }

  // Upload errors (after the SDK's own retries) must stop pg_dump at once, not after the other
  // parts in flight have drained the dump: wrap `send` to hear about them first.
  const client: Pick<S3Client, 'send'> = {
    send: ((command: Parameters<S3Client['send']>[0], options?: Parameters<S3Client['send']>[1]) =>
      opts.s3.send(command, options).catch((err: unknown) => {
        if (!failure && (err as Error).name !== 'AbortError') {
          fail(new UploadError(`upload to s3://${opts.bucket}/${opts.key} failed: ${(err as Error).name}: ${(err as Error).message}`, {
            cause: err,
            hint: uploadHint(err),
          }));
        }
        throw err;
      })) as S3Client['send'],
  };

  let uploaded: Awaited<ReturnType<typeof uploadMultipart>> | undefined;
  try {
    uploaded = await uploadMultipart(gate, {
      s3: client,
      bucket: opts.bucket,
      key: opts.key,
      contentType: opts.contentType ?? 'application/octet-stream',
      partSize: opts.partSize ?? partSizeFor(),
      queueSize: opts.queueSize ?? DEFAULT_QUEUE_SIZE,
      partChecksum: opts.partChecksum,
    });
    if (failure) {
      // A failure raced with the upload's completion: take the object back, so that nothing
      // from a failed backup stays at the key.
      await opts.s3.send(new DeleteObjectCommand({ Bucket: opts.bucket, Key: opts.key })).catch(() => {});
    }
  } catch (err) {
    fail(err instanceof Error && 'stage' in err ? err : new UploadError(`upload to s3://${opts.bucket}/${opts.key} failed: ${(err as Error).name}: ${(err as Error).message}`, { cause: err, hint: uploadHint(err) }));
  } finally {
    if (timer) clearTimeout(timer);
  }
  // Whatever happened, wait for the process: no stray pg_dump keeps running into the next step.
  const finalOutcome = await tool.finished.catch(() => undefined);
  if (killTimer) clearTimeout(killTimer);
  if (failure) throw failure;
  return { bytes: gate.bytes, sha256: uploaded!.sha256, parts: uploaded!.parts, outcome: outcome ?? finalOutcome! };
}

function uploadHint(err: unknown): string {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  if (e.name === 'PreconditionFailed' || e.$metadata?.httpStatusCode === 412) return 'Another run wrote the same key at the same time; run again.';
  if (e.name === 'AccessDenied' || e.$metadata?.httpStatusCode === 403) return 'Grant the function s3:PutObject (and s3:AbortMultipartUpload) on the bucket prefix, and kms:GenerateDataKey if the bucket uses a KMS key.';
  if (e.name === 'NoSuchBucket') return 'Check BACKUP_BUCKET and the region.';
  return 'S3 was unavailable or unreachable after retries; the multipart upload was aborted. Run the backup again; check the VPC endpoint or NAT if it persists.';
}
