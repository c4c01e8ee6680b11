/**
 * Pruning against a real S3 API: exactly RETENTION_COUNT complete backups kept, old orphans
 * gone, young orphans kept, other databases and other prefixes untouched, dry runs delete
 * nothing, and listings that span many pages; GFS rules over months of nightly backups (S3's
 * clock moved back by a client middleware: moto stamps every object "now"); Object Lock; many
 * manifests read a few at a time (`list` of 100 backups must not wait for 100 round trips one after
 * another: bench/results/2026-12-06-cli.md), in the listing's order.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CreateBucketCommand, DeleteObjectsCommand, GetObjectCommand, PutObjectCommand, PutObjectLegalHoldCommand, S3Client, type ListObjectsV2CommandOutput } from '@aws-sdk/client-s3';
import { buildDumpKey, buildGlobalsKey, manifestKeyFor, parseKey } from '../../../engine/store/backup-key.ts';
import { pruneDatabase, pruneGlobals } from '../../../engine/backup/retention.ts';
import { listBackups, readManifests, listDatabases, latestBackup, type S3Store } from '../../../engine/store/s3-store.ts';
import { s3Store } from '../../../engine/store/s3.ts';
import { MANIFEST_FORMAT_VERSION } from '../../../engine/store/manifest.ts';
import { createBucket, listKeys, putStoredBackup, putText, testClients, type TestClients } from '../../support/aws.ts';
import type { TestAws } from '../../support/moto.ts';
import { useMotoBucket } from '../../support/services.ts';


describe('retention', () => {
  let aws: TestAws;
  let c: TestClients;
  let bucket: string;
  useMotoBucket((s) => ({ aws, c, bucket } = s));

  const putBackup = (prefix: string, database: string, at: Date, complete = true) => putStoredBackup(c, bucket, prefix, database, at, { complete });

  it('keeps the newest RETENTION_COUNT of 10 complete backups, removes old orphans, touches nothing else', async () => {
    const prefix = `p-${randomUUID().slice(0, 6)}/`;
    const store: S3Store = { s3: c.s3, bucket, prefix };
    // Ages are S3's clock against S3's LastModified, so no object here can be made a day old: an
    // orphan minimum age of zero makes every orphan old enough.
    const now = new Date();
    const orphanMinAgeMs = 0;
    const complete: string[] = [];
    for (let i = 0; i < 10; i++) complete.push(await putBackup(prefix, 'app', new Date(Date.UTC(2026, 0, 1 + i, 2))));
    const orphans = [await putBackup(prefix, 'app', new Date(Date.UTC(2025, 11, 1)), false), await putBackup(prefix, 'app', new Date(Date.UTC(2026, 0, 20)), false)];
    // Neighbours that must survive: another database whose name starts like this one, another
    // prefix, an unrelated object inside the database's folder, and a database of the same name
    // under a prefix that extends this one.
    const others = [
      await putBackup(prefix, 'app2', new Date(Date.UTC(2020, 0, 1))),
      await putBackup('other/', 'app', new Date(Date.UTC(2020, 0, 1))),
      await putBackup(`${prefix}nested/`, 'app', new Date(Date.UTC(2020, 0, 1))),
    ];
    await putText(c, bucket, `${prefix}app/README.txt`, 'not ours');
    const before = await listKeys(c, bucket);

    const listing = await listBackups(store, 'app');
    expect(listing.complete.map((b) => b.key)).toEqual([...complete].reverse());
    expect(listing.orphans.map((o) => o.key)).toEqual([...orphans].reverse());

    const dry = await pruneDatabase(s3Store(store), 'app', { retentionCount: 3, now, orphanMinAgeMs, dryRun: true });
    expect(await listKeys(c, bucket)).toEqual(before);
    expect(dry.dryRun).toBe(true);

    const res = await pruneDatabase(s3Store(store), 'app', { retentionCount: 3, now, orphanMinAgeMs });
    expect([...res.deleted].sort()).toEqual([...dry.deleted].sort());
    expect(res.kept).toEqual(complete.slice(-3).reverse());
    const expectedDeleted = [...complete.slice(0, 7).flatMap((k) => [k, manifestKeyFor(k)]), ...orphans].sort();
    expect([...res.deleted].sort()).toEqual(expectedDeleted);
    expect(await listKeys(c, bucket)).toEqual(before.filter((k) => !expectedDeleted.includes(k)));
    for (const k of others) expect(await listKeys(c, bucket, k)).toEqual([k, manifestKeyFor(k)]);

    const kept = await readManifests(store, (await listBackups(store, 'app')).complete);
    expect(kept.readable.map((b) => b.manifest.key)).toEqual(complete.slice(-3).reverse());
    expect((await latestBackup(store, 'app')).backup?.key).toBe(complete[9]);
    expect(await listDatabases(store)).toEqual(['app', 'app2']);
  });

  it('keeps orphans younger than a day (a run may still be writing its manifest)', async () => {
    const prefix = `young-${randomUUID().slice(0, 6)}/`;
    const store: S3Store = { s3: c.s3, bucket, prefix };
    const young = await putBackup(prefix, 'app', new Date(), false);
    const res = await pruneDatabase(s3Store(store), 'app', { retentionCount: 1, now: new Date() });
    expect(res.deleted).toEqual([]);
    expect(await listKeys(c, bucket, prefix)).toEqual([young]);
  });

  it('reads many manifests a few at a time, in the listing\'s order, the unreadable ones set apart', async () => {
    const prefix = `many-${randomUUID().slice(0, 6)}/`;
    const base = Date.now() - 60_000;
    const keys: string[] = [];
    for (let i = 0; i < 24; i++) {
      const at = new Date(base + i * 1000);
      const key = await putBackup(prefix, 'app', at);
      keys.push(key);
      // Every fifth one damaged: not JSON.
      if (i % 5 === 2) await putText(c, bucket, manifestKeyFor(key), '{ not json');
    }
    const { s3 } = testClients(aws.endpoint);
    const inFlight = countGetsInFlight(s3);
    const store: S3Store = { s3, bucket, prefix };
    const { readable, unreadable } = await readManifests(store, (await listBackups(store, 'app')).complete);

    const damaged = (key: string) => keys.indexOf(key) % 5 === 2;
    const newestFirst = [...keys].reverse();
    expect(readable.map((b) => b.manifest.key)).toEqual(newestFirst.filter((k) => !damaged(k)));
    expect(unreadable.map((b) => b.key)).toEqual(newestFirst.filter(damaged));
    for (const u of unreadable) expect(u.problem).toMatch(/is unreadable: not JSON/);
    expect(inFlight.max()).toBeGreaterThan(1);
    expect(inFlight.max()).toBeLessThanOrEqual(8);
  });

  it('a backup another prune deletes between the listing and its manifest\'s read is neither counted nor a failure', async () => {
    // Two prunes at once (the schedule's run and an operator's): the other one deletes a backup
    // this one listed as kept, before its manifest is read. That backup is gone, not unreadable.
    const prefix = `race-${randomUUID().slice(0, 6)}/`;
    const store: S3Store = { s3: c.s3, bucket, prefix };
    const keys: string[] = [];
    for (let i = 0; i < 5; i++) keys.push(await putBackup(prefix, 'app', new Date(Date.UTC(2026, 0, 1 + i, 2))));
    const [oldest, second, , , newest] = keys as [string, string, string, string, string];
    const gone = keys[3]!;
    const real = s3Store(store);
    const racing = {
      ...real,
      listBackups: async (database: string) => {
        const listing = await real.listBackups(database);
        await c.s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: [{ Key: manifestKeyFor(gone) }, { Key: gone }] } }));
        return listing;
      },
    };
    const res = await pruneDatabase(racing, 'app', { retentionCount: 3, now: new Date() });
    // The three newest that still exist are kept; only the oldest goes.
    expect(res.kept).toEqual([newest, keys[2], second]);
    expect(res.deleted).toEqual([oldest, manifestKeyFor(oldest)]);
    expect(await listKeys(c, bucket, prefix)).toEqual([second, manifestKeyFor(second), keys[2]!, manifestKeyFor(keys[2]!), newest, manifestKeyFor(newest)]);
    // list, status and --latest read manifests the same way: the gone one is in neither set.
    const listing = await listBackups(store, 'app');
    await c.s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: [{ Key: manifestKeyFor(newest) }] } }));
    const { readable, unreadable } = await readManifests(store, listing.complete);
    expect(readable.map((b) => b.key)).toEqual([keys[2], second]);
    expect(unreadable).toEqual([]);
  });

  it('follows pagination: more than 1,000 keys listed 100 per page, pruned in batches', async () => {
    const prefix = `many-${randomUUID().slice(0, 6)}/`;
    const store: S3Store = { s3: c.s3, bucket, prefix, pageSize: 100 };
    const start = Date.UTC(2025, 0, 1);
    const keys: string[] = [];
    // 560 complete backups = 1,120 objects, written a few at a time; the newest five one by one
    // last, so that S3's clock (the order of backups) agrees with the keys about which are newest.
    for (let i = 0; i < 555; i += 37) {
      keys.push(...(await Promise.all(Array.from({ length: 37 }, (_, j) => putBackup(prefix, 'big', new Date(start + (i + j) * 3_600_000))))));
    }
    for (let i = 555; i < 560; i++) keys.push(await putBackup(prefix, 'big', new Date(start + i * 3_600_000)));
    const listing = await listBackups(store, 'big');
    expect(listing.complete).toHaveLength(560);
    expect(listing.complete[0]!.key).toBe(keys.at(-1));
    const res = await pruneDatabase(s3Store(store), 'big', { retentionCount: 5, now: new Date() });
    expect(res.deleted).toHaveLength(555 * 2);
    expect(await listKeys(c, bucket, prefix)).toEqual(keys.slice(-5).flatMap((k) => [k, manifestKeyFor(k)]).sort());
  });
});

/** Counts the GETs in flight at once (a client middleware: the requests are real). */
function countGetsInFlight(s3: S3Client): { readonly max: () => number } {
  let now = 0;
  let max = 0;
  type Next = (args: unknown) => Promise<unknown>;
  s3.middlewareStack.add(
    ((next: Next, context: { commandName?: string }) => async (args: unknown) => {
      if (context.commandName !== GetObjectCommand.name) return next(args);
      max = Math.max(max, ++now);
      try {
        return await next(args);
      } finally {
        now--;
      }
    }) as never,
    { step: 'initialize', name: 'countGetsInFlight' },
  );
  return { max: () => max };
}

