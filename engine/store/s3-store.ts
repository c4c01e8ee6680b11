/**
 * The bucket as a backup store: listing (paginated, complete backups vs orphans), manifests,
 * dump streams, deletion restricted to one database's prefix, and key reservation so that two
 * runs never write the same key.
 */
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  GetObjectLockConfigurationCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import type { Readable } from 'node:stream';
import { z } from 'zod';
import { buildDumpKey, databasePrefix, decodeDatabaseName, manifestKeyFor, parseKey, partKeyFor, partOwner, VERIFY_REPORT_SUFFIX } from './backup-key.ts';
import { DumpGoneError, KeyTakenError, ListError, ManifestError, ManifestGoneError, PruneError, UnreadableManifestError } from '../errors.ts';
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

/**
 * How far a key's embedded time may be off S3's clock before the backup is flagged (list's CLOCK
 * SKEW) as written by a host whose clock was wrong. Ordering never depends on it (`backupTime`).
 */
export const CLOCK_SKEW_TOLERANCE_MS = 5 * 60 * 1000;

/** A complete backup: its dump and its manifest both exist (the manifest is not read yet). */
export interface StoredBackup {
  readonly database: string;
  /** The dump's key. */
  readonly key: string;
  readonly manifestKey: string;
  /** When pg_dump started, by the clock of the host that ran it (from the key). */
  readonly startedAt: Date;
  /** The dump object's size. */
  readonly bytes: number;
  /** The dump object's LastModified (S3's clock). */
  readonly lastModified: Date | undefined;
  /**
   * When the backup became complete by S3's clock: its manifest's LastModified (the dump's when
   * unknown), as stored now: a copy in place (a storage-class change, a restored version) makes
   * it later. Shown by list and compared with the manifest's finishedAt (CLOCK SKEW); backups are
   * ordered by `backupTime`, which a copy cannot change.
   */
  readonly storedAt: Date | undefined;
  /** The manifest object's size in the listing. */
  readonly manifestBytes?: number;
  /** The restore drill's report beside it (`<key>.verify.json`), when the listing holds one. */
  readonly drillReport?: StoredObject;
  /** A sharded backup's data archives (`partKeyFor`) the listing holds: deleted with it. */
  readonly parts?: readonly StoredObject[];
}

/**
 * The time a backup is ordered by (list, `--latest`, retention and its GFS periods): when pg_dump
 * started by the key, or when S3 stored it if that is earlier. Neither can be changed by copying
 * the objects: the key is the key, and a copy only makes LastModified later, so rewriting an old
 * manifest in place never makes its backup the newest. The key's time comes from the clock of the
 * host that ran pg_dump: a host whose clock is ahead is capped by S3's clock (a backup is never
 * newer than S3 saw it); one whose clock is behind makes its backups look older than they are
 * (list flags both, CLOCK SKEW).
 */
export function backupTime(b: { readonly startedAt: Date; readonly storedAt: Date | undefined; readonly lastModified?: Date | undefined }): Date {
  // S3 gives LastModified in whole seconds: an honest pg_dump start can be up to 999 ms after the
  // second S3 reports for the object it wrote. Only a start at least a second past it is a clock
  // running ahead, and only then does S3's time replace it. Capping honest times down to the
  // second would tie a fresh backup with a skewed one stored in the same second, and the tie
  // would go to the skewed key (the larger).
  let at = b.startedAt;
  for (const cap of [b.storedAt, b.lastModified]) {
    if (cap === undefined || Number.isNaN(cap.getTime())) continue;
    if (at.getTime() >= cap.getTime() + 1000) at = cap;
  }
  return at;
}

export interface DatabaseListing {
  readonly database: string;
  /** Newest first by `backupTime`, then by key. */
  readonly complete: readonly StoredBackup[];
  /** Dumps without a manifest (a failed manifest write, or a run still finishing). Newest first (S3's clock: only their age matters). */
  readonly orphans: readonly StoredObject[];
  /** Manifests whose dump is gone. Newest first (S3's clock). */
  readonly strayManifests: readonly StoredObject[];
  /** Drill reports (`.verify.json`) whose dump is gone: left by an older prune. Newest first (S3's clock). */
  readonly strayReports?: readonly StoredObject[];
  /** S3's clock when the listing was made (its `Date` response header): ages are measured against it. */
  readonly serverTime: Date | undefined;
}

