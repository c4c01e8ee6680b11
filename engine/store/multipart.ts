/**
 * A stream → S3 multipart upload that stays out of pg_dump's way. On Lambda the function's one
 * CPU is shared with pg_dump, so every pass over the dump is taken from pg_dump. lib-storage
 * (used before) cost three SHA-256 passes per byte (the manifest's digest, the SDK's per-part
 * `x-amz-checksum-sha256`, SigV4's payload hash) and a concatenation copy per part. Here:
 *
 * - each chunk is copied once, into one of `queueSize + 1` reusable part buffers (memory is flat:
 *   (queueSize + 1) × partSize, whatever the dump size);
 * - one running SHA-256 over the whole stream: the manifest's digest, which restore verifies
 *   before touching the target and which `sha256sum` reproduces (the end-to-end check, unchanged);
 * - one SHA-256 per part, sent as the part's `x-amz-checksum-sha256` (S3 rejects a part whose
 *   bytes do not match it and keeps the object's composite SHA-256) *and* as SigV4's
 *   `x-amz-content-sha256` (the signer takes a present header as is instead of hashing the body
 *   again): two passes instead of three, integrity exactly as before.
 *
 * `partChecksum: 'CRC32'` (measured by the bench as a lever) replaces the per-part SHA-256 with a
 * CRC32 and sends the payload unsigned over HTTPS (TLS protects the wire): cheaper, but S3 then
 * keeps a CRC32, not a SHA-256, for multipart objects, so it is not the default.
 *
 * Every part goes on a kept-alive connection: the `Expect: 100-continue` header the S3 client adds
 * to large bodies is dropped, because the SDK's node handler answers it with a fresh connection
 * (TCP + TLS handshake) per request (see prepareBody).
 *
 * A stream shorter than one part goes up in one PutObject whose checksum is the whole-object
 * SHA-256 (one pass in all). Never overwrites (`If-None-Match: *`; on a store without conditional
 * writes, `conditional: false`, the caller's run-id key and check after writing take its place).
 * On failure the parts in flight settle, then the multipart upload is aborted.
 */
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCommand,
  type CompletedPart,
  type S3Client,
} from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import * as zlib from 'node:zlib';

/** S3's cap on the parts of one multipart upload (other stores: `maxParts`). */
const S3_MAX_PARTS = 10_000;

/** What a write must do for the store it goes to (engine/store/capabilities.ts): the uploader's and its callers' one list. */
export interface StoreWriteOptions {
  /** Checksum of each part of a multipart upload (default `PART_CHECKSUM`; the bench measures both); `none` for stores that refuse checksum headers. */
  readonly partChecksum?: PartChecksum | undefined;
  /**
   * The store's cap on parts (default S3's 10,000; Scaleway's is 1,000): the upload fails closed
   * (aborted) at the cap instead of sending a part the store refuses.
   */
  readonly maxParts?: number | undefined;
  /**
   * Send `If-None-Match: *` on the single PutObject and on CompleteMultipartUpload (default
   * true). False for stores that refuse it (B2: 501) or ignore it (Ceph): the caller then writes
   * to a key of its own run and checks the key afterwards (engine/store/s3-store.ts).
   */
  readonly conditional?: boolean | undefined;
}

export interface MultipartOptions extends StoreWriteOptions {
  readonly s3: Pick<S3Client, 'send'>;
  readonly bucket: string;
  readonly key: string;
  readonly partSize: number;
  readonly queueSize: number;
  readonly contentType: string;
}

/**
 * `SHA256`: S3 verifies and keeps a SHA-256 per part (and the composite of the object); the part
 * digest doubles as SigV4's signed payload hash: two SHA-256 passes per byte with the manifest's.
 * `CRC32`: one SHA-256 pass (the manifest's) plus a CRC32 per part, payload unsigned over HTTPS.
 * `none`: no checksum header at all, for stores that refuse them (B2, GCS's XML API): the part's
 * SHA-256 still signs the payload (SigV4), and the manifest's digest is the end-to-end check.
 */
export type PartChecksum = 'SHA256' | 'CRC32' | 'none';
export const PART_CHECKSUM: PartChecksum = 'SHA256';

export interface MultipartResult {
  readonly bytes: number;
  readonly partSize: number;
  readonly parts: number;
  /** SHA-256 of the whole stream, lowercase hex. */
  readonly sha256: string;
  /** How it went up: one PutObject, or a multipart upload. */
  readonly multipart: boolean;
  /** The ETag the store answered for the finished object: a later look at the key compares it. */
  readonly etag?: string | undefined;
}

