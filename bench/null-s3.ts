/**
 * A null S3 endpoint for the benchmark: speaks enough of the S3 REST API for the engine (SDK v3),
 * the AWS CLI (`aws s3 cp -`, `ls`, `rm`) and restore, over HTTP and HTTPS (a self-signed
 * certificate made with openssl at start), and throws large bodies away. It exists because a
 * real-S3 stand-in that stores everything (moto: one Python process) cannot absorb 150 MB/s on
 * one core, so it, not the uploader, set the pace of the old bench.
 *
 * What it does with a request body: counts the bytes (decoding `aws-chunked` framing, as the AWS
 * CLI sends over HTTPS), optionally verifies the checksums the client declared
 * (`x-amz-checksum-sha256`, `-crc32`, a hex `x-amz-content-sha256`, trailing checksums), keeps
 * small bodies (≤ 1 MiB: manifests, globals) in memory and, for keys under a `--keep-prefix`,
 * writes the body to a file so that it can be downloaded again (the restore figures). Everything
 * else is discarded after counting: memory stays flat whatever the dump size.
 *
 * Operations: CreateBucket, HeadBucket, DeleteBucket, CreateMultipartUpload, UploadPart,
 * CompleteMultipartUpload (with S3's 5 MiB minimum part size, If-None-Match and the composite
 * checksum), AbortMultipartUpload, ListMultipartUploads, PutObject, ListObjectsV2, GetObject
 * (ranges too) and HeadObject of what it kept, DeleteObject, DeleteObjects. No signature check:
 * any credentials are accepted.
 *
 * Run as a process (the bench bundles it and pins it to a CPU with taskset):
 *   node null-s3.mjs [--verify] [--keep-prefix p/]… [--dir <tmp>]
 * prints one JSON line `{"http":…, "https":…, "ca":…}` once both listeners are up, and stops on
 * SIGTERM. `GET /__null/stats` returns its counters; `POST /__null/reset-stats` zeroes them;
 * `POST /__null/verify?on=1|0` switches checksum verification.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, type WriteStream } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';

const MiB = 1024 * 1024;
/** Bodies up to this size are kept in memory (manifests, globals, anything small enough to list and read back). */
export const KEEP_IN_MEMORY_BYTES = MiB;
export const MIN_PART_SIZE = 5 * MiB;

// ---------------------------------------------------------------------------------------------
// Pure helpers (unit-tested).

/**
 * Decoder for `Content-Encoding: aws-chunked` bodies: `<hex size>[;chunk-signature=…]\r\n<data>\r\n`
 * … `0[;…]\r\n<trailer: value\r\n>*\r\n`. `push` hands each data slice (a view, not a copy) to
 * `onData`; trailers are collected in `trailers` (lowercase names).
 */
export class AwsChunkedDecoder {
  readonly trailers: Record<string, string> = {};
  private state: 'size' | 'data' | 'data-crlf' | 'trailer' | 'done' = 'size';
  private line = '';
  private remaining = 0;
  private crlfLeft = 0;
  constructor(private readonly onData: (slice: Buffer) => void) {}

  get done(): boolean {
    return this.state === 'done';
  }

  push(chunk: Buffer): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.state === 'data') {
        const n = Math.min(this.remaining, chunk.length - i);
        this.onData(chunk.subarray(i, i + n));
        i += n;
        this.remaining -= n;
        if (this.remaining === 0) {
          this.state = 'data-crlf';
          this.crlfLeft = 2;
        }
      } else if (this.state === 'data-crlf') {
        i++;
        if (--this.crlfLeft === 0) this.state = 'size';
      } else if (this.state === 'done') {
        return;
      } else {
        // A header or trailer line: short, so byte-wise is fine.
        const nl = chunk.indexOf(0x0a, i);
        const end = nl === -1 ? chunk.length : nl;
        this.line += chunk.toString('latin1', i, end);
        i = end;
        if (nl === -1) continue;
        i++;
        const line = this.line.replace(/\r$/, '');
        this.line = '';
        if (this.state === 'size') {
          const size = Number.parseInt(line.split(';')[0]!, 16);
          if (!Number.isFinite(size)) throw new Error(`aws-chunked: bad chunk header ${JSON.stringify(line.slice(0, 80))}`);
          if (size === 0) this.state = 'trailer';
          else {
            this.remaining = size;
            this.state = 'data';
          }
        } else if (line === '') {
          this.state = 'done';
        } else {
          const colon = line.indexOf(':');
          if (colon > 0) this.trailers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
        }
      }
    }
  }
}

/**
 * S3's composite checksum of a multipart object: the checksum of the concatenated binary part
 * checksums, base64, then `-<parts>`. For SHA-256 and CRC32 alike.
 */