/**
 * Reads the `Date` header of the response to `command`: S3's own clock, so that ages of objects
 * compare S3's time with S3's time and a host whose clock is wrong cannot make a young object old.
 */
function onServerDate<C extends { middlewareStack: { add: (...a: never[]) => unknown } }>(command: C, record: (date: Date) => void): C {
  type Next = (args: unknown) => Promise<{ response: unknown }>;
  const middleware = (next: Next) => async (args: unknown) => {
    const result = await next(args);
    const header = (result.response as { headers?: Record<string, string | undefined> } | undefined)?.headers?.date;
    const date = header === undefined ? undefined : new Date(header);
    if (date && !Number.isNaN(date.getTime())) record(date);
    return result;
  };
  (command.middlewareStack.add as unknown as (m: typeof middleware, o: { step: string; name: string }) => void)(middleware, { step: 'deserialize', name: 'pgS3BackupServerDate' });
  return command;
}

/** ListObjectsV2 pages under `prefix` (grouped by `delimiter` if given), following pagination. */
async function* listPages(store: S3Store, prefix: string, delimiter?: string, serverTime?: (date: Date) => void): AsyncGenerator<ListObjectsV2CommandOutput> {
  let token: string | undefined;
  do {
    let page: ListObjectsV2CommandOutput;
    try {
      const command = new ListObjectsV2Command({ Bucket: store.bucket, Prefix: prefix, Delimiter: delimiter, ContinuationToken: token, MaxKeys: store.pageSize ?? 1000 });
      page = await store.s3.send(serverTime ? onServerDate(command, serverTime) : command);
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

/** Every object under `prefix`, following pagination; `serverTime` gets S3's clock of each page. */
export async function* listObjects(store: S3Store, prefix: string, serverTime?: (date: Date) => void): AsyncGenerator<StoredObject> {
  for await (const page of listPages(store, prefix, undefined, serverTime)) {
    for (const o of page.Contents ?? []) {
      if (o.Key !== undefined) yield { key: o.Key, size: o.Size ?? 0, lastModified: o.LastModified };
    }
  }
}

/** Newest first by `at`; the key (its time, then its text) breaks ties. */
export function newestFirst(a: { key: string; at: Date | undefined }, b: { key: string; at: Date | undefined }): number {
  const d = (b.at?.getTime() ?? 0) - (a.at?.getTime() ?? 0);
  if (d !== 0) return d;
  return a.key < b.key ? 1 : a.key > b.key ? -1 : 0;
}

/** One database's backups, from a full listing of `<prefix><database>/` (keys of other layouts ignored). */
export async function listBackups(store: S3Store, database: string): Promise<DatabaseListing> {
  const dumps = new Map<string, StoredObject & { startedAt: Date }>();
  const manifests = new Map<string, StoredObject>();
  const reports = new Map<string, StoredObject>();
  const parts = new Map<string, StoredObject[]>();
  let serverTime: Date | undefined;
  for await (const o of listObjects(store, databasePrefix(store.prefix, database), (d) => (serverTime = d))) {
    if (o.key.endsWith(VERIFY_REPORT_SUFFIX)) {
      // `<dump key>.verify.json`: kept by the dump's key, when that is one of this database's dumps.
      const dumpKey = o.key.slice(0, -VERIFY_REPORT_SUFFIX.length);
      const owner = parseKey(store.prefix, dumpKey);
      if (owner?.kind === 'dump' && owner.database === database) reports.set(dumpKey, o);
      continue;
    }
    const partOf = partOwner(o.key);
    if (partOf !== undefined) {
      const owner = parseKey(store.prefix, partOf);
      if (owner?.kind === 'dump' && owner.database === database) parts.set(partOf, [...(parts.get(partOf) ?? []), o]);
      continue;
    }
    const parsed = parseKey(store.prefix, o.key);
    if (!parsed || parsed.database !== database) continue;
    if (parsed.kind === 'dump') dumps.set(o.key, { ...o, startedAt: parsed.startedAt });
    else manifests.set(parsed.dumpKey, o);
  }
  const complete: StoredBackup[] = [];
  const orphans: StoredObject[] = [];
  for (const [key, d] of dumps) {
    const manifest = manifests.get(key);
    if (manifest) {
      const report = reports.get(key);
      complete.push({
        database, key, manifestKey: manifestKeyFor(key), startedAt: d.startedAt, bytes: d.size, lastModified: d.lastModified,
        storedAt: manifest.lastModified ?? d.lastModified, manifestBytes: manifest.size, ...(report ? { drillReport: report } : {}),
        ...(parts.has(key) ? { parts: parts.get(key)! } : {}),
      });
    } else {
      orphans.push({ key, size: d.size, lastModified: d.lastModified });
    }
  }
  // Data archives of a sharded run that never wrote its manifest: orphans like its schema archive.
  for (const [key, ps] of parts) if (!manifests.has(key) || !dumps.has(key)) orphans.push(...ps.map((p) => ({ key: p.key, size: p.size, lastModified: p.lastModified })));
  const strayManifests = [...manifests].filter(([k]) => !dumps.has(k)).map(([, m]) => m);
  const strayReports = [...reports].filter(([k]) => !dumps.has(k)).map(([, r]) => r);
  // Not by LastModified alone: copying a manifest in place (a storage-class change, the runbook's
  // "restore a deleted version") would make an old backup the newest. Not by the key alone: a
  // host whose clock was a year ahead would stay "newest" for a year. backupTime() takes both.
  const byStored = <T extends { key: string }>(items: T[], at: (i: T) => Date | undefined) =>
    items.map((i) => ({ i, key: i.key, at: at(i) })).sort(newestFirst).map(({ i }) => i);
  return {
    database,
    complete: byStored(complete, backupTime),
    orphans: byStored(orphans, (o) => o.lastModified),
    strayManifests: byStored(strayManifests, (o) => o.lastModified),
    strayReports: byStored(strayReports, (o) => o.lastModified),
    serverTime,
  };
}

/**
 * How far the clock of the host that wrote a backup was off S3's, in ms (positive: ahead), when it
 * is off by more than CLOCK_SKEW_TOLERANCE_MS; undefined when it is within the tolerance or cannot
 * be told. With the manifest, its `finishedAt` (stamped just before the manifest was written)
 * against the manifest's LastModified tells both directions; without it, only a key time after S3
 * stored the backup (impossible with a right clock) shows.
 */
export function clockSkewMs(backup: Pick<StoredBackup, 'startedAt' | 'storedAt'>, manifest?: Pick<Manifest, 'finishedAt'>): number | undefined {
  if (!backup.storedAt) return undefined;
  const skew = manifest ? new Date(manifest.finishedAt).getTime() - backup.storedAt.getTime() : backup.startedAt.getTime() - backup.storedAt.getTime();
  if (Number.isNaN(skew)) return undefined;
  return skew > CLOCK_SKEW_TOLERANCE_MS || (manifest !== undefined && skew < -CLOCK_SKEW_TOLERANCE_MS) ? skew : undefined;
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

/**
 * The manifest of the backup whose dump is `dumpKey`, checked against that backup: it must parse,
 * have a known `formatVersion`, and describe this very object (same key, same database, under this
 * store's prefix). A manifest is never trusted to say where the data is: a tampered one pointing
 * at another database's dump (or outside the prefix) would otherwise restore the wrong data.
 * Throws UnreadableManifestError for a manifest that was read but cannot be trusted,
 * ManifestGoneError for one S3 says does not exist, ManifestError when S3 could not be asked.
 */
export async function readManifest(store: S3Store, dumpKey: string, dump: { readonly bytes?: number | undefined } = {}): Promise<Manifest> {
  const key = manifestKeyFor(dumpKey);
  const where = `s3://${store.bucket}/${key}`;
  const parsed = parseKey(store.prefix, dumpKey);
  if (!parsed || parsed.kind !== 'dump') {
    throw new UnreadableManifestError(`${dumpKey} is not a backup key under the prefix "${store.prefix}"`, { hint: 'Copy a key from pg-s3-backup list (and check BACKUP_PREFIX).' });
  }
  let text: string;
  try {
    text = await readBoundedText(store, key, MAX_MANIFEST_BYTES);
  } catch (err) {
    if (err instanceof TooLargeError) {
      throw new UnreadableManifestError(`manifest ${where} is unreadable: ${err.message}, more than any manifest (at most ${MAX_MANIFEST_BYTES} bytes); not read`, {
        hint: 'The backup is not complete without a readable manifest: it is skipped by list, not counted by retention, and --latest takes the one before. The manifest was replaced or damaged: investigate who can write to the bucket.',
      });
    }
    if (isNoSuchKey(err)) {
      throw new ManifestGoneError(`manifest ${where} does not exist: no complete backup has this key (deleted, by a prune running at the same time or since, or never completed)`, {
        cause: err,
        hint: 'Run `pg-s3-backup list` for the backups there are.',
      });
    }
    throw new ManifestError(`cannot read manifest ${where}: ${(err as Error).name}: ${(err as Error).message}`, {
      cause: err,
      hint: 'Check s3:GetObject on the bucket and the network path to S3, then retry.',
    });
  }
  let manifest: Manifest;
  try {
    manifest = parseManifest(text);
  } catch (err) {
    const why = err instanceof SyntaxError ? `not JSON (${err.message})` : `not a manifest this version understands (${describeSchemaError(err)})`;
    throw new UnreadableManifestError(`manifest ${where} is unreadable: ${why}`, {
      cause: err,
      hint: 'The backup is not complete without a readable manifest: it is skipped by list, not counted by retention, and --latest takes the one before. A newer pg-s3-backup may have written it (upgrade), or it was damaged.',
    });
  }
  const mismatch = [
    manifest.key !== dumpKey ? `its key is ${JSON.stringify(manifest.key)}` : undefined,
    manifest.database !== parsed.database ? `its database is ${JSON.stringify(manifest.database)}, not ${JSON.stringify(parsed.database)}` : undefined,
    parseKey(store.prefix, manifest.key) === undefined ? `its key is outside the prefix "${store.prefix}"` : undefined,
    // The listing's size of the dump: a manifest that says another size describes another object
    // (or was altered); the download would fail on it anyway, so it cannot stand for a backup.
    dump.bytes !== undefined && manifest.bytes !== dump.bytes ? `it says ${manifest.bytes} bytes, the dump object has ${dump.bytes}` : undefined,
    // A sharded backup's data archives sit at keys derived from its own: never anywhere else.
    ...(manifest.parts ?? []).map((p, i) => (p.key === partKeyFor(dumpKey, i + 1) ? undefined : `its part ${i + 1} is ${JSON.stringify(p.key)}, not ${JSON.stringify(partKeyFor(dumpKey, i + 1))}`)),
  ].filter((m): m is string => m !== undefined);
  if (mismatch.length > 0) {
    throw new UnreadableManifestError(`manifest ${where} does not describe ${dumpKey}: ${mismatch.join('; ')}; refusing to trust it`, {
      hint: 'The manifest was altered or copied from another backup: nothing was read from the object it names. Investigate who can write to the bucket; restore another backup (pg-s3-backup list).',
    });
  }
  return manifest;
}

/**
 * The most a manifest may weigh: 16 MiB. A manifest is about 1 KB plus 120-130 bytes per table
 * with data (pretty-printed `tables` entries; measured: 10,000 tables weigh 1.2-1.3 MB, 2.3 MB
 * with 63-byte schema and table names), so 16 MiB holds some 130,000 tables (74,000 with the
 * longest names). Anything larger was not written by this tool, and reading it whole would cost
 * the 1 GB backup function its memory (a 50 MB one took list to 0.5-2.9 GB).
 */
export const MAX_MANIFEST_BYTES = 16 * 1024 * 1024;
/** A drill report lists every table twice (the comparison and the restore's report): twice the bound. */
export const MAX_DRILL_REPORT_BYTES = 2 * MAX_MANIFEST_BYTES;

class TooLargeError extends Error {}

/**
 * An object's text, refusing one larger than `maxBytes` before reading it (its Content-Length)
 * and, should the length be missing or wrong, as soon as more than that has arrived: the rest is
 * never read (the connection is dropped).
 */
/**
 * S3's answer for a key that does not exist (a GET's NoSuchKey; a HEAD has no body, only its 404).
 * Not a bucket that does not exist (NoSuchBucket, a 404 too): a wrong BACKUP_BUCKET is no backup
 * deleted by a prune, and keeps S3's own words.
 */
function isNoSuchKey(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  if (e.name === 'NoSuchBucket') return false;
  return e.name === 'NoSuchKey' || e.name === 'NotFound' || e.$metadata?.httpStatusCode === 404;
}

async function readBoundedText(store: S3Store, key: string, maxBytes: number): Promise<string> {
  const res = await store.s3.send(new GetObjectCommand({ Bucket: store.bucket, Key: key }));
  const body = res.Body as (AsyncIterable<Uint8Array> & { destroy?: () => void }) | undefined;
  if (!body) return '';
  if (res.ContentLength !== undefined && res.ContentLength > maxBytes) {
    body.destroy?.();
    throw new TooLargeError(`it has ${res.ContentLength} bytes`);
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of body) {
    total += chunk.byteLength;
    if (total > maxBytes) {
      body.destroy?.();
      throw new TooLargeError(`it has more than ${maxBytes} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function describeSchemaError(err: unknown): string {
  const issues = (err as { issues?: { path: PropertyKey[]; message: string }[] }).issues;
  if (!issues?.length) return (err as Error).message;
  return issues.slice(0, 3).map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`).join('; ');
}

/** What `list` shows of a drill report: its outcome and when. */
export interface DrillSummary {
  readonly status: 'ok' | 'failed' | 'skipped';
  readonly drilledAt: string;
  /** `schema.table: problem` of a failed drill. */
  readonly failingTables: readonly string[];
}

const DrillSummarySchema = z.looseObject({
  status: z.enum(['ok', 'failed', 'skipped']),
  drilledAt: z.string().min(1),
  failingTables: z.array(z.string()).default([]),
});

/**
 * Reads a backup's drill report (`<dump key>.verify.json`, engine/restore/drill.ts) down to its
 * outcome. Throws ManifestGoneError when S3 says it does not exist (deleted since it was listed),
 * ManifestError when S3 cannot be asked or the report is not one.
 */
export async function readDrillSummary(store: S3Store, report: string): Promise<DrillSummary> {
  const where = `s3://${store.bucket}/${report}`;
  let text: string;
  try {
    text = await readBoundedText(store, report, MAX_DRILL_REPORT_BYTES);
  } catch (err) {
    if (err instanceof TooLargeError) throw new ManifestError(`drill report ${where} is unreadable: ${err.message}; not read`, { hint: 'The next drill writes a new one.' });
    // Listed, then deleted with its backup (a prune at the same time): gone, not unreadable.
    if (isNoSuchKey(err)) throw new ManifestGoneError(`drill report ${where} does not exist: deleted since it was listed (with its backup, by a prune running at the same time)`, { cause: err, hint: 'Run the command again.' });
    throw new ManifestError(`cannot read drill report ${where}: ${(err as Error).name}: ${(err as Error).message}`, { cause: err, hint: 'Check s3:GetObject on the bucket.' });
  }
  try {
    const { status, drilledAt, failingTables } = DrillSummarySchema.parse(JSON.parse(text));
    return { status, drilledAt, failingTables };
  } catch (err) {
    throw new ManifestError(`drill report ${where} is unreadable: ${(err as Error).message.slice(0, 200)}`, { cause: err, hint: 'The next drill writes a new one.' });
  }
}

/** A report's JSON (a drill report: the drill's check reads its locale), bounded like a drill report. */
export async function readReport(store: S3Store, report: string): Promise<unknown> {
  return JSON.parse(await readBoundedText(store, report, MAX_DRILL_REPORT_BYTES)) as unknown;
}

export type CheckedBackup = StoredBackup & { readonly manifest: Manifest };
export type UnreadableBackup = StoredBackup & { readonly problem: string };

/** Manifests readManifests reads at once: small GETs, well under the SDK's 50 sockets. */
const MANIFEST_READS_AT_ONCE = 8;

/**
 * Reads and checks the manifest of each backup, keeping their order: the readable ones, and the
 * unreadable ones with why (a backup whose manifest cannot be trusted is not complete). A backup
 * whose manifest is gone since the listing (ManifestGoneError) is in neither. A failure to reach
 * S3 is thrown, not taken for an unreadable manifest.
 */
export async function readManifests(store: S3Store, backups: readonly StoredBackup[]): Promise<{ readable: CheckedBackup[]; unreadable: UnreadableBackup[] }> {
  // A few GETs at a time: `list` of 100 backups waited for 100 round trips one after another
  // (4 s at a busy machine's pace, bench/results/2026-12-06-cli.md). Each result keeps its
  // backup's place, so the order stays the listing's.
  const results: (CheckedBackup | UnreadableBackup | undefined)[] = new Array(backups.length);
  let next = 0;
  let failed = false;
  const reader = async () => {
    while (!failed && next < backups.length) {
      const i = next++;
      const b = backups[i]!;
      try {
        results[i] = { ...b, manifest: await readManifest(store, b.key, { bytes: b.bytes }) };
      } catch (err) {
        // Deleted since the listing (a prune at the same time): no backup any more, neither kind.
        if (err instanceof ManifestGoneError) continue;
        if (!(err instanceof UnreadableManifestError)) {
          failed = true;
          throw err;
        }
        results[i] = { ...b, problem: err.message };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(MANIFEST_READS_AT_ONCE, backups.length) }, reader));
  const readable: CheckedBackup[] = [];
  const unreadable: UnreadableBackup[] = [];
  for (const r of results) {
    if (r && 'manifest' in r) readable.push(r);
    else if (r) unreadable.push(r);
  }
  return { readable, unreadable };
}

/** Listings `latestBackup` makes at most when backups it listed are deleted before it reads them. */
const LATEST_LISTINGS = 3;

/**
 * The newest backup of a database whose manifest is readable and describes it (by `backupTime`),
 * with the newer ones skipped on the way because their manifest could not be trusted. A listed
 * backup whose manifest is gone by the time it is read (a prune at the same time, which deletes
 * a backup only once a newer one is complete) makes the listing stale: it is listed again, so that
 * the newer backup is found rather than an older one or none.
 */
export async function latestBackup(store: S3Store, database: string): Promise<{ backup: CheckedBackup | undefined; skipped: UnreadableBackup[] }> {
  for (let listing = 1; ; listing++) {
    const skipped: UnreadableBackup[] = [];
    let stale = false;
    for (const b of (await listBackups(store, database)).complete) {
      const { readable, unreadable } = await readManifests(store, [b]);
      if (readable[0]) {
        if (!stale || listing >= LATEST_LISTINGS) return { backup: readable[0], skipped };
        break;
      }
      // Neither readable nor unreadable: gone since the listing.
      if (unreadable.length === 0) stale = true;
      skipped.push(...unreadable);
    }
    if (!stale || listing >= LATEST_LISTINGS) return { backup: undefined, skipped };
  }
}

/**
 * A dump's content as a stream (for restore and verify). A dump S3 says does not exist is
 * DumpGoneError: deleted since its backup was chosen (a prune at the same time), not damaged.
 */
export async function openDump(store: S3Store, key: string): Promise<{ body: Readable; bytes: number }> {
  let res;
  try {
    res = await store.s3.send(new GetObjectCommand({ Bucket: store.bucket, Key: key }));
  } catch (err) {
    if (!isNoSuchKey(err)) throw err;
    throw new DumpGoneError(`s3://${store.bucket}/${key} does not exist: the backup was deleted after it was chosen (by a prune running at the same time, or by hand), or it never completed`, {
      cause: err,
      hint: 'Run `pg-s3-backup list` for the backups there are (with --latest: run again, it takes the newest). A restore this stopped after its first pass (a sharded backup\'s data archives are read after its schema) left its target partly restored, unless --create made it (then it was dropped): restore again with --clean, or with --create into a new database.',
    });
  }
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

/** The two features of the store the writes use (engine/store/capabilities.ts); both by default. */
export interface WriteFeatures {
  readonly conditionalWrites: boolean;
  readonly checksumSha256: boolean;
}

/**
 * Writes the manifest; `If-None-Match: *` so that a manifest is never overwritten. On a store
 * without conditional writes the manifest's key holds the run's id (its dump's does), and the
 * write is checked afterwards (`confirmSoleObject`): the listing must show exactly this object.
 */
export async function putManifest(store: S3Store, manifest: Manifest, features: WriteFeatures = { conditionalWrites: true, checksumSha256: true }): Promise<string> {
  const key = manifestKeyFor(manifest.key);
  const body = JSON.stringify(ManifestSchema.parse(manifest), null, 2);
  try {
    const res = await store.s3.send(
      new PutObjectCommand({
        Bucket: store.bucket,
        Key: key,
        Body: body,
        ContentType: 'application/json',
        ...(features.checksumSha256 ? { ChecksumAlgorithm: 'SHA256' as const } : {}),
        ...(features.conditionalWrites ? { IfNoneMatch: '*' } : {}),
      }),
    );
    if (!features.conditionalWrites) await confirmSoleObject(store, key, { bytes: Buffer.byteLength(body), etag: res.ETag });
  } catch (err) {
    if (err instanceof KeyTakenError) throw err;
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

/**
 * After a write without `If-None-Match` (a store without conditional writes): the listing under
 * `key` must show exactly one object at `key`, of our size and with the ETag the store answered
 * us. Anything else means another writer took the key (or the store misbehaves): the object is not
 * ours to trust or to delete, and the backup fails loudly instead of claiming it.
 */
export async function confirmSoleObject(store: S3Store, key: string, ours: { bytes: number; etag: string | undefined }): Promise<void> {
  const res = await store.s3.send(new ListObjectsV2Command({ Bucket: store.bucket, Prefix: key, MaxKeys: 10 }));
  const at = (res.Contents ?? []).filter((o) => o.Key === key);
  const o = at[0];
  const why =
    at.length !== 1 ? `the listing shows ${at.length} objects at the key`
    : o!.Size !== ours.bytes ? `the object there has ${o!.Size} bytes, this run wrote ${ours.bytes}`
    : ours.etag !== undefined && o!.ETag !== undefined && o!.ETag !== ours.etag ? `the object there has ETag ${o!.ETag}, this run's write answered ${ours.etag}`
    : undefined;
  if (why) {
    throw new KeyTakenError(`s3://${store.bucket}/${key} is not this run's object after writing it (${why}): another writer took the key`, {
      hint: 'The store does not honour If-None-Match, so keys carry a run id and are checked after writing; a clash means another process writes under the same prefix with the same run id, or the store lost the write. Nothing was deleted. Run the backup again and look for a second writer.',
    });
  }
}

/** An object's Object Lock state, as HeadObject reports it (nothing when the bucket has no Object Lock). */
export interface ObjectLockState {
  /** The retain-until date of its retention (GOVERNANCE or COMPLIANCE), if any. */
  readonly retainUntil: Date | undefined;
  readonly mode: string | undefined;
  readonly legalHold: boolean;
}

/**
 * Whether the bucket has Object Lock enabled: only then can an object carry a retention or a
 * legal hold, so pruning asks each object only then. `undefined` when S3 would not tell (no
 * s3:GetBucketObjectLockConfiguration, an S3-compatible store without the API): ask each object.
 */
export async function bucketHasObjectLock(store: S3Store): Promise<boolean | undefined> {
  try {
    const res = await store.s3.send(new GetObjectLockConfigurationCommand({ Bucket: store.bucket }));
    return res.ObjectLockConfiguration?.ObjectLockEnabled === 'Enabled';
  } catch (err) {
    if ((err as Error).name === 'ObjectLockConfigurationNotFoundError') return false;
    return undefined;
  }
}

/**
 * The Object Lock state of `key` by HeadObject: its retention and legal hold (S3 reports them to a
 * caller with s3:GetObjectRetention / s3:GetObjectLegalHold). A key that is already gone has none.
 */
export async function objectLockState(store: S3Store, key: string): Promise<ObjectLockState> {
  try {
    const res = await store.s3.send(new HeadObjectCommand({ Bucket: store.bucket, Key: key }));
    return { retainUntil: res.ObjectLockRetainUntilDate, mode: res.ObjectLockMode, legalHold: res.ObjectLockLegalHoldStatus === 'ON' };
  } catch (err) {
    if (isNoSuchKey(err)) return { retainUntil: undefined, mode: undefined, legalHold: false };
    throw new PruneError(`cannot read the Object Lock state of s3://${store.bucket}/${key}: ${(err as Error).name}: ${(err as Error).message}`, {
      cause: err,
      hint: 'Pruning deletes nothing it cannot check: grant s3:GetObject (and s3:GetObjectRetention, s3:GetObjectLegalHold) under the prefix.',
    });
  }
}

/** Keys handed out in this process and not yet finished: two runs in one process never share one. */
const reserved = new Set<string>();

/**
 * A dump key for `database` at `startedAt` that no run in this process holds and that has no
 * object yet; on a clash it moves on by one millisecond (the layout has millisecond stamps).
 * Across processes the upload's `If-None-Match: *` is the last guard: it never overwrites. On a
 * store without conditional writes, `runId` (8 hex digits, random per run) is part of the key, so
 * two processes never pick the same one; the upload is then checked by `confirmSoleObject`.
 */
export async function reserveDumpKey(store: S3Store, database: string, startedAt: Date, runId?: string): Promise<{ key: string; release: () => void }> {
  for (let offset = 0; offset < 1000; offset++) {
    const key = buildDumpKey(store.prefix, database, new Date(startedAt.getTime() + offset), runId);
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
