/**
 * The S3 implementation of the storage port (engine/store/store.ts), for AWS and the
 * S3-compatible stores (capabilities.ts): the only place besides the modules it assembles
 * (s3-store.ts, probe.ts, stream-upload.ts, multipart.ts, stale-uploads.ts) that holds an S3
 * client. Two factories, so that a reader's bundle (the drill function) holds no write call.
 */
import {
  AbortMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { verifyReportKeyFor } from './backup-key.ts';
import { forgetCachedProbe, probeCapabilities, resolveCapabilities, writeCachedProbe } from './probe.ts';
import {
  bucketHasObjectLock,
  confirmSoleObject,
  deleteKeys,
  latestBackup,
  listBackups,
  listDatabases,
  listObjects,
  objectLockState,
  openDump,
  putManifest,
  readDrillSummary,
  readManifest,
  readManifests,
  readReport,
  reserveDumpKey,
  type S3Store,
} from './s3-store.ts';
import { abortStaleUploads } from './stale-uploads.ts';
import type { BackupSource, BackupStore, ObjectProbe } from './store.ts';
import { DEFAULT_CLEANUP_TIMEOUT_MS, streamToS3 } from './stream-upload.ts';

/**
 * An S3 client whose every call is cancelled when `signal` fires: a run's time budget and its
 * interruption reach every request of the bounded store (key check, upload, manifest, prune).
 */
function boundedClient<C extends { send: (...args: never[]) => Promise<unknown> }>(client: C, signal: AbortSignal): C {
  return new Proxy(client, {
    get(target, prop, receiver) {
      if (prop !== 'send') return Reflect.get(target, prop, receiver) as unknown;
      return (command: unknown, options?: { abortSignal?: AbortSignal }) => {
        const abortSignal = options?.abortSignal ? AbortSignal.any([signal, options.abortSignal]) : signal;
        return (target.send as (c: unknown, o: unknown) => Promise<unknown>)(command, { ...options, abortSignal });
      };
    },
  });
}

/** The read side over one bucket and prefix. */
export function s3Source(store: S3Store): BackupSource {
  return {
    bucket: store.bucket,
    prefix: store.prefix,
    listDatabases: () => listDatabases(store),
    listBackups: (database) => listBackups(store, database),
    listObjects: (prefix, serverTime) => listObjects(store, prefix, serverTime),
    readManifest: (key, dump) => readManifest(store, key, dump),
    readManifests: (backups) => readManifests(store, backups),
    latestBackup: (database) => latestBackup(store, database),
    openDump: async (key) => (await openDump(store, key)).body,
    readDrillSummary: (key) => readDrillSummary(store, key),
    readReport: (key) => readReport(store, key),
    writeReport: async (dumpKey, body) => {
      await store.s3.send(new PutObjectCommand({ Bucket: store.bucket, Key: verifyReportKeyFor(dumpKey), Body: body, ContentType: 'application/json' }));
    },
  };
}

export interface S3StoreOptions {
  /** The client of the clean-up after a failure (not bound to the run's signal). Default: the store's. */
  readonly cleanupS3?: S3Client | undefined;
  /** The longest a clean-up may take, every retry included (ms). */
  readonly cleanupTimeoutMs?: number | undefined;
}

/** The whole store over one bucket and prefix. */
export function s3Store(store: S3Store, options: S3StoreOptions = {}): BackupStore {
  const cleanupS3 = options.cleanupS3 ?? store.s3;
  const cleanupTimeoutMs = options.cleanupTimeoutMs ?? DEFAULT_CLEANUP_TIMEOUT_MS;
  return {
    ...s3Source(store),
    bounded: (signal) => s3Store({ ...store, s3: boundedClient(store.s3, signal) }, { cleanupS3, cleanupTimeoutMs }),
    capabilities: (resolve) => resolveCapabilities(store, resolve),
    forgetCapabilities: () => forgetCachedProbe(store),
    probeCapabilities: (now) => probeCapabilities(store, now),
    cacheCapabilities: (probe) => writeCachedProbe(store, probe),
    reserveDumpKey: (database, startedAt, runId) => reserveDumpKey(store, database, startedAt, runId),
    upload: (request) => streamToS3({ ...request, s3: store.s3, bucket: store.bucket, cleanupS3, cleanupTimeoutMs }),
    confirmSoleObject: (key, ours) => confirmSoleObject(store, key, ours),
    putManifest: (manifest, features) => putManifest(store, manifest, features),
    removeObject: (key) =>
      cleanupS3
        .send(new DeleteObjectCommand({ Bucket: store.bucket, Key: key }), { abortSignal: AbortSignal.timeout(cleanupTimeoutMs) })
        .then(() => undefined, (e: unknown) => `${(e as Error).name}: ${(e as Error).message}`),
    deleteKeys: (database, keys) => deleteKeys(store, database, keys),
    bucketHasObjectLock: () => bucketHasObjectLock(store),
    objectLockState: (key) => objectLockState(store, key),
    sweepStaleUploads: (sweep) => abortStaleUploads(store, sweep),
    objects: s3Objects(store),
  };
}

function s3Objects(store: S3Store): ObjectProbe {
  const { s3, bucket } = store;
  return {
    put: async (key, body, o) => {
      const res = await s3.send(new PutObjectCommand({
        Bucket: bucket,
        Key: key,
        Body: body,
        ContentType: o.contentType,
        ...(o.checksumSha256 !== undefined ? { ChecksumAlgorithm: 'SHA256' as const, ChecksumSHA256: o.checksumSha256 } : {}),
        ...(o.ifNoneMatch ? { IfNoneMatch: '*' } : {}),
      }));
      return { versionId: res.VersionId };
    },
    getText: async (key, o) => {
      const res = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key, ...(o.checksum ? { ChecksumMode: 'ENABLED' as const } : {}) }));
      return { text: await res.Body!.transformToString(), checksumSha256: res.ChecksumSHA256 };
    },
    listed: async (key) => {
      const res = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: key, MaxKeys: 1 }));
      return (res.Contents ?? []).some((o) => o.Key === key);
    },
    startMultipart: async (key, o) => {
      const res = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ...(o.checksum ? { ChecksumAlgorithm: 'SHA256' as const } : {}) }));
      return res.UploadId;
    },
    abortMultipart: async (key, uploadId) => {
      await s3.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }));
    },
    delete: async (key, versionId) => {
      await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key, ...(versionId !== undefined ? { VersionId: versionId } : {}) }));
    },
  };
}