/** CompleteMultipartUpload failed (as far as the client knows); `result` is what success would have returned. */
export class CompleteFailedError extends Error {
  constructor(
    cause: unknown,
    readonly result: MultipartResult,
  ) {
    super(`CompleteMultipartUpload: ${(cause as Error).name}: ${(cause as Error).message}`, { cause });
    this.name = 'CompleteFailedError';
  }
}

/** zlib.crc32 (node ≥ 20.15, 22.2); on older nodes the SDK computes the part's CRC32 itself. */
const crc32: ((data: Buffer) => number) | undefined = typeof (zlib as { crc32?: unknown }).crc32 === 'function' ? (d) => zlib.crc32(d) : undefined;

function crc32Base64(data: Buffer): string | undefined {
  if (!crc32) return undefined;
  const b = Buffer.alloc(4);
  b.writeUInt32BE(crc32(data) >>> 0);
  return b.toString('base64');
}

/**
 * Prepares a body-carrying request (UploadPart, the single PutObject):
 *
 * - sets SigV4's payload hash (`x-amz-content-sha256`; the signer takes a present header as is,
 *   and does not hash the body again): the part's own SHA-256 (hex) when we have it, else over
 *   HTTPS `UNSIGNED-PAYLOAD`. Over HTTP without a digest, the SDK's signed payload stays;
 * - drops the `Expect: 100-continue` the S3 client adds to bodies over 2 MB. With it, the SDK's
 *   node handler sends each such request on a fresh agent with keep-alive off: one new TCP + TLS
 *   connection (handshake, certificate check, a new secure context) per part, and a round trip
 *   waiting for `100 Continue` before the body. Without it the part goes on a kept-alive
 *   connection. (The header only lets S3 refuse a request before its body is sent; a refused
 *   part fails the upload either way.) `Expect` is never signed (SigV4 leaves it out), so
 *   removing it changes no signature. Runs after the SDK's build step (priority low).
 */
function prepareBody<C extends { middlewareStack: { add: (...a: never[]) => void } }>(command: C, sha256Hex: string | undefined): C {
  type Args = { request: unknown };
  const mw = (next: (args: Args) => Promise<unknown>) => async (args: Args) => {
    const req = args.request as { protocol?: string; headers?: Record<string, string> };
    if (req && typeof req === 'object' && req.headers) {
      if (sha256Hex) req.headers['x-amz-content-sha256'] = sha256Hex;
      else if (req.protocol === 'https:') req.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
      for (const name of Object.keys(req.headers)) if (name.toLowerCase() === 'expect') delete req.headers[name];
    }
    return next(args);
  };
  (command.middlewareStack.add as unknown as (m: typeof mw, o: { step: string; priority: string; name: string; override: boolean }) => void)(mw, {
    step: 'build',
    priority: 'low',
    name: 'pgS3BackupPrepareBody',
    override: true,
  });
  return command;
}

/** The part's checksum as CompleteMultipartUpload wants it back (none when none was sent). */
function partChecksumOf(algorithm: PartChecksum, res: { ChecksumSHA256?: string | undefined; ChecksumCRC32?: string | undefined }, sent: { ChecksumSHA256?: string; ChecksumCRC32?: string } | undefined): Partial<CompletedPart> {
  if (algorithm === 'SHA256') return { ChecksumSHA256: res.ChecksumSHA256 ?? sent?.ChecksumSHA256 };
  if (algorithm === 'CRC32') return { ChecksumCRC32: sent?.ChecksumCRC32 ?? res.ChecksumCRC32 };
  return {};
}

/**
 * One upload in progress. Bytes come in two ways:
 *
 * - `region()` + `commit(n)`: the reader writes straight into the free end of the current part
 *   buffer (the tool's output read by net's `onread`, engine/pg/dump-gate.ts) and says how much it wrote:
 *   no copy, no per-read allocation;
 * - `write(chunk)`: a chunk is copied into the part buffers (any other stream: encryption, tests).
 *
 * A full part is sealed at once (hashed, numbered, the next buffer taken), then sent; `commit`
 * and `write` return a promise to wait on only when `queueSize` parts are in flight. At most
 * `queueSize + 1` part buffers exist, reused: memory is flat whatever the dump size.
 */
