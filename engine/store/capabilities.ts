/**
 * What an S3-compatible store can do, per STORAGE_PROFILE: a pure table of documented limits. The
 * engine relies on two features it can do without, and on one limit it must size for:
 *
 * - conditional writes (`If-None-Match: *` on PutObject and CompleteMultipartUpload, 412 on an
 *   existing key): without them a dump key gets a run id and the write is checked after the fact;
 * - SHA-256 checksum headers (`x-amz-checksum-sha256`, `x-amz-checksum-algorithm`): without them
 *   none is sent and the manifest's SHA-256 (checked by restore before the target is touched) is
 *   the integrity check;
 * - the cap on the parts of one multipart upload (10,000 on AWS, 1,000 on Scaleway): the part size
 *   is chosen so that the largest dump expected fits in it.
 *
 * Sources (the store's own documentation unless said otherwise), read when this table was written:
 * - aws: S3 user guide, "Amazon S3 multipart upload limits" (10,000 parts, 5 MiB–5 GiB per part,
 *   5 TiB objects), "Conditional writes" (If-None-Match on PutObject/CompleteMultipartUpload since
 *   2024-08), "Checking object integrity" (SHA-256).
 * - gcs: Cloud Storage XML API, "XML API multipart uploads" (completion "overwrites any existing
 *   object with the same name"; parts 1–10,000; 5 MiB minimum but the last), part checksums via
 *   `x-goog-hash` (MD5/CRC32C) only: no `x-amz-checksum-sha256`. Preconditions are
 *   `x-goog-if-generation-match`, not If-None-Match: treated as absent.
 * - r2: Cloudflare R2 "S3 API compatibility" (SHA-256 composite checksums for multipart),
 *   "Conditional operations" (If-None-Match on PutObject and CompleteMultipartUpload), limits
 *   (10,000 parts, objects just under 5 TiB; parts of one upload must have equal sizes, which the
 *   engine's are but the last).
 * - b2: Backblaze "S3-compatible API", unsupported features: conditional PutObject answers 501
 *   NotImplemented, `x-amz-checksum-*` headers answer 400 "Unsupported header" (reported by several
 *   client projects, 2023–2025); 10,000 parts, 5 MB minimum, 10 TB objects.
 * - minio: MinIO S3 API compatibility (If-None-Match since 2024, SHA-256 checksums), 10,000 parts,
 *   5 TiB objects.
 * - scaleway: Scaleway "Managing multipart uploads": 1 to 1,000 parts, 5 MB–5 GB per part, 5 TB
 *   objects; conditional writes and SHA-256 checksums are not documented: treated as absent.
 * - ceph: Ceph RGW honours If-None-Match only in recent releases (s3-tests has no conditional-write
 *   test yet, ceph/s3-tests#583) and older releases ignore it: treated as absent; RGW's part cap is
 *   `rgw_multipart_part_upload_limit` (10,000 by default: STORAGE_MAX_PARTS if changed).
 *
 * A feature marked absent that the store has costs nothing but the fallback; a feature marked
 * present that the store lacks fails the backup (B2) or silently overwrites (Ceph): absent is the
 * safe side whenever the documentation does not say.
 */

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;

// The names live below the configuration, which checks STORAGE_PROFILE with them.
import { STORAGE_PROFILES, STORAGE_PROFILE_SETTINGS, type StorageProfile, type StorageProfileSetting } from '../settings/values.ts';
export { STORAGE_PROFILES, STORAGE_PROFILE_SETTINGS, type StorageProfile, type StorageProfileSetting };

export interface StoreCapabilities {
  /** `If-None-Match: *` on PutObject and CompleteMultipartUpload is honoured (412 on an existing key). */
  readonly conditionalWrites: boolean;
  /** `x-amz-checksum-sha256` (and `x-amz-checksum-algorithm: SHA256`) are accepted and checked. */
  readonly checksumSha256: boolean;
  /** Parts of one multipart upload. */
  readonly maxParts: number;
  /** Smallest part but the last. */
  readonly minPartBytes: number;
  /** Largest part. */
  readonly maxPartBytes: number;
  /** Largest object. */
  readonly maxObjectBytes: number;
}