export function compositeChecksum(algorithm: 'sha256' | 'crc32', partChecksumsBase64: readonly string[]): string {
  const joined = Buffer.concat(partChecksumsBase64.map((c) => Buffer.from(c, 'base64')));
  const digest = algorithm === 'sha256' ? createHash('sha256').update(joined).digest() : crc32Bytes(crc32(joined));
  return `${digest.toString('base64')}-${partChecksumsBase64.length}`;
}

function crc32Bytes(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value >>> 0);
  return b;
}

export function xmlEscape(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!);
}

export function xmlUnescape(s: string): string {
  return s.replace(/&(lt|gt|amp|apos|quot|#\d+|#x[0-9a-f]+);/gi, (_m, e: string) => {
    const named: Record<string, string> = { lt: '<', gt: '>', amp: '&', apos: "'", quot: '"' };
    if (named[e.toLowerCase()]) return named[e.toLowerCase()]!;
    return String.fromCodePoint(e[1]?.toLowerCase() === 'x' ? Number.parseInt(e.slice(2), 16) : Number(e.slice(1)));
  });
}

/** `<Tag>value</Tag>` occurrences of a tag in a small XML document (request bodies of S3 calls). */
export function xmlValues(xml: string, tag: string): string[] {
  const out: string[] = [];
  const re = new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, 'g');
  for (let m = re.exec(xml); m; m = re.exec(xml)) out.push(xmlUnescape(m[1]!));
  return out;
}

