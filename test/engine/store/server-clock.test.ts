/**
 * Retention and `--latest` follow S3's clock: a backup taken on a host whose clock ran 400 days
 * ahead (the real CLI under faketime) must neither make a later, correct run prune the backup it
 * just wrote, nor make `restore --latest` restore it instead of the fresh one; `list` flags it,
 * and a host whose clock is ahead cannot age a young orphan into a deletable one.
 */
import { DeleteObjectsCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDumpKey } from '../../../engine/store/backup-key.ts';
import { listKeys, putText } from '../../support/aws.ts';
import { runCli, runCliAt, startCliServices, type CliRun, type CliServices, listedOf } from '../../support/cli.ts';

let svc: CliServices;

beforeAll(async () => {
  svc = await startCliServices({ retentionCount: 2 });
});
afterAll(async () => {
  await svc?.stop();
});

const backupKey = (run: CliRun) => (run.result!.backups as { key: string }[])[0]!.key;

describe("S3's clock, not the host's", () => {
  it('a correct run never prunes the backup it just wrote, after a backup from a clock 400 days ahead', async () => {
    const skewedRun = await runCliAt('+400d', ['backup', '--reason', 'clock ahead'], svc.env);
    expect(skewedRun.code, skewedRun.stderr + skewedRun.stdout).toBe(0);
    const skewed = backupKey(skewedRun);
    expect(skewed).toMatch(new RegExp(`app-${new Date(Date.now() + 399 * 86_400_000).getUTCFullYear()}`));

    // Keeping one backup, a correct run keeps the one it wrote (S3 stored it last).
    const run = await runCli(['backup', '--reason', 'right clock'], { ...svc.env, RETENTION_COUNT: '1' });
    expect(run.code, run.stderr).toBe(0);
    expect(run.result).toMatchObject({ status: 'succeeded' });
    const fresh = backupKey(run);
    expect(run.result!.pruned as string[]).not.toContain(fresh);
    expect(run.result!.pruned).toEqual([skewed, `${skewed}.json`]);
    expect(await listKeys(svc.clients, svc.bucket, 'pg-s3-backup/app/')).toEqual([fresh, `${fresh}.json`]);
  });

  it('list flags a backup from a clock 400 days ahead and orders by S3; restore --latest takes the fresh backup', async () => {
    // Without the backup the test before kept: S3 stamps to the second, so a backup stored in the
    // same second as that one could rank either way against it, and retention (2) keep either.
    const before = await listKeys(svc.clients, svc.bucket, 'pg-s3-backup/app/');
    if (before.length > 0) await svc.clients.s3.send(new DeleteObjectsCommand({ Bucket: svc.bucket, Delete: { Objects: before.map((Key) => ({ Key })) } }));
    const skewedRun = await runCliAt('+400d', ['backup', '--reason', 'clock ahead'], svc.env);
    expect(skewedRun.code, skewedRun.stderr + skewedRun.stdout).toBe(0);
    const skewed = backupKey(skewedRun);
    const run = await runCli(['backup', '--reason', 'right clock'], svc.env);
    expect(run.code, run.stderr).toBe(0);
    const fresh = backupKey(run);

    // list: newest first by S3's clock, the skewed backup flagged with how far its host was off.
    const listed = await runCli(['list', '--json'], svc.env);
    expect(listed.code, listed.stderr).toBe(0);
    const rows = listedOf<{ key: string; clockSkewSeconds: number | null; storedAt: string }>(listed);
    expect(rows.map((r) => r.key)).toEqual([fresh, skewed]);
    expect(rows[0]!.clockSkewSeconds).toBeNull();
    expect(rows[1]!.clockSkewSeconds).toBeGreaterThan(399 * 86_400);
    expect(rows[1]!.clockSkewSeconds).toBeLessThan(401 * 86_400);
    const table = await runCli(['list'], svc.env);
    expect(table.stdout).toMatch(/NOTE/);
    expect(table.stdout).toMatch(new RegExp(`${skewed.replace(/[.]/g, '\\.')}\\s+CLOCK SKEW \\+400d`));

    // --latest: the backup S3 stored last, not the one whose key claims the latest time.
    const restored = await runCli(['restore', '--latest', '--database', 'app', '--target-url', svc.pg.urlFor('latest_copy'), '--create'], svc.env);
    expect(restored.code, restored.stderr).toBe(0);
    expect(restored.result).toMatchObject({ status: 'restored', key: fresh });
  });

  it('a prune on a host whose clock is 400 days ahead leaves a young orphan (a run still finishing) alone', async () => {
    const orphan = buildDumpKey('pg-s3-backup/', 'app', new Date());
    await putText(svc.clients, svc.bucket, orphan, 'PGDMP still uploading');
    const prune = await runCliAt('+400d', ['prune'], svc.env);
    expect(prune.code, prune.stderr + prune.stdout).toBe(0);
    expect(JSON.stringify(prune.result)).not.toContain(orphan);
    expect(await listKeys(svc.clients, svc.bucket, orphan)).toEqual([orphan]);
  });
});
