/**
 * The capability probe: what the bucket's store does with the two headers the engine relies on,
 * tried on probe objects under `<prefix>_check/` (deleted at once, versions included), and the
 * result cached per bucket and prefix:
 *
 * - in memory, per process (a warm Lambda container, a CLI run): no request at all after the first;
 * - in the object `<prefix>_check/capabilities.json` (probe time, results, how each was judged):
 *   a cold container, a Fargate task or a host reads one small object instead of probing again.
 *   `_check/` because everything there is the engine's own bookkeeping (the check's probes live
 *   there; a database called `_check` keeps its dumps under `_check/<YYYY>/`, which this name
 *   cannot match) and the function's policy already covers it.
 *
 * When probing happens (STORAGE_PROFILE):
 * - unset: AWS's table (no request on AWS), or a fresh cached probe if one exists; the first
 *   refusal of a header (B2's 501 on If-None-Match, a 400 on a checksum header) probes, caches and
 *   the database is taken again. A store that silently *ignores* If-None-Match (Ceph) refuses
 *   nothing: `auto` or `ceph` is needed there, and doctor says so;
 * - `auto`: probed at the first run against the bucket, then cached;
 * - a store's name: its table, never probed.
 * A cache older than CAPABILITIES_MAX_AGE_MS is probed again (a store upgraded to honour
 * If-None-Match is noticed within a week), and so is one the store contradicts by a refusal.
 *
 * The part cap is not probed: finding it takes a multipart upload of cap + 1 parts of at least
 * 5 MiB (5 GB on Scaleway), so it comes from the profile (aws's 10,000 when probing) or from
 * STORAGE_MAX_PARTS.
 */
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { createHash, randomBytes } from 'node:crypto';
import { z } from 'zod';
import { buildCheckProbeKey, CHECK_FOLDER } from './backup-key.ts';
import { PROFILE_CAPABILITIES, profileCapabilities, type ResolvedCapabilities, type StorageProfileSetting } from './capabilities.ts';
import type { S3Store } from './s3-store.ts';

/** A week: a store changing its behaviour is rare, a probe costs six small requests. */
export const CAPABILITIES_MAX_AGE_MS = 7 * 86_400_000;

export function capabilitiesKey(prefix: string): string {
  return `${prefix}${CHECK_FOLDER}/capabilities.json`;
}

export interface ProbeResult {
  readonly conditionalWrites: boolean;
  /** honoured (412), refused (an error: every run notices), ignored (silently overwrites: dangerous without a profile). */
  readonly conditionalMode: 'honoured' | 'refused' | 'ignored';
  readonly checksumSha256: boolean;
  /** How each was judged, in words (logged, shown by doctor, kept in the cache). */
  readonly conditionalDetail: string;
  readonly checksumDetail: string;
  readonly probedAt: string;
}

const CacheSchema = z.object({
  formatVersion: z.literal(1),
  probedAt: z.string().datetime(),
  conditionalWrites: z.boolean(),
  conditionalMode: z.enum(['honoured', 'refused', 'ignored']),
  checksumSha256: z.boolean(),
  conditionalDetail: z.string(),
  checksumDetail: z.string(),
});

type S3Error = { name?: string; message?: string; Code?: string; $metadata?: { httpStatusCode?: number } };

function describe(err: unknown): string {
  const e = err as S3Error;
  const status = e.$metadata?.httpStatusCode;
  return `${e.name ?? 'Error'}${status ? ` (HTTP ${status})` : ''}: ${e.message ?? String(err)}`;
}

/**
 * Whether `err` is the store refusing a feature (a header it does not implement), as opposed to a
 * failure of access, network or service: 501 NotImplemented (B2 on If-None-Match), or a 400 that
 * names a header or checksum (B2's "Unsupported header 'x-amz-checksum-sha256'", GCS).
 */
export function isCapabilityRefusal(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const s = e as S3Error;
    const status = s.$metadata?.httpStatusCode;
    if (s.name === 'NotImplemented' || status === 501) return true;
    if (status === 400 && /header|checksum|not implemented|if-none-match/i.test(`${s.name ?? ''} ${s.message ?? ''}`)) return true;
  }
  return false;
}

function isPreconditionFailed(err: unknown): boolean {
  const e = err as S3Error;
  return e.name === 'PreconditionFailed' || e.$metadata?.httpStatusCode === 412;
}

/**
 * Tries the two headers on two probe objects and removes them (every version written, else the
 * key). Throws when the store fails otherwise than by refusing a header (access, network): no
 * conclusion can be drawn from that.
 */
