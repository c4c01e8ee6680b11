/**
 * The bucket as a backup store: listing (paginated, complete backups vs orphans), manifests,
 * dump streams, deletion restricted to one database's prefix, and key reservation so that two
 * runs never write the same key.
 */
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import type { Readable } from 'node:stream';
import { buildDumpKey, databasePrefix, decodeDatabaseName, manifestKeyFor, parseKey } from './backup-key.ts';
import { ListError, ManifestError, PruneError } from '../errors.ts';
import { ManifestSchema, parseManifest, type Manifest } from './manifest.ts';

export interface S3Store {
  readonly s3: S3Client;
  readonly bucket: string;
  /** BACKUP_PREFIX. */
  readonly prefix: string;
  /** ListObjectsV2 page size (S3's maximum, 1000, by default; tests use small pages). */
  readonly pageSize?: number;
}

export interface StoredObject {
  readonly key: string;
  readonly size: number;
  readonly lastModified: Date | undefined;
}

/** A complete backup: its dump and its manifest both exist. */
export interface StoredBackup {
  readonly database: string;
  /** The dump's key. */
  readonly key: string;
  readonly manifestKey: string;
  readonly startedAt: Date;
  /** The dump object's size. */
  readonly bytes: number;
  readonly lastModified: Date | undefined;
}

export interface DatabaseListing {
  readonly database: string;
  /** Newest first. */
  readonly complete: readonly StoredBackup[];
  /** Dumps without a manifest (a failed manifest write, or a run still finishing). Newest first. */
  readonly orphans: readonly StoredObject[];
  /** Manifests whose dump is gone. Newest first. */
  readonly strayManifests: readonly StoredObject[];
}