export class MultipartUpload {
  private readonly queueSize: number;
  private readonly maxParts: number;
  private readonly ifNoneMatch: { IfNoneMatch?: string };
  private readonly whole = createHash('sha256');
  private readonly algorithm: PartChecksum;
  private readonly pool: Buffer[] = [];
  private current: Buffer;
  private fill = 0;
  private bytes = 0;
  private parts = 0;
  private readonly completed: CompletedPart[] = [];
  private readonly inflight = new Set<Promise<void>>();
  private creating: Promise<string> | undefined;
  private uploadId: string | undefined;
  private failure: unknown;
  private hasFailed = false;
  /** Resolves the wait of `commit`/`write` when a part slot frees or the upload fails. */
  private wake: (() => void) | undefined;

  constructor(private readonly opts: MultipartOptions) {
    this.queueSize = Math.max(1, opts.queueSize);
    this.maxParts = opts.maxParts ?? S3_MAX_PARTS;
    this.ifNoneMatch = opts.conditional === false ? {} : { IfNoneMatch: '*' };
    this.algorithm = opts.partChecksum ?? PART_CHECKSUM;
    this.current = this.take();
  }

  private take(): Buffer {
    return this.pool.pop() ?? Buffer.allocUnsafe(this.opts.partSize);
  }

  /** The first error of a part (or of the multipart upload's creation), if any. */
  get error(): unknown {
    return this.failure;
  }

  /** Where the next bytes go: the free end of the current part buffer (never empty). */
  region(): Buffer {
    return this.current.subarray(this.fill);
  }

  /**
   * `n` bytes were written at the start of `region()`. Seals the part when it is full; returns a
   * promise when the caller must wait (every part slot busy) before writing more, else
   * undefined. Throws the upload's error once a part has failed.
   */
  commit(n: number): Promise<void> | undefined {
    if (this.hasFailed) throw this.failure;
    this.fill += n;
    this.bytes += n;
    if (this.fill < this.opts.partSize) return undefined;
    this.sealAndSend();
    return this.inflight.size >= this.queueSize ? this.slot() : undefined;
  }

  /** Copies `chunk` into the part buffers, waiting for a free slot as needed. */
  async write(chunk: Buffer): Promise<void> {
    let off = 0;
    while (off < chunk.length) {
      const into = this.region();
      const n = Math.min(into.length, chunk.length - off);
      chunk.copy(into, 0, off, off + n);
      off += n;
      const wait = this.commit(n);
      if (wait) await wait;
      if (this.hasFailed) throw this.failure;
    }
  }

  /** Waits until fewer than `queueSize` parts are in flight (or one failed). */
  private async slot(): Promise<void> {
    while (this.inflight.size >= this.queueSize && !this.hasFailed) await new Promise<void>((resolve) => (this.wake = resolve));
    if (this.hasFailed) throw this.failure;
  }

  private fail(err: unknown): void {
    if (!this.hasFailed) {
      this.hasFailed = true;
      this.failure = err;
    }
  }

