/**
 * A tool's stdout → S3 multipart upload, with SHA-256 on the fly and bounded memory, failing
 * closed. The stream that feeds the upload does not end when pg_dump's stdout ends: it ends only
 * once pg_dump has exited 0 and its output began with `PGDMP` (the gate: engine/pg/dump-gate.ts).
 * Otherwise it errors, the uploader (multipart.ts) aborts the multipart upload (or never sends the
 * single PutObject) and nothing lands at the key. Encryption (upload-encryption.ts) and the stall
 * watchdog (stall-watchdog.ts) are their own modules; this one wires them to S3 and cleans up.
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { PgS3BackupError, TimeBudgetError, UploadError, type Leftover, type ProcessOutcome } from '../errors.ts';
import { outputStream } from '../pg/direct-output.ts';
import { DirectDumpReader, DumpGate, toolVerdict } from '../pg/dump-gate.ts';
import type { RunningTool } from '../pg/process.ts';
import { budgetExhausted, watchForStall } from './stall-watchdog.ts';
import { isCapabilityRefusal } from './probe.ts';
import { CompleteFailedError, MultipartUpload, uploadMultipart, type MultipartOptions, type MultipartResult, type StoreWriteOptions } from './multipart.ts';
import { MAX_DUMP_BYTES, PART_CAP_HEADROOM, partSizeFor, PROFILE_CAPABILITIES, type StoreCapabilities } from './capabilities.ts';
import { UploadEncryption } from './upload-encryption.ts';

const MiB = 1024 * 1024;
/** AWS's cap on the parts of one upload (other stores: engine/store/capabilities.ts). */
export const S3_MAX_PARTS = PROFILE_CAPABILITIES.aws.maxParts;
export const S3_MIN_PART_SIZE = PROFILE_CAPABILITIES.aws.minPartBytes;
export { MAX_DUMP_BYTES, partSizeFor };


/** The smallest part the engine uses: below it, request overhead shows; memory is (queue + 1) parts. */
export const MIN_STREAM_PART_SIZE = 8 * MiB;
/**
 * How much larger than its database a dump may be, for sizing parts. A custom-format dump is
 * compressed and holds no indexes, so it is normally well under the database's size; 4× leaves
 * room for `--compress=none` over TOAST-compressed data.
 */
export const DUMP_TO_DATABASE_BOUND = 4;

/**
 * Part size for a dump of a database of `databaseBytes` on a store with `caps` (AWS's by
 * default): 8 MiB (memory stays at about 80 MiB of parts, whatever the size) until the store's
 * part cap needs larger parts — beyond ~17 GiB of database on AWS (10,000 parts), ~1.7 GiB on
 * Scaleway (1,000 parts: 8 MiB parts alone would stop at 7.8 GiB of dump); unknown size → the
 * 200 GiB sizing. `atLeast` (a configured part size) is a floor, never a reason to outgrow the
 * cap. A dump that still outgrows the cap makes the uploader fail the upload, which aborts it:
 * fail closed, never a truncated object.
 */
export function partSizeForDatabase(
  databaseBytes: number | undefined,
  caps: Pick<StoreCapabilities, 'maxParts' | 'minPartBytes' | 'maxPartBytes'> = PROFILE_CAPABILITIES.aws,
  atLeast: number = MIN_STREAM_PART_SIZE,
): number {
  const bound = databaseBytes === undefined || !Number.isFinite(databaseBytes) ? MAX_DUMP_BYTES : databaseBytes * DUMP_TO_DATABASE_BOUND;
  return Math.min(Math.max(atLeast, caps.minPartBytes, partSizeFor(bound, caps)), caps.maxPartBytes);
}

/**
 * The part size of one run: `requested` (deps.partSize: the bench, tests) when given and either the
 * database's size is unknown or the dump bound fits in the store's cap with it; otherwise
 * `partSizeForDatabase`. A requested size never outgrows the cap: a 5 MiB part size on a
 * 1,000-part store would stop at 4.9 GiB of dump.
 */
export function choosePartSize(requested: number | undefined, databaseBytes: number | undefined, caps: Pick<StoreCapabilities, 'maxParts' | 'minPartBytes' | 'maxPartBytes'> = PROFILE_CAPABILITIES.aws): number {
  const sized = partSizeForDatabase(databaseBytes, caps);
  if (requested === undefined) return sized;
  if (databaseBytes === undefined || !Number.isFinite(databaseBytes)) return requested;
  return requested * Math.floor(caps.maxParts * PART_CAP_HEADROOM) >= databaseBytes * DUMP_TO_DATABASE_BOUND ? requested : Math.max(requested, sized);
}