export async function probeCapabilities(store: S3Store, now: Date, id: string = randomBytes(6).toString('hex')): Promise<ProbeResult> {
  const body = `pg-s3-backup capability probe, written ${now.toISOString()}; deleted right away.\n`;
  const written: { key: string; version: string | undefined }[] = [];
  const put = async (key: string, extra: Record<string, string>) => {
    const res = await store.s3.send(new PutObjectCommand({ Bucket: store.bucket, Key: key, Body: body, ContentType: 'text/plain; charset=utf-8', ...extra }));
    written.push({ key, version: res.VersionId });
  };
  try {
    // If-None-Match: * twice on one key: the first must succeed, the second must be refused (412).
    const conditionalKey = buildCheckProbeKey(store.prefix, now, `${id}c`);
    let conditionalMode: ProbeResult['conditionalMode'];
    let conditionalDetail: string;
    try {
      await put(conditionalKey, { IfNoneMatch: '*' });
      try {
        await put(conditionalKey, { IfNoneMatch: '*' });
        conditionalMode = 'ignored';
        conditionalDetail = 'If-None-Match: * is ignored: a second write to the same key succeeded';
      } catch (err) {
        if (!isPreconditionFailed(err) && !isCapabilityRefusal(err)) throw err;
        conditionalMode = isPreconditionFailed(err) ? 'honoured' : 'refused';
        conditionalDetail = conditionalMode === 'honoured' ? 'If-None-Match: * honoured: the second write was refused with 412' : `the second conditional write was refused: ${describe(err)}`;
      }
    } catch (err) {
      if (!isCapabilityRefusal(err)) throw err;
      conditionalMode = 'refused';
      conditionalDetail = `If-None-Match: * refused: ${describe(err)}`;
    }

    // A SHA-256 checksum header the store must accept (it is checked against the body).
    const checksumKey = buildCheckProbeKey(store.prefix, now, `${id}s`);
    let checksumSha256: boolean;
    let checksumDetail: string;
    try {
      await put(checksumKey, { ChecksumAlgorithm: 'SHA256', ChecksumSHA256: createHash('sha256').update(body).digest('base64') });
      checksumSha256 = true;
      checksumDetail = 'x-amz-checksum-sha256 accepted';
    } catch (err) {
      if (!isCapabilityRefusal(err)) throw err;
      checksumSha256 = false;
      checksumDetail = `x-amz-checksum-sha256 refused: ${describe(err)}`;
    }
    return { conditionalWrites: conditionalMode === 'honoured', conditionalMode, checksumSha256, conditionalDetail, checksumDetail, probedAt: now.toISOString() };
  } finally {
    await removeProbes(store, written);
  }
}

/** Best effort: a probe left behind is a few bytes under `_check/`, and the lifecycle rule's. */
async function removeProbes(store: S3Store, written: readonly { key: string; version: string | undefined }[]): Promise<void> {
  for (const w of written) {
    const version = w.version !== undefined && w.version !== 'null' ? { VersionId: w.version } : {};
    await store.s3.send(new DeleteObjectCommand({ Bucket: store.bucket, Key: w.key, ...version })).catch(() =>
      store.s3.send(new DeleteObjectCommand({ Bucket: store.bucket, Key: w.key })).catch(() => undefined),
    );
  }
}

/**
 * The cached probe, if there is one that parses (anything else: probe again). Listed first: under
 * the least-privilege policy (s3:ListBucket only with the prefix condition) a GetObject of a
 * missing key answers 403, which would put an AccessDenied in the access logs of every run.
 */
export async function readCachedProbe(store: S3Store): Promise<ProbeResult | undefined> {
  const key = capabilitiesKey(store.prefix);
  try {
    const listed = await store.s3.send(new ListObjectsV2Command({ Bucket: store.bucket, Prefix: key, MaxKeys: 1 }));
    if (!(listed.Contents ?? []).some((o) => o.Key === key)) return undefined;
    const res = await store.s3.send(new GetObjectCommand({ Bucket: store.bucket, Key: key }));
    const parsed = CacheSchema.safeParse(JSON.parse(await res.Body!.transformToString()));
    return parsed.success ? parsed.data : undefined;
  } catch {
    // Missing (404, or 403 under a prefix-conditioned ListBucket), unreadable: probe again.
    return undefined;
  }
}