  /**
   * The part in `current[0, fill)`: hashed into the whole-stream digest and with its own checksum,
   * numbered, sent; the next part buffer is taken at once, so `region()` is valid right away.
   */
  private sealAndSend(last = false): void {
    const { s3, bucket, key, partSize } = this.opts;
    if (this.parts >= this.maxParts) {
      this.fail(new RangeError(`the dump outgrew the store's ${this.maxParts} parts of ${partSize} bytes: upload aborted`));
      throw this.failure;
    }
    const buf = this.current;
    const body = buf.subarray(0, this.fill);
    this.whole.update(body);
    let sha256Hex: string | undefined;
    let checksum: { ChecksumAlgorithm: 'SHA256'; ChecksumSHA256: string } | { ChecksumAlgorithm: 'CRC32'; ChecksumCRC32: string } | Record<string, never> | undefined;
    if (this.algorithm === 'SHA256') {
      const d = createHash('sha256').update(body).digest();
      sha256Hex = d.toString('hex');
      checksum = { ChecksumAlgorithm: 'SHA256', ChecksumSHA256: d.toString('base64') };
    } else if (this.algorithm === 'none') {
      // No checksum header (stores that refuse them); the part's SHA-256 still signs the payload.
      sha256Hex = createHash('sha256').update(body).digest('hex');
      checksum = {};
    } else {
      const crc = crc32Base64(body);
      checksum = crc ? { ChecksumAlgorithm: 'CRC32', ChecksumCRC32: crc } : undefined;
    }
    const partNumber = ++this.parts;
    // The last part takes no next buffer.
    this.current = last ? Buffer.alloc(0) : this.take();
    this.fill = 0;
    this.creating ??= s3
      .send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ContentType: this.opts.contentType, ...(this.algorithm === 'none' ? {} : { ChecksumAlgorithm: this.algorithm }) }))
      .then((res) => {
        if (!res.UploadId) throw new Error('CreateMultipartUpload returned no UploadId');
        return (this.uploadId = res.UploadId);
      });
    const algorithm = this.algorithm;
    const p: Promise<void> = this.creating
      .then((uploadId) =>
        s3.send(
          prepareBody(
            new UploadPartCommand({
              Bucket: bucket, Key: key, UploadId: uploadId, PartNumber: partNumber, Body: body, ContentLength: body.length,
              ...(checksum ?? { ChecksumAlgorithm: algorithm as 'CRC32' }),
            }),
            sha256Hex,
          ),
        ),
      )
      .then(
        (res) => {
          this.completed[partNumber - 1] = { PartNumber: partNumber, ETag: res.ETag, ...partChecksumOf(algorithm, res, checksum as { ChecksumSHA256?: string; ChecksumCRC32?: string } | undefined) };
          // The SDK is done with the buffer (retries included): it can take a next part.
          this.pool.push(buf);
        },
        (err: unknown) => this.fail(err),
      )
      .finally(() => {
        this.inflight.delete(p);
        const wake = this.wake;
        this.wake = undefined;
        wake?.();
      });
    this.inflight.add(p);
  }

  /**
   * The end of the stream: the last part and CompleteMultipartUpload, or for a stream shorter than
   * one part a single PutObject. Throws CompleteFailedError when only the completion failed.
   */
  async finish(): Promise<MultipartResult> {
    const { s3, bucket, key, partSize } = this.opts;
    if (this.hasFailed) throw this.failure;
    if (this.parts === 0) {
      // Shorter than one part: one PutObject, whose checksum is the whole object's SHA-256 (S3
      // keeps it) and doubles as the signed payload hash: one hash pass in all.
      const body = this.current.subarray(0, this.fill);
      const digest = this.whole.update(body).digest();
      const checksum = this.algorithm === 'none' ? {} : { ChecksumAlgorithm: 'SHA256' as const, ChecksumSHA256: digest.toString('base64') };
      const put = await s3.send(
        prepareBody(
          new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentLength: body.length, ContentType: this.opts.contentType, ...this.ifNoneMatch, ...checksum }),
          digest.toString('hex'),
        ),
      );
      return { bytes: this.bytes, partSize, parts: 1, sha256: digest.toString('hex'), multipart: false, etag: put.ETag };
    }
    if (this.fill > 0) this.sealAndSend(true);
    while (this.inflight.size > 0) await Promise.race(this.inflight);
    if (this.hasFailed) throw this.failure;
    const sha256 = this.whole.digest('hex');
    const result: MultipartResult = { bytes: this.bytes, partSize, parts: this.parts, sha256, multipart: true };
    let etag: string | undefined;
    try {
      etag = (await s3.send(
        new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: this.uploadId, MultipartUpload: { Parts: this.completed }, ...this.ifNoneMatch }),
      )).ETag;
    } catch (err) {
      // S3 may have completed it and the answer was lost: the caller looks at the key, and needs
      // what a success would have returned.
      throw new CompleteFailedError(err, result);
    }
    return { ...result, etag };
  }

  /**
   * After a failure: the parts in flight finish (or fail), as with lib-storage, so that the
   * caller's AbortMultipartUpload finds no part being written. The multipart upload itself is
   * aborted by the caller (stream-upload.ts's clean-up, retried within its own bound), once.
   */
  async abort(reason?: unknown): Promise<void> {
    this.fail(reason ?? new Error('upload aborted'));
    this.wake?.();
    await Promise.allSettled([...this.inflight, ...(this.creating ? [this.creating] : [])]);
  }
}

/**
 * Uploads `source` to `key`. Resolves once the object is complete; rejects when the source errors
 * or S3 fails, once no part is in flight (the caller aborts the multipart upload).
 */
export async function uploadMultipart(source: AsyncIterable<Buffer>, opts: MultipartOptions): Promise<MultipartResult> {
  const upload = new MultipartUpload(opts);
  try {
    for await (const chunk of source) await upload.write(chunk);
    return await upload.finish();
  } catch (err) {
    await upload.abort(err);
    throw err;
  }
}
