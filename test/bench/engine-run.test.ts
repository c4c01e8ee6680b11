/**
 * bench/engine-run.ts's `sink` job with `libStorage` (the uploader before issue 14, the first lever
 * of `npm run bench -- --modes levers`): it reads the tool's stdout as a stream, so the tool must be
 * started with a plain pipe; startToolDirect leaves `child.stdout` null and the lever crashed.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EngineRunResult } from '../../bench/engine-run.ts';
import { awsEnv } from '../support/aws.ts';
import { baseEnv } from '../support/cli.ts';
import { REPO_ROOT } from '../support/layer.ts';
import { startMotoBucket, type TestBucket } from '../support/services.ts';

const execFileAsync = promisify(execFile);

let s3: TestBucket;
const dir = mkdtempSync(join(tmpdir(), 'pgs3b-engine-run-'));

beforeAll(async () => {
  s3 = await startMotoBucket();
});
afterAll(async () => {
  await s3?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('bench/engine-run.ts sink', () => {
  it.each([
    ['lib-storage (the levers\' first)', true],
    ['the engine\'s uploader', false],
  ])('uploads a file through %s', async (_name, libStorage) => {
    const file = join(dir, 'dump');
    const body = Buffer.concat([Buffer.from('PGDMP'), Buffer.alloc(3 * 1024 * 1024, 7)]);
    writeFileSync(file, body);
    const key = `bench/sink-${String(libStorage)}.dump`;
    const job = { mode: 'sink', file, key, partSize: 5 * 1024 * 1024, libStorage };
    const { stdout } = await execFileAsync(process.execPath, ['--import', 'tsx', 'bench/engine-run.ts', JSON.stringify(job)], {
      cwd: REPO_ROOT,
      env: { ...baseEnv(), ...awsEnv(s3.aws.endpoint), BACKUP_BUCKET: s3.bucket },
      timeout: 60_000,
    });
    const result = JSON.parse(stdout.trim().split('\n').pop()!) as EngineRunResult;
    expect(result.bytes).toBe(body.length);
    const stored = await s3.c.s3.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }));
    expect(Buffer.from(await stored.Body!.transformToByteArray()).equals(body)).toBe(true);
  });
});