/** Parts in flight at once. */
export const DEFAULT_QUEUE_SIZE = 2;

export interface StreamUploadOptions extends StoreWriteOptions {
  readonly s3: S3Client;
  readonly bucket: string;
  readonly key: string;
  readonly tool: RunningTool;
  readonly partSize?: number;
  readonly queueSize?: number | undefined;
  /**
   * Aborted when the run must stop now (time budget, a signal): the dump is stopped, the upload
   * aborted, and the signal's reason is the error thrown (a TimeBudgetError gets the bytes, the
   * elapsed time and the likely cause filled in).
   */
  readonly signal?: AbortSignal | undefined;
  /**
   * The client for the clean-up after a failure (abort the multipart upload, check and empty the
   * key): not bound to `signal`, which has already fired when the budget ends. Default: `s3`.
   */
  readonly cleanupS3?: S3Client | undefined;
  /** The longest the clean-up may take, every retry included (ms). */
  readonly cleanupTimeoutMs?: number | undefined;
  /** No byte from the tool for this long (ms) stops it: see DUMP_STALL_TIMEOUT_SECONDS. */
  readonly stallMs?: number | undefined;
  readonly contentType?: string;
  /** `true` for pg_dump (custom format); pg_dumpall's plain SQL has no signature. */
  readonly checkMagic?: boolean;
  /** For error messages: pg_dump, pg_dumpall. */
  readonly toolName?: string;
  readonly onProgress?: (bytes: number) => void;
  /** Told when the upload ends in a state worth a log line (a completion S3 did despite an error). */
  readonly onNotice?: (message: string, attributes: Record<string, unknown>) => void;
  /**
   * age recipients (ENCRYPT_RECIPIENTS): the tool's output is encrypted to them between the gate
   * and the uploader, so what S3 receives (and the uploader hashes) is the age file. The gate
   * still holds back the end until the tool succeeded: a failed dump never gets age's final
   * chunk, and the upload is aborted as before.
   */
  readonly encryptTo?: readonly string[] | undefined;
}

/**
 * The uploader's figures of the object (`sha256`: the whole dump's, computed in its one pass;
 * `etag` undefined when the store said none, or the answer was lost) and the tool's outcome.
 */
export interface StreamUploadResult extends Pick<MultipartResult, 'bytes' | 'sha256' | 'parts' | 'etag'> {
  readonly outcome: ProcessOutcome;
  /** With `encryptTo`: the tool's output before encryption (`bytes` and `sha256` are then the ciphertext's). */
  readonly plaintext?: { readonly bytes: number; readonly sha256: string } | undefined;
}

/** Default bound of the clean-up (abort, key check, delete), every retry included. */
export const DEFAULT_CLEANUP_TIMEOUT_MS = 20_000;