/** Writes the cache (plain PutObject: it is meant to be replaced); a failure only costs a probe next time. */
export async function writeCachedProbe(store: S3Store, probe: ProbeResult): Promise<boolean> {
  const body = JSON.stringify({ formatVersion: 1, ...probe }, null, 2);
  try {
    await store.s3.send(new PutObjectCommand({ Bucket: store.bucket, Key: capabilitiesKey(store.prefix), Body: body, ContentType: 'application/json' }));
    return true;
  } catch {
    return false;
  }
}

export async function forgetCachedProbe(store: S3Store): Promise<void> {
  memory.delete(memoryKey(store));
  await store.s3.send(new DeleteObjectCommand({ Bucket: store.bucket, Key: capabilitiesKey(store.prefix) })).catch(() => undefined);
}

const memory = new Map<string, ResolvedCapabilities>();
const memoryKey = (store: S3Store) => `${store.bucket}\u0000${store.prefix}`;

export interface ResolveOptions {
  /** STORAGE_PROFILE: a store's name (its table, never probed), `auto` (probe), or unset (AWS unless a probe says otherwise). */
  readonly profile: StorageProfileSetting | undefined;
  /** STORAGE_MAX_PARTS: replaces the profile's part cap. */
  readonly maxParts: number | undefined;
  readonly now: Date;
  /** Probe even if a cache is fresh (after a refusal). */
  readonly force?: boolean | undefined;
  /** Told what happened (probed, cache used, probe failed): the caller logs it. */
  readonly onEvent?: ((message: string, attributes: Record<string, unknown>) => void) | undefined;
}

/**
 * The capabilities a run uses: the profile's, else a fresh enough cached probe (memory, then the
 * object), else a probe now (cached both ways). A probe that fails otherwise than by a refusal
 * (a network error) gives the safe side for this run only — no conditional writes, no checksum
 * headers: the fallbacks work on every store — and caches nothing.
 */
export async function resolveCapabilities(store: S3Store, options: ResolveOptions): Promise<ResolvedCapabilities> {
  if (options.profile && options.profile !== 'auto') return { ...profileCapabilities(options.profile, options.maxParts), profile: options.profile, source: 'profile' };
  const limits = profileCapabilities('aws', options.maxParts);
  const fresh = (p: { probedAt?: string | undefined }) => {
    const at = p.probedAt ? Date.parse(p.probedAt) : NaN;
    const age = options.now.getTime() - at;
    return Number.isFinite(age) && age >= -CAPABILITIES_MAX_AGE_MS && age < CAPABILITIES_MAX_AGE_MS;
  };
  const key = memoryKey(store);
  if (!options.force) {
    const inMemory = memory.get(key);
    if (inMemory && fresh(inMemory) && inMemory.maxParts === limits.maxParts) return inMemory;
    const cached = await readCachedProbe(store);
    if (cached && fresh(cached)) {
      const resolved: ResolvedCapabilities = { ...limits, conditionalWrites: cached.conditionalWrites, checksumSha256: cached.checksumSha256, profile: 'aws', source: 'cache', probedAt: cached.probedAt };
      memory.set(key, resolved);
      options.onEvent?.('store capabilities from the cached probe', { key: capabilitiesKey(store.prefix), probedAt: cached.probedAt, conditionalWrites: cached.conditionalWrites, checksumSha256: cached.checksumSha256 });
      return resolved;
    }
    // Unset: AWS's table until the store refuses something (then the caller forces a probe).
    if (options.profile === undefined) return { ...limits, profile: 'aws', source: 'default' };
  }
  let probe: ProbeResult;
  try {
    probe = await probeCapabilities(store, options.now);
  } catch (err) {
    options.onEvent?.('store capability probe failed: this run uses no conditional write and no checksum header', { error: describe(err) });
    return { ...limits, conditionalWrites: false, checksumSha256: false, profile: 'aws', source: 'probe', probedAt: undefined };
  }
  const cachedNow = await writeCachedProbe(store, probe);
  const resolved: ResolvedCapabilities = { ...limits, conditionalWrites: probe.conditionalWrites, checksumSha256: probe.checksumSha256, profile: 'aws', source: 'probe', probedAt: probe.probedAt };
  memory.set(key, resolved);
  options.onEvent?.('store capabilities probed', { conditional: probe.conditionalDetail, checksum: probe.checksumDetail, cached: cachedNow ? capabilitiesKey(store.prefix) : false });
  return resolved;
}

/** Today's S3 behaviour, for callers without a configuration (tests of single functions, bench). */
export const AWS_CAPABILITIES: ResolvedCapabilities = { ...PROFILE_CAPABILITIES.aws, profile: 'aws', source: 'profile' };