/** ListObjectsV2 pages under `prefix` (grouped by `delimiter` if given), following pagination. */
async function* listPages(store: S3Store, prefix: string, delimiter?: string): AsyncGenerator<ListObjectsV2CommandOutput> {
  let token: string | undefined;
  do {
    let page: ListObjectsV2CommandOutput;
    try {
      page = await store.s3.send(
        new ListObjectsV2Command({ Bucket: store.bucket, Prefix: prefix, Delimiter: delimiter, ContinuationToken: token, MaxKeys: store.pageSize ?? 1000 }),
      );
    } catch (err) {
      throw new ListError(`cannot list s3://${store.bucket}/${prefix}: ${(err as Error).name}: ${(err as Error).message}`, {
        cause: err,
        hint: 'Check BACKUP_BUCKET, the region and the s3:ListBucket permission.',
      });
    }
    yield page;
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
}

/** Every object under `prefix`, following pagination. */
export async function* listObjects(store: S3Store, prefix: string): AsyncGenerator<StoredObject> {
  for await (const page of listPages(store, prefix)) {
    for (const o of page.Contents ?? []) {
      if (o.Key !== undefined) yield { key: o.Key, size: o.Size ?? 0, lastModified: o.LastModified };
    }
  }
}

/** One database's backups, from a full listing of `<prefix><database>/` (keys of other layouts ignored). */
export async function listBackups(store: S3Store, database: string): Promise<DatabaseListing> {
  const dumps = new Map<string, StoredObject & { startedAt: Date }>();
  const manifests = new Map<string, StoredObject>();
  for await (const o of listObjects(store, databasePrefix(store.prefix, database))) {
    const parsed = parseKey(store.prefix, o.key);
    if (!parsed || parsed.database !== database) continue;
    if (parsed.kind === 'dump') dumps.set(o.key, { ...o, startedAt: parsed.startedAt });
    else manifests.set(parsed.dumpKey, o);
  }
  const complete: StoredBackup[] = [];
  const orphans: (StoredObject & { startedAt: Date })[] = [];
  for (const [key, d] of dumps) {
    if (manifests.has(key)) {
      complete.push({ database, key, manifestKey: manifestKeyFor(key), startedAt: d.startedAt, bytes: d.size, lastModified: d.lastModified });
    } else {
      orphans.push(d);
    }
  }
  const strayManifests = [...manifests].filter(([k]) => !dumps.has(k)).map(([, m]) => m);
  const newestFirst = (a: { key: string }, b: { key: string }) => (a.key < b.key ? 1 : a.key > b.key ? -1 : 0);
  // Within one database the key's timestamp orders the keys, so key order is time order.
  return {
    database,
    complete: complete.sort(newestFirst),
    orphans: orphans.sort(newestFirst).map(({ key, size, lastModified }) => ({ key, size, lastModified })),
    strayManifests: strayManifests.sort(newestFirst),
  };
}

/**
 * The databases with at least one dump (complete or not) under the prefix, decoded and sorted.
 * A folder is only a candidate: another prefix nested inside this one looks like a database
 * folder too, so each candidate's own listing must show one of our keys.
 */
export async function listDatabases(store: S3Store): Promise<string[]> {
  const names = new Set<string>();
  for await (const page of listPages(store, store.prefix, '/')) {
    for (const p of page.CommonPrefixes ?? []) {
      const enc = p.Prefix?.slice(store.prefix.length, -1);
      if (!enc) continue;
      try {
        const name = decodeDatabaseName(enc);
        if (databasePrefix(store.prefix, name) === p.Prefix) names.add(name);
      } catch {
        // Not one of ours.
      }
    }
  }
  const found: string[] = [];
  for (const name of [...names].sort()) if (await hasDump(store, name)) found.push(name);
  return found;
}

/** Whether `<prefix><database>/` holds at least one dump of our layout: stops at the first. */
async function hasDump(store: S3Store, database: string): Promise<boolean> {
  for await (const o of listObjects(store, databasePrefix(store.prefix, database))) {
    const parsed = parseKey(store.prefix, o.key);
    if (parsed?.kind === 'dump' && parsed.database === database) return true;
  }
  return false;
}

export async function readManifest(store: S3Store, dumpKey: string): Promise<Manifest> {
  const key = manifestKeyFor(dumpKey);
  try {
    const res = await store.s3.send(new GetObjectCommand({ Bucket: store.bucket, Key: key }));
    return parseManifest(await res.Body!.transformToString());
  } catch (err) {
    throw new ManifestError(`cannot read manifest s3://${store.bucket}/${key}: ${(err as Error).message}`, { cause: err });
  }
}

/** Reads the manifest of each backup, keeping their order. */
export async function withManifests(store: S3Store, backups: readonly StoredBackup[]): Promise<(StoredBackup & { manifest: Manifest })[]> {
  const out: (StoredBackup & { manifest: Manifest })[] = [];
  // Sequential on purpose: a handful of small GETs, and a stable order without extra sorting.
  for (const b of backups) out.push({ ...b, manifest: await readManifest(store, b.key) });
  return out;
}

/** The newest complete backup of a database (its manifest is read by whoever needs it). */
export async function latestBackup(store: S3Store, database: string): Promise<StoredBackup | undefined> {
  return (await listBackups(store, database)).complete[0];
}

/** A dump's content as a stream (for restore and verify). */
export async function openDump(store: S3Store, key: string): Promise<{ body: Readable; bytes: number }> {
  const res = await store.s3.send(new GetObjectCommand({ Bucket: store.bucket, Key: key }));
  return { body: res.Body as Readable, bytes: res.ContentLength ?? 0 };
}

/**
 * Whether anything is stored under `dumpKey` — the dump or its manifest (`<dumpKey>.json`): one
 * ListObjectsV2 with the key as prefix answers both. Not HeadObject: with the least-privilege
 * policy (s3:ListBucket only under the prefix, by condition), S3 answers HeadObject on a missing
 * key with 403, not 404, because the prefix condition cannot match a HeadObject request.
 */
async function keyInUse(store: S3Store, dumpKey: string): Promise<boolean> {
  const res = await store.s3.send(new ListObjectsV2Command({ Bucket: store.bucket, Prefix: dumpKey, MaxKeys: 2 }));
  return (res.Contents ?? []).some((o) => o.Key === dumpKey || o.Key === manifestKeyFor(dumpKey));
}

/** Writes the manifest; `If-None-Match: *` so that a manifest is never overwritten. */
export async function putManifest(store: S3Store, manifest: Manifest): Promise<string> {
  const key = manifestKeyFor(manifest.key);
  const body = JSON.stringify(ManifestSchema.parse(manifest), null, 2);
  try {
    await store.s3.send(
      new PutObjectCommand({
        Bucket: store.bucket,
        Key: key,
        Body: body,
        ContentType: 'application/json',
        ChecksumAlgorithm: 'SHA256',
        IfNoneMatch: '*',
      }),
    );
  } catch (err) {
    throw new ManifestError(`cannot write manifest s3://${store.bucket}/${key}: ${(err as Error).name}: ${(err as Error).message}`, {
      cause: err,
      hint: 'The dump is in S3 but is not a complete backup without its manifest; check s3:PutObject and run the backup again.',
    });
  }
  return key;
}

/**
 * Deletes keys, 1000 per request, refusing any key outside `<prefix><database>/`: pruning one
 * database can never touch another's objects or anything else in the bucket.
 */
export async function deleteKeys(store: S3Store, database: string, keys: readonly string[]): Promise<string[]> {
  const allowed = databasePrefix(store.prefix, database);
  const outside = keys.filter((k) => !k.startsWith(allowed));
  if (outside.length > 0) {
    throw new PruneError(`refusing to delete ${outside.length} key(s) outside ${allowed}, e.g. ${outside[0]}`);
  }
  const deleted: string[] = [];
  for (let i = 0; i < keys.length; i += 1000) {
    const batch = keys.slice(i, i + 1000);
    let res;
    try {
      res = await store.s3.send(
        new DeleteObjectsCommand({ Bucket: store.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: false } }),
      );
    } catch (err) {
      throw new PruneError(`cannot delete from s3://${store.bucket}/${allowed}: ${(err as Error).name}: ${(err as Error).message}`, {
        cause: err,
        hint: 'Check the s3:DeleteObject permission; the lifecycle rule remains the backstop.',
      });
    }
    if (res.Errors && res.Errors.length > 0) {
      const e = res.Errors[0]!;
      throw new PruneError(`could not delete ${res.Errors.length} key(s), e.g. ${e.Key}: ${e.Code} ${e.Message}`, {
        hint: 'Check the s3:DeleteObject permission (and object lock settings); the lifecycle rule remains the backstop.',
      });
    }
    for (const d of res.Deleted ?? []) if (d.Key) deleted.push(d.Key);
  }
  return deleted;
}

/** Keys handed out in this process and not yet finished: two runs in one process never share one. */
const reserved = new Set<string>();

/**
 * A dump key for `database` at `startedAt` that no run in this process holds and that has no
 * object yet; on a clash it moves on by one millisecond (the layout has millisecond stamps).
 * Across processes the upload's `If-None-Match: *` is the last guard: it never overwrites.
 */
export async function reserveDumpKey(store: S3Store, database: string, startedAt: Date): Promise<{ key: string; release: () => void }> {
  for (let offset = 0; offset < 1000; offset++) {
    const key = buildDumpKey(store.prefix, database, new Date(startedAt.getTime() + offset));
    if (reserved.has(key)) continue;
    reserved.add(key);
    try {
      if (await keyInUse(store, key)) {
        reserved.delete(key);
        continue;
      }
    } catch (err) {
      reserved.delete(key);
      throw err;
    }
    return { key, release: () => reserved.delete(key) };
  }
  throw new ListError(`no free key for database ${JSON.stringify(database)} near ${startedAt.toISOString()}`);
}
