/**
 * `run` aborts the multipart uploads a killed run left under its own prefix (issue 22, item 6):
 * only `prune` did, so a backup killed mid-upload (SIGKILL, a Lambda timeout) left its parts
 * billed and invisible until someone ran prune. Uploads under another prefix are not its own.
 */
import { CreateMultipartUploadCommand, UploadPartCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { listMultipartUploads } from '../support/aws.ts';
import { runCli, startCliServices, type CliServices } from '../support/cli.ts';

let svc: CliServices;

beforeAll(async () => {
  svc = await startCliServices();
}, 300_000);

afterAll(async () => {
  await svc?.stop();
});

async function orphan(key: string): Promise<void> {
  const { UploadId } = await svc.clients.s3.send(new CreateMultipartUploadCommand({ Bucket: svc.bucket, Key: key }));
  await svc.clients.s3.send(new UploadPartCommand({ Bucket: svc.bucket, Key: key, UploadId, PartNumber: 1, Body: Buffer.alloc(1024, 1) }));
}

it('aborts the orphan uploads under its prefix older than STALE_UPLOAD_AGE_SECONDS, and no other', async () => {
  await orphan('pg-s3-backup/app/2026/12/05/app-20261205T020000000Z.dump');
  await orphan('elsewhere/app/x.dump');
  const run = await runCli(['backup', '--reason', 'stale uploads test'], { ...svc.env, STALE_UPLOAD_AGE_SECONDS: '0' });
  expect(run.code, run.stderr).toBe(0);
  expect(run.events.find((e) => e.event === 'prune.stale-uploads.aborted')).toMatchObject({ prefix: 'pg-s3-backup/', aborted: 1 });
  expect(await listMultipartUploads(svc.clients, svc.bucket)).toEqual(['elsewhere/app/x.dump']);
  // Leave none behind.
  await runCli(['prune'], { ...svc.env, BACKUP_PREFIX: 'elsewhere/', STALE_UPLOAD_AGE_SECONDS: '0' });
  expect(await listMultipartUploads(svc.clients, svc.bucket)).toEqual([]);
});
