/**
 * `--latest` (restore, verify, the drill's pick) while a backup run completes and prunes: the
 * newest backup listed is deleted before its manifest is read, because a newer one completed in
 * between (a prune deletes a backup only once a newer one is there). The newest backup is then the
 * one that completed meanwhile, not an older one and not "no complete backup". The overlap is
 * injected through the store's S3 client (a middleware that, once the listing has answered,
 * writes the new backup and prunes as the backup run does), against moto.
 */
import { DeleteObjectsCommand, S3Client } from '@aws-sdk/client-s3';
import { randomUUID } from 'node:crypto';
import { expect, it } from 'vitest';
import { manifestKeyFor } from '../../../engine/store/backup-key.ts';
import { latestBackup, openDump, readManifest } from '../../../engine/store/s3-store.ts';
import { putStoredBackup, testClients, type TestClients } from '../../support/aws.ts';
import type { TestAws } from '../../support/moto.ts';
import { useMotoBucket } from '../../support/services.ts';

let aws: TestAws;
let c: TestClients;
let bucket: string;
useMotoBucket((s) => ({ aws, c, bucket } = s));

const putBackup = (prefix: string, at: Date) => putStoredBackup(c, bucket, prefix, 'app', at, { finishedAt: new Date() });

/** A client whose first listing is followed, before its answer reaches the caller, by `meanwhile`. */
function clientWithOverlap(meanwhile: () => Promise<void>): S3Client {
  const client = testClients(aws.endpoint).s3;
  let done = false;
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const result = await next(args);
      if (!done && context.commandName === 'ListObjectsV2Command') {
        done = true;
        await meanwhile();
      }
      return result;
    },
    { step: 'initialize', name: 'overlapAfterFirstListing' },
  );
  return client;
}

const hoursAgo = (h: number) => new Date(Date.now() - h * 3_600_000);

it('the only backup listed is pruned (RETENTION_COUNT=1) before its manifest is read: --latest is the backup that completed meanwhile, not "no complete backup"', async () => {
  const prefix = `latest-${randomUUID().slice(0, 6)}/`;
  const listed = await putBackup(prefix, hoursAgo(24));
  let newer = '';
  const s3 = clientWithOverlap(async () => {
    newer = await putBackup(prefix, hoursAgo(0));
    await c.s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: [{ Key: listed }, { Key: manifestKeyFor(listed) }] } }));
  });
  const { backup, skipped } = await latestBackup({ s3, bucket, prefix }, 'app');
  expect({ key: backup?.key, skipped }).toEqual({ key: newer, skipped: [] });
});

it('the newest backup listed is pruned (GFS keeps a monthly one) before its manifest is read: --latest is the newer one, not the month-old one', async () => {
  const prefix = `latest-${randomUUID().slice(0, 6)}/`;
  const monthly = await putBackup(prefix, hoursAgo(24 * 20));
  const daily = await putBackup(prefix, hoursAgo(24));
  let newer = '';
  const s3 = clientWithOverlap(async () => {
    newer = await putBackup(prefix, hoursAgo(0));
    await c.s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: [{ Key: daily }, { Key: manifestKeyFor(daily) }] } }));
  });
  const { backup } = await latestBackup({ s3, bucket, prefix }, 'app');
  expect(backup?.key).toBe(newer);
  expect(backup?.key).not.toBe(monthly);
});

it('a bucket that does not exist is not taken for a backup deleted by a prune: S3\'s NoSuchBucket is kept', async () => {
  const store = { s3: c.s3, bucket: `no-such-bucket-${randomUUID().slice(0, 8)}`, prefix: 'pg-s3-backup/' };
  const key = 'pg-s3-backup/app/2026/01/01/app-20260101T020000000Z.dump';
  const manifest = await readManifest(store, key).then(() => undefined, (e: unknown) => e as Error);
  expect(manifest?.name).toBe('ManifestError');
  expect(manifest?.message).toMatch(/^cannot read manifest .*: NoSuchBucket: /);
  const dump = await openDump(store, key).then(() => undefined, (e: unknown) => e as Error);
  expect(dump?.name).toBe('NoSuchBucket');
});