export async function streamToS3(opts: StreamUploadOptions): Promise<StreamUploadResult> {
  const { tool } = opts;
  const toolName = opts.toolName ?? 'pg_dump';
  const encryption = new UploadEncryption(opts.encryptTo);
  const encrypting = encryption.active;
  const now = Date.now;
  const started = now();
  let failure: Error | undefined;
  let outcome: ProcessOutcome | undefined;
  let lastByteAt = started;

  const verdict = async () => {
    outcome = await toolVerdict(tool, toolName);
  };
  const onBytes = (bytes: number) => {
    lastByteAt = now();
    opts.onProgress?.(bytes);
  };
  // Read straight into the part buffers when the tool was started that way (startToolDirect)
  // and nothing transforms the bytes before the uploader; otherwise stdout goes through the gate,
  // a stream (encryption reads the gate).
  const direct = tool.output && !encrypting ? new DirectDumpReader(tool.output, verdict, opts.checkMagic ?? true, onBytes, (err) => fail(err)) : undefined;
  const gate = direct ? undefined : new DumpGate(verdict, opts.checkMagic ?? true, onBytes, encrypting);
  const bytesSoFar = () => direct?.bytes ?? gate?.bytes ?? 0;

  /**
   * Whether the bytes stopped because S3 stopped taking them: pg_dump has said everything, or the
   * gate's buffers are full and the uploader is not reading (every part slot is busy sending).
   * Otherwise pg_dump stopped writing.
   */
  let toolExited = false;
  void tool.finished.then(() => (toolExited = true), () => {});
  const s3Blocked = () => toolExited || (direct ? direct.waitingForUpload : gate!.writableNeedDrain || gate!.readableLength >= gate!.readableHighWaterMark);

  // Every request of this upload can be cancelled at once: a failure must not wait for parts in
  // flight to a black-holed endpoint.
  const local = new AbortController();
  /** First failure wins; it stops pg_dump, cancels the requests and errors the stream. */
  let killTimer: NodeJS.Timeout | undefined;
  const fail = (err: Error) => {
    if (failure) return;
    failure = err;
    tool.child.kill('SIGTERM');
    // Closing our end of the pipe makes any writer still holding it (a wrapper's child) die of SIGPIPE.
    tool.child.stdout?.destroy();
    tool.output?.destroy();
    // pg_dump ends on SIGTERM; anything that ignores it is killed outright.
    killTimer = setTimeout(() => tool.child.kill('SIGKILL'), 5000);
    killTimer.unref();
    local.abort(err);
    direct?.destroy(err);
    gate?.destroy(err);
    encryption.destroy(err);
  };
  tool.finished.catch((err: Error) => fail(err));
  if (gate) {
    const stdout = tool.child.stdout ?? (tool.output ? outputStream(tool.output) : undefined);
    gate.on('error', (err) => fail(err));
    stdout!.on('error', (err) => fail(err));
    stdout!.pipe(gate);
  }

  const onAbort = () => {
    const reason = opts.signal?.reason as unknown;
    const elapsedMs = now() - started;
    if (reason instanceof TimeBudgetError) {
      fail(budgetExhausted({ bytes: bytesSoFar(), elapsedMs, idleMs: now() - lastByteAt, s3Blocked: s3Blocked(), toolName }));
    } else {
      fail(reason instanceof Error ? reason : new Error(String(reason)));
    }
  };
  if (opts.signal?.aborted) onAbort();
  else opts.signal?.addEventListener('abort', onAbort, { once: true });

  // The stall watchdog: the time budget and the request timeouts bound the run, but a dump that
  // merely stopped (a lock taken mid-dump, a stalled server, a trickling S3) would use all of it.
  // Once pg_dump has exited, only CompleteMultipartUpload is left: the request timeouts bound it.
  const stopWatchdog = watchForStall({
    stallMs: opts.stallMs,
    idleMs: () => now() - lastByteAt,
    over: () => outcome !== undefined || failure !== undefined,
    bytes: bytesSoFar,
    s3Blocked,
    toolName,
    onStall: fail,
  });

  let uploadId: string | undefined;
  /** CreateMultipartUpload is never cancelled: a cancelled one may still create an upload we could not name. */
  let creating: Promise<unknown> | undefined;
  /** A request that may have created the object was sent (CompleteMultipartUpload, or the single PutObject). */
  let finalSent = false;
  // Upload errors (after the SDK's own retries) must stop pg_dump at once, not after the other
  // parts in flight have drained the dump: wrap `send` to hear about them first. Every request
  // but the creation carries `local`'s signal, so a failure cancels the parts in flight at once
  // (a black-holed endpoint would otherwise hold them until their timeouts).
  const client: Pick<S3Client, 'send'> = {
    send: ((command: Parameters<S3Client['send']>[0], options?: { abortSignal?: AbortSignal }) => {
      const isComplete = command instanceof CompleteMultipartUploadCommand;
      if (isComplete || command instanceof PutObjectCommand) finalSent = true;
      const isCreate = command instanceof CreateMultipartUploadCommand;
      const abortSignal = isCreate ? options?.abortSignal : options?.abortSignal ? AbortSignal.any([local.signal, options.abortSignal]) : local.signal;
      const sent = opts.s3.send(command, { ...options, ...(abortSignal ? { abortSignal } : {}) }) as Promise<unknown>;
      if (isCreate) creating = sent.then((r) => (uploadId = (r as { UploadId?: string }).UploadId), () => {});
      return sent.catch((err: unknown) => {
        // A failed completion is judged below, after a look at the key.
        if (!failure && !local.signal.aborted && !isComplete && !(command instanceof AbortMultipartUploadCommand)) {
          fail(new UploadError(`upload to s3://${opts.bucket}/${opts.key} failed: ${(err as Error).name}: ${(err as Error).message}`, {
            cause: err,
            hint: uploadHint(err),
          }));
        }
        throw err;
      });
    }) as S3Client['send'],
  };

  let uploaded: MultipartResult | undefined;
  let completeFailed: CompleteFailedError | undefined;
  try {
    const encrypted = encrypting ? await encryption.start(gate!, (err) => fail(err)) : undefined;
    const multipart: MultipartOptions = {
      s3: client,
      bucket: opts.bucket,
      key: opts.key,
      contentType: opts.contentType ?? 'application/octet-stream',
      partSize: opts.partSize ?? partSizeFor(),
      queueSize: opts.queueSize ?? DEFAULT_QUEUE_SIZE,
      partChecksum: opts.partChecksum,
      maxParts: opts.maxParts,
      conditional: opts.conditional,
    };
    uploaded = direct ? await direct.upload(new MultipartUpload(multipart)) : await uploadMultipart(encrypted ?? gate!, multipart);
  } catch (err) {
    if (!failure && err instanceof CompleteFailedError) {
      // CompleteMultipartUpload failed as far as we know; S3 may have completed it anyway (the
      // answer was lost, the retry found no upload): the clean-up below looks at the key.
      completeFailed = err;
    } else {
      fail(err instanceof Error && 'stage' in err ? err : new UploadError(`upload to s3://${opts.bucket}/${opts.key} failed: ${(err as Error).name}: ${(err as Error).message}`, { cause: err, hint: uploadHint(err) }));
    }
  } finally {
    stopWatchdog();
    opts.signal?.removeEventListener('abort', onAbort);
  }
  // Whatever happened, wait for the process: no stray pg_dump keeps running into the next step.
  const finalOutcome = await tool.finished.catch(() => undefined);
  if (killTimer) clearTimeout(killTimer);

  if (!uploaded || failure) {
    await creating;
    const cleanup = await cleanUp({
      s3: opts.cleanupS3 ?? opts.s3,
      bucket: opts.bucket,
      key: opts.key,
      uploadId,
      checkKey: finalSent,
      // The object at the key is ours and whole when only the completion's answer failed.
      keep: !failure && completeFailed ? completeFailed.result.bytes : undefined,
      timeoutMs: opts.cleanupTimeoutMs ?? DEFAULT_CLEANUP_TIMEOUT_MS,
    });
    if (cleanup.kept && completeFailed) {
      opts.onNotice?.('CompleteMultipartUpload failed but S3 had completed the upload: the dump is kept', {
        key: opts.key,
        bytes: completeFailed.result.bytes,
        error: completeFailed.message,
      });
      return { bytes: encrypting ? completeFailed.result.bytes : bytesSoFar(), sha256: completeFailed.result.sha256, parts: completeFailed.result.parts, outcome: outcome ?? finalOutcome!, plaintext: encryption.plaintext(gate) };
    }
    if (!failure) {
      const cause = completeFailed?.cause ?? completeFailed;
      failure = new UploadError(`upload to s3://${opts.bucket}/${opts.key} failed: ${completeFailed?.message ?? 'unknown'}`, { cause, hint: uploadHint(cause) });
    }
    if (cleanup.leftover && failure instanceof PgS3BackupError) failure.leftover = cleanup.leftover;
    throw failure;
  }
  return { bytes: encrypting ? uploaded.bytes : bytesSoFar(), sha256: uploaded.sha256, parts: uploaded.parts, outcome: outcome ?? finalOutcome!, etag: uploaded.etag, plaintext: encryption.plaintext(gate) };
}