export const PROFILE_CAPABILITIES: Readonly<Record<StorageProfile, StoreCapabilities>> = Object.freeze({
  aws: { conditionalWrites: true, checksumSha256: true, maxParts: 10_000, minPartBytes: 5 * MiB, maxPartBytes: 5 * GiB, maxObjectBytes: 5 * TiB },
  gcs: { conditionalWrites: false, checksumSha256: false, maxParts: 10_000, minPartBytes: 5 * MiB, maxPartBytes: 5 * GiB, maxObjectBytes: 5 * TiB },
  r2: { conditionalWrites: true, checksumSha256: true, maxParts: 10_000, minPartBytes: 5 * MiB, maxPartBytes: 5 * GiB, maxObjectBytes: 5 * TiB - 5 * GiB },
  b2: { conditionalWrites: false, checksumSha256: false, maxParts: 10_000, minPartBytes: 5_000_000, maxPartBytes: 5_000_000_000, maxObjectBytes: 10_000_000_000_000 },
  minio: { conditionalWrites: true, checksumSha256: true, maxParts: 10_000, minPartBytes: 5 * MiB, maxPartBytes: 5 * GiB, maxObjectBytes: 5 * TiB },
  scaleway: { conditionalWrites: false, checksumSha256: false, maxParts: 1_000, minPartBytes: 5_000_000, maxPartBytes: 5_000_000_000, maxObjectBytes: 5_000_000_000_000 },
  ceph: { conditionalWrites: false, checksumSha256: false, maxParts: 10_000, minPartBytes: 5 * MiB, maxPartBytes: 5 * GiB, maxObjectBytes: 5 * TiB },
});

/**
 * How the capabilities in use were obtained: STORAGE_PROFILE's table, AWS's table by default
 * (STORAGE_PROFILE unset, nothing refused yet), or a probe of the bucket (fresh or cached).
 */
export type CapabilitySource = 'profile' | 'default' | 'probe' | 'cache';

export interface ResolvedCapabilities extends StoreCapabilities {
  /** The profile whose limits apply (aws when probing: the part cap cannot be probed). */
  readonly profile: StorageProfile;
  readonly source: CapabilitySource;
  /** When the probe ran (probe and cache). */
  readonly probedAt?: string | undefined;
}

/** A profile's capabilities, the part cap replaced by STORAGE_MAX_PARTS when given. */
export function profileCapabilities(profile: StorageProfile, maxParts?: number): StoreCapabilities {
  const base = PROFILE_CAPABILITIES[profile];
  return maxParts === undefined ? base : { ...base, maxParts };
}

/** The largest dump the part size must allow for when the database's size is unknown. */
export const MAX_DUMP_BYTES = 200 * GiB;
/** Parts are sized to fill at most this share of the cap: a dump somewhat over its estimate still fits. */
export const PART_CAP_HEADROOM = 0.9;

/**
 * The smallest whole-MiB part size that fits `maxBytes` in 90 % of the store's part cap, never below
 * its minimum part, never above its maximum part (a dump that needs larger parts cannot be stored
 * there in one object: the uploader then fails at the cap, closed). 200 GiB on AWS → 23 MiB;
 * on Scaleway (1,000 parts) → 228 MiB.
 */
export function partSizeFor(maxBytes: number = MAX_DUMP_BYTES, caps: Pick<StoreCapabilities, 'maxParts' | 'minPartBytes' | 'maxPartBytes'> = PROFILE_CAPABILITIES.aws): number {
  const usable = Math.max(1, Math.floor(caps.maxParts * PART_CAP_HEADROOM));
  const wanted = Math.ceil(maxBytes / usable / MiB) * MiB;
  const floor = Math.ceil(caps.minPartBytes / MiB) * MiB;
  return Math.min(Math.max(floor, wanted), Math.floor(caps.maxPartBytes / MiB) * MiB);
}

/** The largest dump parts of `partSize` hold under the cap (what a run can store at most). */
export function maxDumpBytes(partSize: number, caps: Pick<StoreCapabilities, 'maxParts' | 'maxObjectBytes'>): number {
  return Math.min(partSize * caps.maxParts, caps.maxObjectBytes);
}