/** `bytes=a-b`, `bytes=a-`, `bytes=-n` → inclusive [start, end] within `size`; undefined: not satisfiable. */
export function parseRange(header: string, size: number): [number, number] | undefined {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  let start: number;
  let end: number;
  if (m[1] === '') {
    start = Math.max(0, size - Number(m[2]));
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  return start <= end && start < size ? [start, end] : undefined;
}

// ---------------------------------------------------------------------------------------------
// The store: what is kept of each object.

/** A body as kept: in memory, in files (one per part, in order), or only its size. */
interface Stored {
  readonly size: number;
  readonly memory?: Buffer | undefined;
  readonly files?: readonly { path: string; size: number }[] | undefined;
}

interface ObjectRecord extends Stored {
  readonly etag: string;
  readonly lastModified: Date;
  readonly contentType: string;
  /** x-amz-checksum-* headers to answer HeadObject/GetObject with (checksum mode). */
  readonly checksums: Readonly<Record<string, string>>;
}

interface PartRecord extends Stored {
  readonly etag: string;
  readonly checksums: Readonly<Record<string, string>>;
}

interface UploadRecord {
  readonly bucket: string;
  readonly key: string;
  readonly initiated: Date;
  readonly contentType: string;
  readonly checksumAlgorithm: string | undefined;
  readonly parts: Map<number, PartRecord>;
  readonly dir: string | undefined;
}

export interface NullS3Stats {
  readonly requests: Record<string, number>;
  /** Payload bytes received (aws-chunked framing removed). */
  bytesIn: number;
  /** Bytes thrown away (not kept in memory or on disk). */
  bytesDiscarded: number;
  /** Checksums computed and matching / not matching / declared in a form not checked (crc32c, crc64nvme…). */
  checksumsVerified: number;
  checksumMismatches: number;
  checksumsUnverified: number;
  /** Requests answered with an error status. */
  errors: number;
  /** Object bodies (PutObject, UploadPart) by SigV4 payload hash: a hex SHA-256, UNSIGNED-PAYLOAD, STREAMING-…. */
  readonly payloadHash: Record<string, number>;
  /** Object bodies by declared checksum algorithm (`sha256`, `crc32`, … or `none`). */
  readonly bodyChecksums: Record<string, number>;
  /** Connections accepted (TCP, HTTP and HTTPS): a client that keeps them alive opens few. */
  connections: number;
  /** Requests that asked for `Expect: 100-continue`. */
  expectContinue: number;
  readonly startedAt: string;
}

function newStats(): NullS3Stats {
  return { requests: {}, bytesIn: 0, bytesDiscarded: 0, checksumsVerified: 0, checksumMismatches: 0, checksumsUnverified: 0, errors: 0, payloadHash: {}, bodyChecksums: {}, connections: 0, expectContinue: 0, startedAt: new Date().toISOString() };
}

export interface NullS3Options {
  /** Verify declared checksums (costs one hash pass over every body on the endpoint's CPU). */
  verify?: boolean;
  /** Keys under these prefixes are written to files and can be read back whatever their size. */
  keepPrefixes?: readonly string[];
  /** Work folder (certificate, kept bodies); a temporary one by default, removed on close. */
  dir?: string;
}

export interface NullS3 {
  readonly http: string;
  readonly https: string;
  /** The self-signed certificate (PEM file) to trust: NODE_EXTRA_CA_CERTS, `aws --ca-bundle`. */
  readonly ca: string;
  readonly stats: () => NullS3Stats;
  close(): Promise<void>;
}

class S3Error extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const XML_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n';
const NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"';

/** The checksum headers S3 defines, by algorithm. */
const CHECKSUM_HEADERS = ['x-amz-checksum-sha256', 'x-amz-checksum-crc32', 'x-amz-checksum-crc32c', 'x-amz-checksum-crc64nvme', 'x-amz-checksum-sha1'] as const;

/** Self-signed certificate for 127.0.0.1 and localhost (P-256: cheap handshakes), valid one day. */
export function makeCertificate(dir: string): { key: string; cert: string } {
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  const r = spawnSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new Error(`openssl could not make the null endpoint's certificate: ${r.stderr?.toString() ?? r.error?.message}`);
  return { key, cert };
}

export async function startNullS3(options: NullS3Options = {}): Promise<NullS3> {
  const ownDir = options.dir === undefined;
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'pgs3b-null-s3-'));
  mkdirSync(dir, { recursive: true });
  const keepDir = join(dir, 'kept');
  mkdirSync(keepDir, { recursive: true });
  let verify = options.verify ?? false;
  const keepPrefixes = options.keepPrefixes ?? [];
  const buckets = new Map<string, Map<string, ObjectRecord>>();
  const uploads = new Map<string, UploadRecord>();
  let stats = newStats();
  let seq = 0;

  const keepOnDisk = (key: string) => keepPrefixes.some((p) => key.startsWith(p));
  const count = (op: string) => (stats.requests[op] = (stats.requests[op] ?? 0) + 1);
  const bucketOf = (name: string) => {
    const b = buckets.get(name);
    if (!b) throw new S3Error(404, 'NoSuchBucket', `The specified bucket does not exist: ${name}`);
    return b;
  };
  const dropStored = (s: Stored | undefined) => {
    for (const f of s?.files ?? []) rmSync(f.path, { force: true });
  };

  /**
   * Reads a request body: counts it, decodes aws-chunked, hashes it when verifying, and keeps it
   * in memory (small) or in `file` (kept prefixes). Resolves with the stored body and the
   * checksums the client declared (headers or trailers), verified when asked.
   */
  async function readBody(req: IncomingMessage, file: string | undefined, payload = true): Promise<{ stored: Stored; checksums: Record<string, string> }> {
    const h = req.headers;
    const chunked = /aws-chunked/i.test(String(h['content-encoding'] ?? ''));
    const declaredSha = CHECKSUM_HEADERS.filter((n) => h[n] !== undefined);
    const contentSha = String(h['x-amz-content-sha256'] ?? '');
    const trailer = String(h['x-amz-trailer'] ?? '').toLowerCase();
    const wantSha256 = verify && (declaredSha.includes('x-amz-checksum-sha256') || /^[0-9a-f]{64}$/.test(contentSha) || trailer === 'x-amz-checksum-sha256');
    const wantCrc32 = verify && (declaredSha.includes('x-amz-checksum-crc32') || trailer === 'x-amz-checksum-crc32');
    const sha = wantSha256 ? createHash('sha256') : undefined;
    let crc = 0;
    let size = 0;
    const small: Buffer[] = [];
    let out: WriteStream | undefined = file ? createWriteStream(file) : undefined;
    // A client that cancels its request mid-body (the uploader cancels the parts in flight when
    // the backup fails) has this stream destroyed with a write pending: that error is expected.
    out?.on('error', () => {});
    const onData = (slice: Buffer) => {
      size += slice.length;
      sha?.update(slice);
      if (wantCrc32) crc = crc32(slice, crc);
      if (out) {
        if (!out.write(slice)) {
          req.pause();
          out.once('drain', () => req.resume());
        }
      } else if (size <= KEEP_IN_MEMORY_BYTES) small.push(slice);
    };
    const decoder = chunked ? new AwsChunkedDecoder(onData) : undefined;
    await new Promise<void>((resolve, reject) => {
      req.on('data', (c: Buffer) => {
        try {
          if (decoder) decoder.push(c);
          else onData(c);
        } catch (err) {
          reject(err as Error);
        }
      });
      req.once('end', resolve);
      req.once('error', reject);
      req.once('aborted', () => reject(new Error('client aborted the request')));
    }).catch((err: unknown) => {
      out?.destroy();
      if (file) rmSync(file, { force: true });
      throw err;
    });
    if (out) {
      const o = out;
      await new Promise<void>((resolve, reject) => o.end((err?: Error | null) => (err ? reject(err) : resolve())));
      out = undefined;
    }
    const checksums: Record<string, string> = {};
    for (const n of declaredSha) checksums[n] = String(h[n]);
    for (const [n, v] of Object.entries(decoder?.trailers ?? {})) if (n.startsWith('x-amz-checksum-')) checksums[n] = v;
    const declared = Object.keys(checksums);
    if (payload) {
      stats.bytesIn += size;
      const kind = /^[0-9a-f]{64}$/.test(contentSha) ? 'sha256-hex' : contentSha || 'absent';
      stats.payloadHash[kind] = (stats.payloadHash[kind] ?? 0) + 1;
      for (const alg of declared.length ? declared.map((n) => n.slice('x-amz-checksum-'.length)) : ['none']) stats.bodyChecksums[alg] = (stats.bodyChecksums[alg] ?? 0) + 1;
    }
    if (verify) {
      const shaDigest = sha?.digest();
      const fail = (what: string) => {
        stats.checksumMismatches++;
        if (file) rmSync(file, { force: true });
        throw new S3Error(400, what === 'x-amz-content-sha256' ? 'XAmzContentSHA256Mismatch' : 'BadDigest', `the ${what} you specified did not match the calculated checksum`);
      };
      if (/^[0-9a-f]{64}$/.test(contentSha)) {
        if (shaDigest!.toString('hex') !== contentSha) fail('x-amz-content-sha256');
        stats.checksumsVerified++;
      }
      for (const n of declared) {
        if (n === 'x-amz-checksum-sha256') {
          if (shaDigest!.toString('base64') !== checksums[n]) fail(n);
          stats.checksumsVerified++;
        } else if (n === 'x-amz-checksum-crc32') {
          if (crc32Bytes(crc).toString('base64') !== checksums[n]) fail(n);
          stats.checksumsVerified++;
        } else {
          stats.checksumsUnverified++;
        }
      }
    }
    if (file) return { stored: { size, files: [{ path: file, size }] }, checksums };
    if (size <= KEEP_IN_MEMORY_BYTES) return { stored: { size, memory: Buffer.concat(small) }, checksums };
    stats.bytesDiscarded += size;
    return { stored: { size }, checksums };
  }

  /** An S3 call's own XML body (not object data: not counted in bytesIn). */
  const readSmall = async (req: IncomingMessage): Promise<string> => (await readBody(req, undefined, false)).stored.memory?.toString('utf8') ?? '';

  function send(res: ServerResponse, status: number, body: string | Buffer = '', headers: Record<string, string | number> = {}): void {
    if (status >= 400) stats.errors++;
    const b = typeof body === 'string' ? Buffer.from(body) : body;
    res.writeHead(status, { 'content-length': b.length, 'x-amz-request-id': `null-${++seq}`, ...(b.length ? { 'content-type': 'application/xml' } : {}), ...headers });
    res.end(b);
  }

  const etagOf = (what: string) => `"${createHash('md5').update(what).digest('hex')}"`;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://null');
    const q = url.searchParams;
    const method = req.method ?? 'GET';
    if (url.pathname.startsWith('/__null/')) return admin(url, method, res);
    // Path style only: /<bucket>/<key…>.
    const slash = url.pathname.indexOf('/', 1);
    const bucketName = decodeURIComponent(slash === -1 ? url.pathname.slice(1) : url.pathname.slice(1, slash));
    const key = slash === -1 ? '' : decodeURIComponent(url.pathname.slice(slash + 1));
    if (!bucketName) {
      count('ListBuckets');
      const list = [...buckets.keys()].map((b) => `<Bucket><Name>${xmlEscape(b)}</Name><CreationDate>${new Date().toISOString()}</CreationDate></Bucket>`).join('');
      return send(res, 200, `${XML_HEAD}<ListAllMyBucketsResult ${NS}><Buckets>${list}</Buckets></ListAllMyBucketsResult>`);
    }
    if (!key) return bucketOp(bucketName, method, q, req, res);

    const bucket = bucketOf(bucketName);
    if (method === 'POST' && q.has('uploads')) {
      count('CreateMultipartUpload');
      await readSmall(req);
      const id = randomUUID();
      const upDir = keepOnDisk(key) ? join(keepDir, id) : undefined;
      if (upDir) mkdirSync(upDir);
      const algorithm = req.headers['x-amz-checksum-algorithm'] ? String(req.headers['x-amz-checksum-algorithm']) : undefined;
      uploads.set(id, { bucket: bucketName, key, initiated: new Date(), contentType: String(req.headers['content-type'] ?? 'binary/octet-stream'), checksumAlgorithm: algorithm, parts: new Map(), dir: upDir });
      return send(res, 200, `${XML_HEAD}<InitiateMultipartUploadResult ${NS}><Bucket>${xmlEscape(bucketName)}</Bucket><Key>${xmlEscape(key)}</Key><UploadId>${id}</UploadId></InitiateMultipartUploadResult>`, algorithm ? { 'x-amz-checksum-algorithm': algorithm } : {});
    }
    if (method === 'PUT' && q.has('uploadId')) {
      count('UploadPart');
      const up = uploadOf(q.get('uploadId')!, bucketName, key);
      const n = Number(q.get('partNumber'));
      if (!Number.isInteger(n) || n < 1 || n > 10_000) throw new S3Error(400, 'InvalidArgument', 'Part number must be an integer between 1 and 10000, inclusive');
      const { stored, checksums } = await readBody(req, up.dir ? join(up.dir, String(n)) : undefined);
      const etag = etagOf(`${q.get('uploadId')}/${n}/${stored.size}/${Date.now()}`);
      dropStored(up.parts.get(n));
      up.parts.set(n, { ...stored, etag, checksums });
      return send(res, 200, '', { etag, ...checksums });
    }
    if (method === 'POST' && q.has('uploadId')) {
      count('CompleteMultipartUpload');
      return complete(bucket, key, q.get('uploadId')!, req, res);
    }
    if (method === 'DELETE' && q.has('uploadId')) {
      count('AbortMultipartUpload');
      const up = uploadOf(q.get('uploadId')!, bucketName, key);
      for (const p of up.parts.values()) dropStored(p);
      if (up.dir) rmSync(up.dir, { recursive: true, force: true });
      uploads.delete(q.get('uploadId')!);
      return send(res, 204);
    }
    if (method === 'PUT') {
      count('PutObject');
      if (req.headers['x-amz-copy-source']) throw new S3Error(501, 'NotImplemented', 'CopyObject is not supported by the null endpoint');
      const file = keepOnDisk(key) ? join(keepDir, randomUUID()) : undefined;
      const { stored, checksums } = await readBody(req, file);
      if (String(req.headers['if-none-match'] ?? '') === '*' && bucket.has(key)) {
        dropStored(stored);
        throw new S3Error(412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold');
      }
      const etag = etagOf(`${bucketName}/${key}/${stored.size}/${Date.now()}/${++seq}`);
      dropStored(bucket.get(key));
      bucket.set(key, { ...stored, etag, lastModified: new Date(), contentType: String(req.headers['content-type'] ?? 'binary/octet-stream'), checksums });
      return send(res, 200, '', { etag, ...checksums });
    }
    if (method === 'GET' || method === 'HEAD') {
      count(method === 'GET' ? 'GetObject' : 'HeadObject');
      const obj = bucket.get(key);
      if (!obj) {
        if (method === 'HEAD') return send(res, 404);
        throw new S3Error(404, 'NoSuchKey', 'The specified key does not exist.');
      }
      return getObject(obj, method, req, res);
    }
    if (method === 'DELETE') {
      count('DeleteObject');
      dropStored(bucket.get(key));
      bucket.delete(key);
      return send(res, 204);
    }
    throw new S3Error(405, 'MethodNotAllowed', `${method} is not supported here`);
  }

  function uploadOf(id: string, bucket: string, key: string): UploadRecord {
    const up = uploads.get(id);
    if (!up || up.bucket !== bucket || up.key !== key) throw new S3Error(404, 'NoSuchUpload', 'The specified upload does not exist.');
    return up;
  }

  async function complete(bucket: Map<string, ObjectRecord>, key: string, id: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const up = uploads.get(id);
    const body = await readSmall(req);
    if (!up) throw new S3Error(404, 'NoSuchUpload', 'The specified upload does not exist.');
    const listed = xmlValues(body, 'Part').map((p) => ({ n: Number(xmlValues(p, 'PartNumber')[0]), etag: xmlValues(p, 'ETag')[0], sha256: xmlValues(p, 'ChecksumSHA256')[0], crc32: xmlValues(p, 'ChecksumCRC32')[0] }));
    if (!listed.length) throw new S3Error(400, 'MalformedXML', 'The XML you provided was not well-formed or did not validate against our published schema');
    const parts: PartRecord[] = [];
    listed.forEach((p, i) => {
      const part = up.parts.get(p.n);
      if (!part || (p.etag !== undefined && p.etag.replace(/"/g, '') !== part.etag.replace(/"/g, ''))) throw new S3Error(400, 'InvalidPart', `part ${p.n} was not uploaded or its ETag does not match`);
      if (i > 0 && p.n <= listed[i - 1]!.n) throw new S3Error(400, 'InvalidPartOrder', 'The list of parts was not in ascending order.');
      if (p.sha256 !== undefined && p.sha256 !== part.checksums['x-amz-checksum-sha256']) throw new S3Error(400, 'InvalidPart', `part ${p.n}: ChecksumSHA256 differs from the one uploaded`);
      if (p.crc32 !== undefined && p.crc32 !== part.checksums['x-amz-checksum-crc32']) throw new S3Error(400, 'InvalidPart', `part ${p.n}: ChecksumCRC32 differs from the one uploaded`);
      parts.push(part);
    });
    parts.slice(0, -1).forEach((p, i) => {
      if (p.size < MIN_PART_SIZE) throw new S3Error(400, 'EntityTooSmall', `part ${listed[i]!.n} is ${p.size} bytes; every part but the last must be at least 5 MiB`);
    });
    if (String(req.headers['if-none-match'] ?? '') === '*' && bucket.has(key)) throw new S3Error(412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold');
    const checksums: Record<string, string> = {};
    const fullType = String(req.headers['x-amz-checksum-type'] ?? '').toUpperCase() === 'FULL_OBJECT';
    for (const h of CHECKSUM_HEADERS) if (req.headers[h]) checksums[h] = String(req.headers[h]);
    if (!fullType) {
      if (parts.every((p) => p.checksums['x-amz-checksum-sha256'])) checksums['x-amz-checksum-sha256'] = compositeChecksum('sha256', parts.map((p) => p.checksums['x-amz-checksum-sha256']!));
      else if (parts.every((p) => p.checksums['x-amz-checksum-crc32'])) checksums['x-amz-checksum-crc32'] = compositeChecksum('crc32', parts.map((p) => p.checksums['x-amz-checksum-crc32']!));
    }
    const size = parts.reduce((s, p) => s + p.size, 0);
    const files = up.dir ? parts.flatMap((p) => p.files ?? []) : undefined;
    // Parts uploaded but not listed are dropped, as S3 does.
    for (const [n, p] of up.parts) if (!listed.some((l) => l.n === n)) dropStored(p);
    const etag = `"${createHash('md5').update(parts.map((p) => p.etag).join('')).digest('hex')}-${parts.length}"`;
    dropStored(bucket.get(key));
    bucket.set(key, { size, files, memory: undefined, etag, lastModified: new Date(), contentType: up.contentType, checksums: { ...checksums, 'x-amz-checksum-type': fullType ? 'FULL_OBJECT' : 'COMPOSITE' } });
    uploads.delete(id);
    const checksumXml = Object.entries(checksums).map(([h, v]) => {
      const tag = `Checksum${h.slice('x-amz-checksum-'.length).toUpperCase()}`;
      return `<${tag}>${v}</${tag}>`;
    }).join('');
    send(res, 200, `${XML_HEAD}<CompleteMultipartUploadResult ${NS}><Location>/${xmlEscape(up.bucket)}/${xmlEscape(key)}</Location><Bucket>${xmlEscape(up.bucket)}</Bucket><Key>${xmlEscape(key)}</Key><ETag>${xmlEscape(etag)}</ETag>${checksumXml}</CompleteMultipartUploadResult>`);
  }

  function getObject(obj: ObjectRecord, method: string, req: IncomingMessage, res: ServerResponse): void {
    const readable = obj.memory !== undefined || obj.files !== undefined;
    const base: Record<string, string | number> = {
      etag: obj.etag,
      'last-modified': obj.lastModified.toUTCString(),
      'content-type': obj.contentType,
      'accept-ranges': 'bytes',
      'x-amz-request-id': `null-${++seq}`,
    };
    if (String(req.headers['x-amz-checksum-mode'] ?? '').toUpperCase() === 'ENABLED') Object.assign(base, obj.checksums);
    if (method === 'HEAD') {
      res.writeHead(200, { ...base, 'content-length': obj.size });
      res.end();
      return;
    }
    if (!readable) throw new S3Error(501, 'NotImplemented', 'the null endpoint discarded this body (not under a --keep-prefix)');
    let [start, end] = [0, obj.size - 1];
    let status = 200;
    if (req.headers.range) {
      const r = parseRange(String(req.headers.range), obj.size);
      if (!r) throw new S3Error(416, 'InvalidRange', 'The requested range is not satisfiable');
      [start, end] = r;
      status = 206;
      base['content-range'] = `bytes ${start}-${end}/${obj.size}`;
      // A range's checksum is not the object's.
      for (const h of Object.keys(base)) if (h.startsWith('x-amz-checksum-')) delete base[h];
    }
    res.writeHead(status, { ...base, 'content-length': obj.size === 0 ? 0 : end - start + 1 });
    if (obj.size === 0) return void res.end();
    if (obj.memory) return void res.end(obj.memory.subarray(start, end + 1));
    // Files in order; stream the slices that overlap [start, end].
    const slices: { path: string; start: number; end: number }[] = [];
    let offset = 0;
    for (const f of obj.files!) {
      const a = Math.max(start, offset);
      const b = Math.min(end, offset + f.size - 1);
      if (a <= b) slices.push({ path: f.path, start: a - offset, end: b - offset });
      offset += f.size;
    }
    const next = () => {
      const s = slices.shift();
      if (!s) return void res.end();
      const rs = createReadStream(s.path, { start: s.start, end: s.end, highWaterMark: MiB });
      rs.on('error', (err) => res.destroy(err));
      rs.on('end', next);
      rs.pipe(res, { end: false });
    };
    next();
  }

  async function bucketOp(name: string, method: string, q: URLSearchParams, req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (method === 'PUT') {
      count('CreateBucket');
      await readSmall(req);
      if (!buckets.has(name)) buckets.set(name, new Map());
      return send(res, 200, '', { location: `/${name}` });
    }
    if (method === 'HEAD') {
      count('HeadBucket');
      return send(res, buckets.has(name) ? 200 : 404);
    }
    if (method === 'DELETE') {
      count('DeleteBucket');
      const b = bucketOf(name);
      if (b.size) throw new S3Error(409, 'BucketNotEmpty', 'The bucket you tried to delete is not empty');
      buckets.delete(name);
      return send(res, 204);
    }
    const bucket = bucketOf(name);
    if (method === 'POST' && q.has('delete')) {
      count('DeleteObjects');
      const keys = xmlValues(await readSmall(req), 'Key');
      for (const k of keys) {
        dropStored(bucket.get(k));
        bucket.delete(k);
      }
      return send(res, 200, `${XML_HEAD}<DeleteResult ${NS}>${keys.map((k) => `<Deleted><Key>${xmlEscape(k)}</Key></Deleted>`).join('')}</DeleteResult>`);
    }
    if (method === 'GET' && q.has('uploads')) {
      count('ListMultipartUploads');
      const prefix = q.get('prefix') ?? '';
      const ups = [...uploads.entries()].filter(([, u]) => u.bucket === name && u.key.startsWith(prefix)).sort(([, a], [, b]) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
      const items = ups.map(([id, u]) => `<Upload><Key>${xmlEscape(u.key)}</Key><UploadId>${id}</UploadId><Initiated>${u.initiated.toISOString()}</Initiated><StorageClass>STANDARD</StorageClass></Upload>`).join('');
      return send(res, 200, `${XML_HEAD}<ListMultipartUploadsResult ${NS}><Bucket>${xmlEscape(name)}</Bucket><Prefix>${xmlEscape(prefix)}</Prefix><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>${items}</ListMultipartUploadsResult>`);
    }
    if (method === 'GET') {
      count(q.get('list-type') === '2' ? 'ListObjectsV2' : 'ListObjects');
      return list(name, bucket, q, res);
    }
    throw new S3Error(405, 'MethodNotAllowed', `${method} on a bucket is not supported here`);
  }

  function list(name: string, bucket: Map<string, ObjectRecord>, q: URLSearchParams, res: ServerResponse): void {
    const v2 = q.get('list-type') === '2';
    const prefix = q.get('prefix') ?? '';
    const delimiter = q.get('delimiter') ?? '';
    const maxKeys = Math.min(1000, Number(q.get('max-keys') ?? 1000));
    const urlEncode = q.get('encoding-type') === 'url';
    const enc = (s: string) => xmlEscape(urlEncode ? encodeURIComponent(s).replace(/%2F/g, '/') : s);
    const after = v2 ? (q.get('continuation-token') ? Buffer.from(q.get('continuation-token')!, 'base64url').toString() : (q.get('start-after') ?? '')) : (q.get('marker') ?? '');
    const keys = [...bucket.keys()].filter((k) => k.startsWith(prefix)).sort();
    const contents: string[] = [];
    const prefixes: string[] = [];
    let last = '';
    let truncated = false;
    for (const k of keys) {
      if (k <= after) continue;
      if (delimiter) {
        const i = k.indexOf(delimiter, prefix.length);
        if (i !== -1) {
          const cp = k.slice(0, i + delimiter.length);
          if (prefixes.includes(cp) || cp <= after) continue;
          if (contents.length + prefixes.length >= maxKeys) {
            truncated = true;
            break;
          }
          prefixes.push(cp);
          last = cp;
          continue;
        }
      }
      if (contents.length + prefixes.length >= maxKeys) {
        truncated = true;
        break;
      }
      const o = bucket.get(k)!;
      contents.push(`<Contents><Key>${enc(k)}</Key><LastModified>${o.lastModified.toISOString()}</LastModified><ETag>${xmlEscape(o.etag)}</ETag><Size>${o.size}</Size><StorageClass>STANDARD</StorageClass></Contents>`);
      last = k;
    }
    // A common prefix is listed once: continue after every key it covers.
    const cursor = last && prefixes.includes(last) ? `${last}\uffff` : last;
    const next = truncated ? (v2 ? `<NextContinuationToken>${Buffer.from(cursor).toString('base64url')}</NextContinuationToken>` : `<NextMarker>${enc(cursor)}</NextMarker>`) : '';
    const body =
      `${XML_HEAD}<ListBucketResult ${NS}><Name>${xmlEscape(name)}</Name><Prefix>${enc(prefix)}</Prefix>${delimiter ? `<Delimiter>${enc(delimiter)}</Delimiter>` : ''}` +
      `<MaxKeys>${maxKeys}</MaxKeys>${v2 ? `<KeyCount>${contents.length + prefixes.length}</KeyCount>` : ''}${urlEncode ? '<EncodingType>url</EncodingType>' : ''}<IsTruncated>${truncated}</IsTruncated>${next}` +
      contents.join('') + prefixes.map((p) => `<CommonPrefixes><Prefix>${enc(p)}</Prefix></CommonPrefixes>`).join('') + '</ListBucketResult>';
    send(res, 200, body);
  }

  function admin(url: URL, method: string, res: ServerResponse): void {
    if (url.pathname === '/__null/stats' && method === 'GET') {
      const objects = [...buckets.values()].reduce((n, b) => n + b.size, 0);
      return send(res, 200, JSON.stringify({ ...stats, objects, uploadsInProgress: uploads.size, verify, rssBytes: process.memoryUsage.rss() }), { 'content-type': 'application/json' });
    }
    if (url.pathname === '/__null/reset-stats' && method === 'POST') {
      stats = newStats();
      return send(res, 204);
    }
    if (url.pathname === '/__null/verify' && method === 'POST') {
      verify = url.searchParams.get('on') === '1';
      return send(res, 204);
    }
    send(res, 404);
  }

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    if (req.headers.expect !== undefined) stats.expectContinue++;
    handle(req, res).catch((err: unknown) => {
      const e = err instanceof S3Error ? err : new S3Error(500, 'InternalError', (err as Error).message);
      if (res.headersSent) return void res.destroy();
      // Whatever is left of the body is read and dropped, so that the connection can be reused.
      req.resume();
      send(res, e.status, `${XML_HEAD}<Error><Code>${e.code}</Code><Message>${xmlEscape(e.message)}</Message><RequestId>null-${seq}</RequestId></Error>`);
    });
  };

  const { key, cert } = makeCertificate(dir);
  const servers: Server[] = [
    createHttpServer({ keepAliveTimeout: 65_000 }, onRequest),
    createHttpsServer({ key: readFileSync(key), cert: readFileSync(cert), keepAliveTimeout: 65_000 }, onRequest),
  ];
  for (const s of servers) s.on('connection', () => stats.connections++);
  const ports = await Promise.all(servers.map((s) => new Promise<number>((resolve, reject) => {
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => resolve((s.address() as AddressInfo).port));
  })));
  return {
    http: `http://127.0.0.1:${ports[0]}`,
    https: `https://127.0.0.1:${ports[1]}`,
    ca: cert,
    stats: () => stats,
    async close() {
      await Promise.all(servers.map((s) => new Promise<void>((resolve) => {
        s.close(() => resolve());
        s.closeAllConnections();
      })));
      if (ownDir) rmSync(dir, { recursive: true, force: true });
      else rmSync(keepDir, { recursive: true, force: true });
    },
  };
}

/** As a process: start, print where it listens, stop on SIGTERM/SIGINT. */
async function cli(argv: readonly string[]): Promise<void> {
  const keepPrefixes: string[] = [];
  let verify = false;
  let dir: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--verify') verify = true;
    else if (argv[i] === '--keep-prefix') keepPrefixes.push(argv[++i] ?? '');
    else if (argv[i] === '--dir') dir = argv[++i];
    else throw new Error(`null-s3: unknown argument ${argv[i]}`);
  }
  const s3 = await startNullS3({ verify, keepPrefixes, ...(dir ? { dir } : {}) });
  const stop = () => void s3.close().finally(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  // The parent waits for this line: the endpoint is ready.
  process.stdout.write(`${JSON.stringify({ http: s3.http, https: s3.https, ca: s3.ca, pid: process.pid })}\n`);
}

if (process.argv[1] && /null-s3\.(ts|mjs|js)$/.test(process.argv[1])) {
  cli(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
