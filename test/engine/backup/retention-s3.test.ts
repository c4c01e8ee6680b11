/**
 * Pruning against a real S3 API: exactly RETENTION_COUNT complete backups kept, old orphans
 * gone, young orphans kept, other databases and other prefixes untouched, dry runs delete
 * nothing, and listings that span many pages.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDumpKey, manifestKeyFor } from '../../../engine/store/backup-key.ts';
import { pruneDatabase } from '../../../engine/backup/retention.ts';
import { listBackups, readManifests, listDatabases, latestBackup, type S3Store } from '../../../engine/store/s3-store.ts';
import { MANIFEST_FORMAT_VERSION } from '../../../engine/store/manifest.ts';
import { createBucket, listKeys, putText, testClients, type TestClients } from '../../support/aws.ts';
import { startMoto, type TestAws } from '../../support/moto.ts';


describe('retention', () => {
  let aws: TestAws;
  let c: TestClients;
  let bucket: string;

  beforeAll(async () => {
    aws = await startMoto();
    c = testClients(aws.endpoint);
    bucket = await createBucket(c);
  });
  afterAll(async () => {
    await aws?.stop();
  });

  const manifestFor = (database: string, key: string, at: Date) =>
    JSON.stringify({
      formatVersion: MANIFEST_FORMAT_VERSION, database, key, bytes: 5, sha256: 'a'.repeat(64), compression: 'zstd:1', pgDumpVersion: '18.6',
      serverVersion: '18.4', startedAt: at.toISOString(), finishedAt: at.toISOString(), durationMs: 1, reason: 'test', toolVersion: '0.1.0',
    });

  async function putBackup(prefix: string, database: string, at: Date, complete = true): Promise<string> {
    const key = buildDumpKey(prefix, database, at);
    await putText(c, bucket, key, 'PGDMP');
    if (complete) await putText(c, bucket, manifestKeyFor(key), manifestFor(database, key, at));
    return key;
  }

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

    const dry = await pruneDatabase(store, 'app', { retentionCount: 3, now, orphanMinAgeMs, dryRun: true });
    expect(await listKeys(c, bucket)).toEqual(before);
    expect(dry.dryRun).toBe(true);

    const res = await pruneDatabase(store, 'app', { retentionCount: 3, now, orphanMinAgeMs });
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
    const res = await pruneDatabase(store, 'app', { retentionCount: 1, now: new Date() });
    expect(res.deleted).toEqual([]);
    expect(await listKeys(c, bucket, prefix)).toEqual([young]);
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
    const res = await pruneDatabase(store, 'big', { retentionCount: 5, now: new Date() });
    expect(res.deleted).toHaveLength(555 * 2);
    expect(await listKeys(c, bucket, prefix)).toEqual(keys.slice(-5).flatMap((k) => [k, manifestKeyFor(k)]).sort());
  });
});
