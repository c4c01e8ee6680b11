/**
 * An HTTP proxy in front of moto that behaves like an S3-compatible store with fewer features:
 * it reproduces each store's *documented* refusals and limits (engine/store/capabilities.ts has
 * the sources), not the real service.
 *
 * - b2: `If-None-Match` on a write → 501 NotImplemented ("A header you provided implies
 *   functionality that is not implemented"); SHA-256 checksum headers (`x-amz-checksum-sha256`,
 *   `x-amz-checksum-algorithm`, `x-amz-sdk-checksum-algorithm: SHA256`) → 400 InvalidArgument
 *   "Unsupported header '…' received for this API call." (the SDK's default CRC32 passes: B2 was
 *   reported rejecting it in 2025 and accepting it in 2026; the engine never relies on it);
 * - ceph: `If-None-Match` ignored (stripped before moto sees it: the write succeeds over an
 *   existing key);
 * - gcs (XML API): SHA-256 checksum headers → 400 InvalidArgument; `If-None-Match` ignored
 *   (the XML API's completion "overwrites any existing object with the same name");
 * - scaleway: a part number above the cap (1,000, or `maxParts` to reach it with little data) →
 *   400 InvalidArgument "Part number must be an integer between 1 and 1000, inclusive";
 * - aws, r2, minio: passed through (moto behaves as S3 does);
 * - any store with `checksums501`: every `x-amz-checksum-*` header (`x-amz-checksum-mode` of a read
 *   included) and `x-amz-sdk-checksum-algorithm` → 501 NotImplemented, on reads and writes alike
 *   (a store that implements no checksum at all); DeleteObjects excepted, where S3's API requires one.
 *
 * Hooks let a test act as a second writer: `beforeWrite` runs before a write is forwarded,
 * `afterWrite` after the store answered it.
 */
import { createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type EmulatedStore = 'aws' | 'r2' | 'minio' | 'b2' | 'ceph' | 'gcs' | 'scaleway';

export interface SeenRequest {
  readonly method: string;
  readonly url: string;
  /** The object key (path style: after the bucket), decoded; '' for bucket-level requests. */
  readonly key: string;
  readonly headers: IncomingHttpHeaders;
  /** The status answered (set once answered). */
  status?: number | undefined;
  /** What the proxy did: passed, refused (answered itself), or stripped If-None-Match. */
  action?: 'pass' | 'refused' | 'stripped';
}

export interface StoreProxyOptions {
  /** The part cap enforced for scaleway (default 1,000). */
  readonly maxParts?: number;
  /** b2: refuse every `x-amz-checksum-*` header on writes (CRC32 too, as B2 did in 2025), DeleteObjects excepted (S3's API requires one there). */
  readonly strictChecksums?: boolean;
  /** Any store: 501 NotImplemented for every checksum header on any request, DeleteObjects excepted. */
  readonly checksums501?: boolean;
}

export interface StoreProfileProxy {
  readonly endpoint: string;
  readonly log: SeenRequest[];
  setStore(store: EmulatedStore, options?: StoreProxyOptions): void;
  /** Runs before a write (PUT object, POST ?uploads, POST ?uploadId) is forwarded. */
  beforeWrite: ((req: SeenRequest) => Promise<void>) | undefined;
  /** Runs after a write was answered 2xx, before the client gets the answer. */
  afterWrite: ((req: SeenRequest) => Promise<void>) | undefined;
  stop(): Promise<void>;
}

const SHA256_HEADERS = ['x-amz-checksum-sha256', 'x-amz-checksum-algorithm'];

function isWrite(method: string, url: string): boolean {
  const q = url.includes('?') ? url.slice(url.indexOf('?')) : '';
  if (method === 'PUT') return !/[?&](acl|tagging|versioning|lifecycle|policy)(=|&|$)/.test(q);
  return method === 'POST' && /[?&](uploads|uploadId)(=|&|$)/.test(q);
}

/** The SHA-256 checksum header a request carries, if any. */
function sha256Header(headers: IncomingHttpHeaders): string | undefined {
  for (const h of SHA256_HEADERS) if (headers[h] !== undefined) return h;
  if (String(headers['x-amz-sdk-checksum-algorithm'] ?? '').toUpperCase() === 'SHA256') return 'x-amz-sdk-checksum-algorithm';
  return undefined;
}

function refusal(store: EmulatedStore, req: SeenRequest, maxParts: number, strictChecksums: boolean, checksums501 = false): { status: number; code: string; message: string } | undefined {
  const write = isWrite(req.method, req.url);
  if (checksums501 && !(req.method === 'POST' && /[?&]delete(=|&|$)/.test(req.url))) {
    const any = Object.keys(req.headers).find((k) => k.startsWith('x-amz-checksum-') || k === 'x-amz-sdk-checksum-algorithm');
    if (any) return { status: 501, code: 'NotImplemented', message: `A header you provided implies functionality that is not implemented: ${any}` };
  }
  if (store === 'b2') {
    if (write && req.headers['if-none-match'] !== undefined) return { status: 501, code: 'NotImplemented', message: 'A header you provided implies functionality that is not implemented' };
    const any = Object.keys(req.headers).find((k) => k.startsWith('x-amz-checksum-') || k === 'x-amz-sdk-checksum-algorithm');
    if (strictChecksums && write && any) return { status: 400, code: 'InvalidArgument', message: `Unsupported header '${any}' received for this API call.` };
    const h = sha256Header(req.headers);
    if (h) return { status: 400, code: 'InvalidArgument', message: `Unsupported header '${h}' received for this API call.` };
  }
  if (store === 'gcs') {
    const h = sha256Header(req.headers);
    if (h) return { status: 400, code: 'InvalidArgument', message: `The header '${h}' is not supported by the XML API: use x-goog-hash (MD5, CRC32C).` };
  }
  if (store === 'scaleway' && req.method === 'PUT') {
    const n = /[?&]partNumber=(\d+)/.exec(req.url);
    if (n && Number(n[1]) > maxParts) return { status: 400, code: 'InvalidArgument', message: `Part number must be an integer between 1 and ${maxParts}, inclusive` };
  }
  return undefined;
}

function keyOf(url: string): string {
  const path = url.split('?')[0]!;
  const rest = path.split('/').slice(2).join('/');
  return decodeURIComponent(rest);
}

export async function startStoreProfileProxy(target: string, initial: EmulatedStore = 'aws'): Promise<StoreProfileProxy> {
  const t = new URL(target);
  let store = initial;
  let maxParts = 1000;
  let strictChecksums = false;
  let checksums501 = false;
  const log: SeenRequest[] = [];
  const proxy: StoreProfileProxy = {
    endpoint: '',
    log,
    beforeWrite: undefined,
    afterWrite: undefined,
    setStore(s, options = {}) {
      store = s;
      maxParts = options.maxParts ?? 1000;
      strictChecksums = options.strictChecksums ?? false;
      checksums501 = options.checksums501 ?? false;
    },
    stop: async () => {},
  };
  const answer = (res: ServerResponse, seen: SeenRequest, r: { status: number; code: string; message: string }) => {
    seen.status = r.status;
    seen.action = 'refused';
    res.writeHead(r.status, { 'content-type': 'application/xml' });
    res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${r.code}</Code><Message>${r.message}</Message></Error>`);
  };
  const server = createServer((req: IncomingMessage, res) => {
    const seen: SeenRequest = { method: req.method ?? 'GET', url: req.url ?? '/', key: keyOf(req.url ?? '/'), headers: { ...req.headers } };
    log.push(seen);
    const refused = refusal(store, seen, maxParts, strictChecksums, checksums501);
    if (refused) {
      // Drain the body first, as a store would, so the client reads an answer, not a broken pipe.
      req.resume();
      req.on('end', () => answer(res, seen, refused));
      return;
    }
    const headers = { ...req.headers };
    const write = isWrite(seen.method, seen.url);
    seen.action = 'pass';
    if ((store === 'ceph' || store === 'gcs') && write && headers['if-none-match'] !== undefined) {
      delete headers['if-none-match'];
      seen.action = 'stripped';
    }
    const forward = () => {
      const upstream = httpRequest({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers }, (up) => {
        seen.status = up.statusCode;
        const deliver = () => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        };
        if (write && proxy.afterWrite && (up.statusCode ?? 500) < 300) {
          up.pause();
          proxy.afterWrite(seen).then(deliver, () => res.destroy());
        } else deliver();
      });
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
    };
    if (write && proxy.beforeWrite) {
      req.pause();
      proxy.beforeWrite(seen).then(forward, () => res.destroy());
    } else forward();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  Object.assign(proxy, {
    endpoint: `http://127.0.0.1:${port}`,
    stop: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  });
  return proxy;
}