/**
 * A client whose listings carry S3 times from the past: each of our objects' LastModified becomes
 * the time in its key (a manifest ten minutes later), as if S3 had stored them then. Counts the
 * requests by command, so tests can tell which calls pruning made.
 */
function clientWithPastClock(endpoint: string, prefix: string): { s3: S3Client; calls: Map<string, number> } {
  const { s3 } = testClients(endpoint);
  const calls = new Map<string, number>();
  type Next = (args: unknown) => Promise<{ output: unknown }>;
  s3.middlewareStack.add(
    ((next: Next, context: { commandName?: string }) => async (args: unknown) => {
      calls.set(context.commandName ?? '?', (calls.get(context.commandName ?? '?') ?? 0) + 1);
      const result = await next(args);
      for (const o of (result.output as ListObjectsV2CommandOutput).Contents ?? []) {
        const parsed = o.Key === undefined ? undefined : parseKey(prefix, o.Key);
        if (parsed) o.LastModified = new Date(parsed.startedAt.getTime() + (parsed.kind === 'manifest' ? 600_000 : 0));
      }
      return result;
    }) as never,
    { step: 'initialize', name: 'testPastClock' },
  );
  return { s3, calls };
}

describe('GFS retention and Object Lock', () => {
  let aws: TestAws;
  let c: TestClients;
  useMotoBucket((s) => ({ aws, c } = s));

  const manifestFor = (database: string, key: string, at: Date) =>
    JSON.stringify({
      formatVersion: MANIFEST_FORMAT_VERSION, database, key, bytes: 5, sha256: 'a'.repeat(64), compression: 'zstd:1', pgDumpVersion: '18.6',
      serverVersion: '18.4', startedAt: at.toISOString(), finishedAt: at.toISOString(), durationMs: 1, reason: 'test', toolVersion: '0.1.0',
    });

  it('keeps count, daily, weekly and monthly backups by the calendar of RETENTION_TIME_ZONE, never counting an unreadable one', async () => {
    const bucket = await createBucket(c);
    const prefix = 'gfs/';
    const { s3, calls } = clientWithPastClock(aws.endpoint, prefix);
    const store: S3Store = { s3, bucket, prefix };
    // 100 nightly backups at 11:30 UTC, which is 00:30 the next day in Auckland (NZDT, UTC+13).
    const day = (d: number) => new Date(Date.UTC(2026, 10, 1 + d, 11, 30));
    const keys: string[] = [];
    for (let d = 0; d < 100; d += 10) {
      keys.push(
        ...(await Promise.all(
          Array.from({ length: 10 }, async (_, j) => {
            const at = day(d + j);
            const key = buildDumpKey(prefix, 'app', at);
            await putText(c, bucket, key, 'PGDMP');
            // The backup of 30 December (UTC) has a manifest this version cannot read.
            await putText(c, bucket, manifestKeyFor(key), at.toISOString().startsWith('2026-12-30') ? '{"formatVersion": 99}' : manifestFor('app', key, at));
            return key;
          }),
        )),
      );
    }
    const utc = (iso: string) => buildDumpKey(prefix, 'app', new Date(`${iso}T11:30:00Z`));
    // The same rules by UTC's calendar keep other backups: 31 January and 31 December UTC are their months' last.
    const inUtc = await pruneDatabase(s3Store(store), 'app', { retentionCount: 3, gfs: { daily: 7, weekly: 4, monthly: 3, timeZone: 'UTC' }, now: new Date(), dryRun: true });
    expect(inUtc.kept).toEqual(expect.arrayContaining([utc('2027-01-31'), utc('2026-12-31')]));
    const res = await pruneDatabase(s3Store(store), 'app', {
      retentionCount: 3,
      gfs: { daily: 7, weekly: 4, monthly: 3, timeZone: 'Pacific/Auckland' },
      now: new Date(),
    });
    // The newest is 8 February 2027 UTC = Tuesday 9 February in Auckland (ISO week 2027-W06).
    // count 3: 6–8 Feb; daily 7: Auckland 3–9 Feb = UTC 2–8 Feb; weekly 4: W06 (9 Feb), W05
    // (Sunday 7 Feb = UTC 6 Feb), W04 (31 Jan = UTC 30 Jan), W03 (24 Jan = UTC 23 Jan); monthly 3:
    // February, January (31 Jan = UTC 30 Jan), December: 31 December in Auckland is 30 December
    // UTC, whose manifest is unreadable, so December's newest readable backup stands for it
    // (UTC 29 December, 30 December in Auckland).
    const expected = ['2027-02-08', '2027-02-07', '2027-02-06', '2027-02-05', '2027-02-04', '2027-02-03', '2027-02-02', '2027-01-30', '2027-01-23', '2026-12-29'].map(utc);
    expect(res.kept).toEqual(expected);
    expect(res.unreadable).toEqual([]);
    expect(res.locked).toEqual([]);
    const left = await listKeys(c, bucket, prefix);
    expect(left).toEqual(expected.flatMap((k) => [k, manifestKeyFor(k)]).sort());
    expect(res.deleted).toHaveLength(2 * (keys.length - expected.length));
    // No Object Lock on this bucket: one question for the bucket, none per object.
    expect(calls.get('HeadObjectCommand') ?? 0).toBe(0);
    expect(calls.get('GetObjectLockConfigurationCommand')).toBe(2);

    // Tomorrow's prune with no new backup deletes nothing more.
    const again = await pruneDatabase(s3Store(store), 'app', { retentionCount: 3, gfs: { daily: 7, weekly: 4, monthly: 3, timeZone: 'Pacific/Auckland' }, now: new Date() });
    expect(again.deleted).toEqual([]);
  });

  it('never deletes a backup under Object Lock (retention in the future, or a legal hold on any of its objects): skipped and reported', async () => {
    const bucket = `pgs3b-lock-${randomUUID().slice(0, 8)}`;
    await c.s3.send(new CreateBucketCommand({ Bucket: bucket, ObjectLockEnabledForBucket: true }));
    const prefix = 'lock/';
    const { s3, calls } = clientWithPastClock(aws.endpoint, prefix);
    const store: S3Store = { s3, bucket, prefix };
    const until = new Date(Date.now() + 2 * 86_400_000);
    const keys: string[] = [];
    for (let d = 0; d < 5; d++) {
      const at = new Date(Date.UTC(2026, 0, 1 + d, 2));
      const key = buildDumpKey(prefix, 'app', at);
      // Day 0: the dump is retained (GOVERNANCE) for two more days. Day 1: its manifest is under a legal hold.
      await c.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: 'PGDMP', ...(d === 0 ? { ObjectLockMode: 'GOVERNANCE', ObjectLockRetainUntilDate: until } : {}) }));
      await c.s3.send(new PutObjectCommand({ Bucket: bucket, Key: manifestKeyFor(key), Body: manifestFor('app', key, at) }));
      if (d === 1) await c.s3.send(new PutObjectLegalHoldCommand({ Bucket: bucket, Key: manifestKeyFor(key), LegalHold: { Status: 'ON' } }));
      keys.push(key);
    }
    const res = await pruneDatabase(s3Store(store), 'app', { retentionCount: 1, now: new Date() });
    expect(res.kept).toEqual([keys[4]]);
    expect([...res.deleted].sort()).toEqual([keys[2]!, keys[3]!].flatMap((k) => [k, manifestKeyFor(k)]).sort());
    const locked = [...res.locked].sort((a, b) => (a.key < b.key ? -1 : 1));
    expect(locked.map((l) => [l.key, l.legalHold])).toEqual([
      [keys[0], false],
      [keys[1], true],
    ]);
    // S3 keeps the retain-until date to the second (moto to the millisecond).
    expect(Math.abs(new Date(locked[0]!.retainUntil!).getTime() - until.getTime())).toBeLessThan(1000);
    expect(locked[1]!.retainUntil).toBeUndefined();
    // Both locked backups are still complete backups in the listing.
    expect((await listBackups({ ...store, s3: c.s3 }, 'app')).complete.map((b) => b.key).sort()).toEqual([keys[0]!, keys[1]!, keys[4]!].sort());
    // Each object of each backup retention would delete: 4 backups × (dump + manifest).
    expect(calls.get('HeadObjectCommand')).toBe(8);
    // The globals files follow the same rule.
    // (Both are stamped "now" by moto; within S3's one-second resolution the key breaks the tie.)
    const g = buildGlobalsKey(prefix, new Date(Date.UTC(2026, 0, 1, 2)));
    const newer = buildGlobalsKey(prefix, new Date(Date.UTC(2026, 0, 2, 2)));
    await c.s3.send(new PutObjectCommand({ Bucket: bucket, Key: g, Body: '--', ObjectLockMode: 'GOVERNANCE', ObjectLockRetainUntilDate: until }));
    await c.s3.send(new PutObjectCommand({ Bucket: bucket, Key: newer, Body: '--' }));
    const globals = await pruneGlobals(s3Store(store), { retentionCount: 1, now: new Date() });
    expect(globals.kept).toEqual([newer]);
    expect(globals.deleted).toEqual([]);
    expect(globals.locked.map((l) => l.key)).toEqual([g]);
  });
});

