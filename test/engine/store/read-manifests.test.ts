/**
 * readManifests against a real S3 API: `list` of 100 backups reads 100 manifests, which must not
 * wait for each other's round trip (the target is ≤ 1 s; bench/results/2026-12-06-cli.md), yet the
 * result keeps the listing's order and still sets apart the manifests that cannot be trusted.
 */
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildDumpKey, manifestKeyFor } from '../../../engine/store/backup-key.ts';
import { MANIFEST_FORMAT_VERSION } from '../../../engine/store/manifest.ts';
import { listBackups, readManifests, type S3Store } from '../../../engine/store/s3-store.ts';
import { createBucket, putText, testClients, type TestClients } from '../../support/aws.ts';
import { startMoto, type TestAws } from '../../support/moto.ts';

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

/** Counts the GETs of manifests in flight at once (a client middleware: the requests are real). */
function countInFlight(s3: S3Client): { readonly max: () => number } {
  let now = 0;
  let max = 0;
  type Next = (args: { input: unknown }) => Promise<unknown>;
  s3.middlewareStack.add(
    ((next: Next, context: { commandName?: string }) => async (args: { input: unknown }) => {
      if (context.commandName !== GetObjectCommand.name) return next(args);
      max = Math.max(max, ++now);
      try {
        return await next(args);
      } finally {
        now--;
      }
    }) as never,
    { step: 'initialize', name: 'countInFlight' },
  );
  return { max: () => max };
}

it('reads many manifests a few at a time, in the listing\'s order, the unreadable ones set apart', async () => {
  const prefix = 'many/';
  const base = Date.now() - 60_000;
  const keys: string[] = [];
  for (let i = 0; i < 24; i++) {
    const at = new Date(base + i * 1000);
    const key = buildDumpKey(prefix, 'app', at);
    keys.push(key);
    await putText(c, bucket, key, 'PGDMP');
    const manifest = {
      formatVersion: MANIFEST_FORMAT_VERSION, database: 'app', key, bytes: 5, sha256: 'a'.repeat(64), compression: 'zstd:1', pgDumpVersion: '18.6',
      serverVersion: '18.4', startedAt: at.toISOString(), finishedAt: at.toISOString(), durationMs: 1, reason: 'test', toolVersion: '0.1.0',
    };
    // Every fifth one damaged: not JSON.
    await putText(c, bucket, manifestKeyFor(key), i % 5 === 2 ? '{ not json' : JSON.stringify(manifest));
  }
  const { s3 } = testClients(aws.endpoint);
  const inFlight = countInFlight(s3);
  const store: S3Store = { s3, bucket, prefix };
  const listing = await listBackups(store, 'app');
  const { readable, unreadable } = await readManifests(store, listing.complete);

  const newestFirst = [...keys].reverse();
  expect(readable.map((b) => b.manifest.key)).toEqual(newestFirst.filter((_, i) => (keys.length - 1 - i) % 5 !== 2));
  expect(unreadable.map((b) => b.key)).toEqual(newestFirst.filter((_, i) => (keys.length - 1 - i) % 5 === 2));
  for (const u of unreadable) expect(u.problem).toMatch(/is unreadable: not JSON/);
  expect(inFlight.max()).toBeGreaterThan(1);
  expect(inFlight.max()).toBeLessThanOrEqual(8);
});
