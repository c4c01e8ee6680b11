/**
 * `status` (and `list`'s drill column) while a prune runs: the newest drill report was listed
 * beside a backup that the prune (a backup run's, RETENTION_COUNT or GFS) deletes with it before
 * the report is read. That report is gone, not unreadable: status must not flag the database for
 * attention with "drill report unreadable … NoSuchKey". The prune is injected through the store
 * (its listing deletes that backup right after it was made), against moto.
 */
import { DeleteObjectsCommand } from '@aws-sdk/client-s3';
import { randomUUID } from 'node:crypto';
import { expect, it } from 'vitest';
import { databaseFacts } from '../../cli/status.ts';
import { ManifestGoneError } from '../../engine/errors.ts';
import { computeStatus } from '../../engine/status.ts';
import { manifestKeyFor, verifyReportKeyFor } from '../../engine/store/backup-key.ts';
import { s3Source } from '../../engine/store/s3.ts';
import { putStoredBackup, putText, type TestClients } from '../support/aws.ts';
import { useMotoBucket } from '../support/services.ts';

let c: TestClients;
let bucket: string;
useMotoBucket((s) => ({ c, bucket } = s));

async function putBackup(prefix: string, at: Date, drilled: boolean): Promise<string> {
  // Written now (S3 stamps it now): its manifest says it finished now, or status would see a wrong clock.
  const key = await putStoredBackup(c, bucket, prefix, 'app', at, { finishedAt: new Date() });
  if (drilled) await putText(c, bucket, verifyReportKeyFor(key), JSON.stringify({ kind: 'pg-s3-backup restore drill', status: 'ok', drilledAt: at.toISOString(), failingTables: [] }));
  return key;
}

it('status while a prune deletes the backup with the newest drill report: the newest report still there is the last drill, and nothing is "unreadable"', async () => {
  const prefix = `status-${randomUUID().slice(0, 6)}/`;
  const now = new Date();
  const hoursAgo = (h: number) => new Date(now.getTime() - h * 3_600_000);
  // A monthly backup GFS keeps (drilled), yesterday's (drilled last night), and tonight's (not drilled yet).
  const monthly = await putBackup(prefix, hoursAgo(24 * 20), true);
  const yesterday = await putBackup(prefix, hoursAgo(24), false);
  await putBackup(prefix, hoursAgo(1), false);
  // Yesterday's report is the newest one (written last).
  await putText(c, bucket, verifyReportKeyFor(yesterday), JSON.stringify({ kind: 'pg-s3-backup restore drill', status: 'ok', drilledAt: hoursAgo(20).toISOString(), failingTables: [] }));
  const real = s3Source({ s3: c.s3, bucket, prefix });
  const pruning = {
    ...real,
    listBackups: async (database: string) => {
      const listing = await real.listBackups(database);
      // Tonight's backup run prunes yesterday's backup, its report with it, once status has listed them.
      await c.s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: [yesterday, manifestKeyFor(yesterday), verifyReportKeyFor(yesterday)].map((Key) => ({ Key })) } }));
      return listing;
    },
  };
  const facts = await databaseFacts(pruning, 'app');
  expect(facts.drill).toEqual({ key: monthly, summary: { status: 'ok', drilledAt: hoursAgo(24 * 20).toISOString(), failingTables: [] } });
  const [status] = computeStatus({ databases: [facts], now, maxAgeHours: 26 }).databases;
  expect(status!.problems).toEqual([]);
  expect(status!.verdict).toBe('ok');
  // list reads the report the same way: a report gone since the listing is ManifestGoneError (list shows no drill for it, without a warning).
  await expect(real.readDrillSummary(verifyReportKeyFor(yesterday))).rejects.toBeInstanceOf(ManifestGoneError);
});
