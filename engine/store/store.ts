/**
 * The storage port: everything the engine asks of the place backups live, as one interface with
 * one implementation per backend (today S3 and the S3-compatible stores: engine/store/s3.ts).
 * The backup pipeline, retention, restore, the drill, check mode and the CLI talk to a
 * `BackupStore` (or its read side, `BackupSource`) built by `createStore`/`createSource`
 * (engine/store/create.ts), never to an S3 client. A new backend is one folder under
 * engine/store/ implementing these two interfaces; the pipeline does not change.
 *
 * The read side is its own interface so that a reader (the drill's function, whose role may not
 * write a dump or delete anything) builds only the read side and its bundle holds no write call.
 */
import type { Readable } from 'node:stream';
import type { EventSink } from '../events.ts';
import type { Manifest } from './manifest.ts';
import type { ResolvedCapabilities } from './capabilities.ts';
import type { ProbeResult, ResolveOptions } from './probe.ts';
import type { CheckedBackup, DatabaseListing, DrillSummary, ObjectLockState, StoredBackup, StoredObject, UnreadableBackup, WriteFeatures } from './s3-store.ts';
import type { StaleUploadsResult } from './stale-uploads.ts';
import type { StreamUploadOptions, StreamUploadResult } from './stream-upload.ts';

export type { CheckedBackup, DatabaseListing, DrillSummary, ObjectLockState, StoredBackup, StoredObject, UnreadableBackup, WriteFeatures };

/** Where backups come from: listing, manifests, dumps, drill reports (and writing a drill's report). */
export interface BackupSource {
  /** BACKUP_BUCKET, for messages and alerts. */
  readonly bucket: string;
  /** BACKUP_PREFIX: every key lives under it. */
  readonly prefix: string;
  /** The databases that have anything under the prefix. */
  listDatabases(): Promise<string[]>;
  /** One database's backups: complete (newest first), orphans, stray manifests and reports. */
  listBackups(database: string): Promise<DatabaseListing>;
  /** Every object under `prefix`; `serverTime` hears the store's clock of each page. */
  listObjects(prefix: string, serverTime?: (date: Date) => void): AsyncGenerator<StoredObject>;
  /** The manifest of a complete backup, checked against its dump (throws when it has none or it does not read). */
  readManifest(dumpKey: string, dump?: { readonly bytes?: number | undefined }): Promise<Manifest>;
  /** Each backup's manifest, in order: the readable ones and the unreadable ones with why. */
  readManifests(backups: readonly StoredBackup[]): Promise<{ readable: CheckedBackup[]; unreadable: UnreadableBackup[] }>;
  /** The newest backup of a database whose manifest reads, with the newer ones skipped on the way. */
  latestBackup(database: string): Promise<{ backup: CheckedBackup | undefined; skipped: UnreadableBackup[] }>;
  /** A dump's bytes, as stored. */
  openDump(dumpKey: string): Promise<Readable>;
  /** A drill report's outcome (`list`, `status`). */
  readDrillSummary(reportKey: string): Promise<DrillSummary>;
  /** A drill report as JSON (bounded in size). */
  readReport(reportKey: string): Promise<unknown>;
  /** Writes the drill's report beside the dump (`<dump key>.verify.json`). */
  writeReport(dumpKey: string, body: string): Promise<void>;
}

/** What the upload of one stream needs besides the store (the store knows where and how to clean up). */
export type UploadRequest = Omit<StreamUploadOptions, 's3' | 'bucket' | 'cleanupS3' | 'cleanupTimeoutMs'>;

/** Single objects, as check mode exercises the store (a probe object written, read, listed and removed). */
export interface ObjectProbe {
  /** Writes `body` at `key` (with the SHA-256 checksum and `If-None-Match: *` when asked). */
  put(key: string, body: string, options: { readonly contentType: string; readonly checksumSha256?: string | undefined; readonly ifNoneMatch: boolean }): Promise<{ versionId: string | undefined }>;
  /** Reads `key` back as text, with the checksum the store answers when asked for it. */
  getText(key: string, options: { readonly checksum: boolean }): Promise<{ text: string; checksumSha256: string | undefined }>;
  /** Whether a listing under `key` shows it. */
  listed(key: string): Promise<boolean>;
  /** Starts a multipart upload at `key` (its id), for `abortMultipart`. */
  startMultipart(key: string, options: { readonly checksum: boolean }): Promise<string | undefined>;
  abortMultipart(key: string, uploadId: string | undefined): Promise<void>;
  /** Deletes `key` (one version of it when `versionId` is given). */
  delete(key: string, versionId?: string): Promise<void>;
}

/** The whole store: the read side, and what a backup, pruning and check mode write and delete. */
export interface BackupStore extends BackupSource {
  /**
   * The same store with every request cancelled when `signal` fires (the run's budget, an
   * interruption); its clean-up after a failure (aborting an upload, removing a dump without
   * manifest) still runs, bounded by its own timeout.
   */
  bounded(signal: AbortSignal): BackupStore;
  /** What the store can do: STORAGE_PROFILE's table, a cached or fresh probe, or AWS's by default. */
  capabilities(options: ResolveOptions): Promise<ResolvedCapabilities>;
  /** Forgets the cached probe (the store refused something the cache said it takes). */
  forgetCapabilities(): Promise<void>;
  /** Probes what the store can do now (check mode), and caches a result for the backups. */
  probeCapabilities(now: Date): Promise<ProbeResult>;
  cacheCapabilities(probe: ProbeResult): Promise<boolean>;
  /** A dump key for `database` at `startedAt` no run holds; `runId` in it on a store without conditional writes. */
  reserveDumpKey(database: string, startedAt: Date, runId?: string): Promise<{ key: string; release: () => void }>;
  /** A tool's output streamed to `key` (multipart), failing closed: nothing lands at the key unless the tool succeeded. */
  upload(request: UploadRequest): Promise<StreamUploadResult>;
  /** After a write without `If-None-Match`: the key must hold exactly our object. */
  confirmSoleObject(key: string, ours: { bytes: number; etag: string | undefined }): Promise<void>;
  /** Writes the manifest beside its dump (never overwriting one). */
  putManifest(manifest: Manifest, features?: WriteFeatures): Promise<string>;
  /**
   * Removes an object this run wrote and must not leave (a dump whose manifest failed), through
   * the clean-up path (not bounded by the run's signal, bounded by its own timeout). Resolves to
   * why it could not, or undefined.
   */
  removeObject(key: string): Promise<string | undefined>;
  /** Deletes keys of one database (refusing any other's). */
  deleteKeys(database: string, keys: readonly string[]): Promise<string[]>;
  /** Whether the store has Object Lock (undefined: it would not say). */
  bucketHasObjectLock(): Promise<boolean | undefined>;
  objectLockState(key: string): Promise<ObjectLockState>;
  /** Aborts the multipart uploads under the prefix older than `minAgeMs` (the store's clock). */
  sweepStaleUploads(options: { readonly minAgeMs: number; readonly dryRun?: boolean | undefined; readonly events?: EventSink | undefined; readonly prefix?: string | undefined }): Promise<StaleUploadsResult>;
  /** Single objects, for check mode. */
  readonly objects: ObjectProbe;
}