interface CleanUpRequest {
  readonly s3: S3Client;
  readonly bucket: string;
  readonly key: string;
  readonly uploadId: string | undefined;
  /** Look at the key: a completion (or single PutObject) was sent and may have landed. */
  readonly checkKey: boolean;
  /** Keep an object of exactly this size at the key (S3 completed our upload). */
  readonly keep: number | undefined;
  readonly timeoutMs: number;
}

/** Attempts of each clean-up step (abort, key check, delete), each bounded by its share of the clean-up's time. */
export const CLEANUP_ATTEMPTS = 4;

/**
 * After a failed upload: abort the multipart upload and make sure nothing is at the key, retrying
 * each step (S3 may be the thing that failed) within `timeoutMs`. Says what it could not remove.
 * Each attempt gets at most a quarter of the time (at least a second): one request that S3 never
 * answers must not use up the whole clean-up, as it did when the first attempt had all of it.
 */
async function cleanUp(r: CleanUpRequest): Promise<{ kept: boolean; leftover: Leftover | undefined }> {
  const deadline = Date.now() + r.timeoutMs;
  const attemptMs = Math.max(1000, Math.floor(r.timeoutMs / CLEANUP_ATTEMPTS));
  const retry = async <T>(what: (signal: AbortSignal) => Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> => {
    let last: unknown;
    for (let attempt = 0; attempt < CLEANUP_ATTEMPTS && Date.now() < deadline; attempt++) {
      if (attempt > 0) await new Promise((res) => setTimeout(res, Math.min(250 * 2 ** attempt, Math.max(0, deadline - Date.now()))));
      try {
        return { ok: true, value: await what(AbortSignal.timeout(Math.max(1, Math.min(attemptMs, deadline - Date.now())))) };
      } catch (err) {
        last = err;
      }
    }
    return { ok: false, error: last ?? new Error(`gave up after ${r.timeoutMs} ms`) };
  };
  const describe = (err: unknown) => `${(err as Error).name}: ${(err as Error).message}`;

  let objectSize: number | undefined;
  if (r.checkKey) {
    const listed = await retry(async (abortSignal) => {
      const res = await r.s3.send(new ListObjectsV2Command({ Bucket: r.bucket, Prefix: r.key, MaxKeys: 1 }), { abortSignal });
      const o = (res.Contents ?? []).find((c) => c.Key === r.key);
      return o ? (o.Size ?? 0) : undefined;
    });
    if (!listed.ok) return { kept: false, leftover: { uploadId: r.uploadId, objectKey: r.key, reason: `the key could not be checked: ${describe(listed.error)}` } };
    objectSize = listed.value;
    if (objectSize !== undefined && r.keep !== undefined && objectSize === r.keep) return { kept: true, leftover: undefined };
  }
  if (objectSize !== undefined) {
    const deleted = await retry((abortSignal) => r.s3.send(new DeleteObjectCommand({ Bucket: r.bucket, Key: r.key }), { abortSignal }));
    if (!deleted.ok) return { kept: false, leftover: { objectKey: r.key, reason: describe(deleted.error) } };
    // A completed upload has nothing left to abort.
    return { kept: false, leftover: undefined };
  }
  if (r.uploadId !== undefined) {
    const uploadId = r.uploadId;
    const aborted = await retry(async (abortSignal) => {
      try {
        await r.s3.send(new AbortMultipartUploadCommand({ Bucket: r.bucket, Key: r.key, UploadId: uploadId }), { abortSignal });
      } catch (err) {
        // Already gone (aborted by an earlier attempt whose answer was lost): done.
        if ((err as Error).name !== 'NoSuchUpload') throw err;
      }
    });
    if (!aborted.ok) return { kept: false, leftover: { uploadId, reason: describe(aborted.error) } };
  }
  return { kept: false, leftover: undefined };
}

function uploadHint(err: unknown): string {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  if (e.name === 'PreconditionFailed' || e.$metadata?.httpStatusCode === 412) return 'Another run wrote the same key at the same time; run again.';
  if (e.name === 'AccessDenied' || e.$metadata?.httpStatusCode === 403) return 'Grant the function s3:PutObject (and s3:AbortMultipartUpload) on the bucket prefix, and kms:GenerateDataKey if the bucket uses a KMS key.';
  if (e.name === 'NoSuchBucket') return 'Check BACKUP_BUCKET and the region.';
  if (e.name === 'TimeoutError' || /timed? ?out/i.test(String((err as Error).message))) {
    return 'S3 did not answer within the AWS_*_TIMEOUT_SECONDS bounds (every attempt): check the network path to S3 (VPC endpoint, NAT, proxy) and S3\'s health, then run the backup again.';
  }
  if (isCapabilityRefusal(err)) {
    return `The store refused a header it does not implement (${e.$metadata?.httpStatusCode ?? '?'} ${e.name ?? ''}: a conditional write or a checksum header), not a network failure: ` +
      'set STORAGE_PROFILE to the store\'s name (docs/configuration.md lists what each one lacks), or to auto so that the engine probes the bucket.';
  }
  return 'S3 was unavailable or unreachable after retries. Run the backup again; check the VPC endpoint or NAT if it persists.';
}
