/**
 * Manifests that cannot mislead (issue 22 §3, §4, §5), with the real CLI against PostgreSQL and
 * moto:
 * - rewriting an old manifest in place (CopyObject, MetadataDirective REPLACE: a storage-class
 *   change, the runbook's "restore a deleted version") gives it a new LastModified, and must not
 *   change the order of `list`, what `restore --latest` takes, or what `prune` deletes;
 * - a 50 MB garbage manifest is refused before it is read: run, list, restore and prune stay fast
 *   and small (the CLI's peak RSS is measured), and it counts as no backup;
 * - a manifest whose `bytes` disagree with its dump object counts as no backup for retention.
 *
 * The backups are copies of one real backup (`pg-s3-backup backup`) under keys of chosen times, so
 * that each case has its own prefix and the file stays quick.
 */
import { CopyObjectCommand, GetObjectCommand, HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDumpKey, manifestKeyFor } from '../../../engine/store/backup-key.ts';
import { MAX_MANIFEST_BYTES } from '../../../engine/store/s3-store.ts';
import { listKeys } from '../../support/aws.ts';
import { runCli, runCliUnder, startCliServices, type CliRun, type CliServices, listedOf } from '../../support/cli.ts';

const MiB = 1024 * 1024;
const DAY = 86_400_000;

let svc: CliServices;
/** The real backup every case copies: its dump key and manifest. */
let seedKey: string;
let seedManifest: Record<string, unknown>;

beforeAll(async () => {
  svc = await startCliServices({ retentionCount: 7 });
  const run = await runCli(['backup', '--reason', 'seed'], { ...svc.env, BACKUP_PREFIX: 'seed/' });
  expect(run.code, run.stderr).toBe(0);
  seedKey = (run.result!.backups as { key: string }[])[0]!.key;
  const res = await svc.clients.s3.send(new GetObjectCommand({ Bucket: svc.bucket, Key: manifestKeyFor(seedKey) }));
  seedManifest = JSON.parse(await res.Body!.transformToString()) as Record<string, unknown>;
});
afterAll(async () => {
  await svc?.stop();
});

/** A complete backup of `app` under `prefix` whose key says `at`: the seed's dump, a manifest describing it. */
async function backupAt(prefix: string, at: Date, manifest: (m: Record<string, unknown>) => Record<string, unknown> = (m) => m): Promise<string> {
  const key = buildDumpKey(prefix, 'app', at);
  await svc.clients.s3.send(new CopyObjectCommand({ Bucket: svc.bucket, Key: key, CopySource: `${svc.bucket}/${seedKey}` }));
  const body = manifest({ ...seedManifest, key, startedAt: at.toISOString(), finishedAt: new Date(at.getTime() + 5000).toISOString() });
  await svc.clients.s3.send(new PutObjectCommand({ Bucket: svc.bucket, Key: manifestKeyFor(key), Body: JSON.stringify(body, null, 2) }));
  return key;
}

const lastModified = async (key: string) => (await svc.clients.s3.send(new HeadObjectCommand({ Bucket: svc.bucket, Key: key }))).LastModified!.getTime();

/**
 * Rewrites `key` in place as a storage-class change does (CopyObject onto itself, metadata
 * replaced) until its LastModified is after `after`'s: S3 stamps whole seconds, and the point is a
 * manifest that S3 says is the newest. Bounded: a few seconds at most.
 */
async function rewriteInPlace(key: string, after: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  do {
    await svc.clients.s3.send(new CopyObjectCommand({ Bucket: svc.bucket, Key: key, CopySource: `${svc.bucket}/${key}`, MetadataDirective: 'REPLACE', ContentType: 'application/json', Metadata: { rewritten: String(Date.now()) } }));
    if ((await lastModified(key)) > (await lastModified(after))) return;
    await new Promise((r) => setTimeout(r, 250));
  } while (Date.now() < deadline);
  throw new Error(`could not give ${key} a LastModified after ${after}'s`);
}

/** The real CLI, with its peak resident memory (KiB, process.resourceUsage) and wall time. */
async function runCliMeasured(args: readonly string[], env: Record<string, string>): Promise<CliRun & { maxRssKiB: number; ms: number }> {
  const probe = `data:text/javascript,${encodeURIComponent("import { writeSync } from 'node:fs'; process.on('exit', () => writeSync(2, `\\nmaxrss-kib=${process.resourceUsage().maxRSS}\\n`));")}`;
  const t0 = Date.now();
  const run = await runCliUnder([], args, env, ['--import', probe]);
  const rss = /maxrss-kib=(\d+)/.exec(run.stderr);
  return { ...run, maxRssKiB: rss ? Number(rss[1]) : Number.NaN, ms: Date.now() - t0 };
}

/**
 * Fast and small: a CLI run peaks at ~125-130 MiB here (Node, the AWS SDK) in 7-8 s (up to 20 s) on a loaded
 * 2-core machine; reading a 50 MB manifest whole took ~2.9 GB and 50-70 s (issue 22 §4).
 */
function expectSmallAndFast(name: string, r: { maxRssKiB: number; ms: number }): void {
  expect(r.maxRssKiB, `${name}: peak RSS ${r.maxRssKiB} KiB`).toBeLessThan(256 * 1024);
  expect(r.ms, `${name}: ${r.ms} ms`).toBeLessThan(45_000);
}

const listed = (run: CliRun) => (listedOf<{ key: string }>(run)).map((r) => r.key);

describe('ordering is defined by the backup, not by a copy of its manifest', () => {
  it('an old manifest rewritten in place: list order, restore --latest and prune unchanged', async () => {
    const prefix = 'copied/';
    const env = { ...svc.env, BACKUP_PREFIX: prefix };
    const now = Date.now();
    const [oldest, middle, newest] = [await backupAt(prefix, new Date(now - 3 * DAY)), await backupAt(prefix, new Date(now - 2 * DAY)), await backupAt(prefix, new Date(now - DAY))];
    await rewriteInPlace(manifestKeyFor(oldest), manifestKeyFor(newest));

    const list = await runCli(['list', '--json'], env);
    expect(list.code, list.stderr).toBe(0);
    expect(listed(list)).toEqual([newest, middle, oldest]);

    const restored = await runCli(['restore', '--latest', '--database', 'app', '--target-url', svc.pg.urlFor('latest_after_copy'), '--create'], env);
    expect(restored.code, restored.stderr).toBe(0);
    expect(restored.result).toMatchObject({ status: 'restored', key: newest });

    const prune = await runCli(['prune'], { ...env, RETENTION_COUNT: '2' });
    expect(prune.code, prune.stderr).toBe(0);
    expect(await listKeys(svc.clients, svc.bucket, prefix)).toEqual([middle, manifestKeyFor(middle), newest, manifestKeyFor(newest)].sort());
  });
});

describe('a manifest is read within a bound', () => {
  it(`a 50 MB garbage manifest is refused unread (bound ${MAX_MANIFEST_BYTES / MiB} MiB): run, list, restore --latest and prune stay fast and small`, async () => {
    const prefix = 'huge/';
    const env = { ...svc.env, BACKUP_PREFIX: prefix };
    const now = Date.now();
    const good = await backupAt(prefix, new Date(now - 2 * DAY));
    const huge = await backupAt(prefix, new Date(now - DAY));
    // Not JSON, and far over the bound: what a damaged or hostile object could be.
    await svc.clients.s3.send(new PutObjectCommand({ Bucket: svc.bucket, Key: manifestKeyFor(huge), Body: Buffer.alloc(50 * MiB, '{"formatVersion": 2, "garbage": [') }));

    const list = await runCliMeasured(['list', '--json'], env);
    expectSmallAndFast('list', list);
    expect(list.code, list.stderr).toBe(0);
    expect(listed(list)).toEqual([good]);
    expect(list.stderr).toContain(`skipped ${huge}: manifest s3://${svc.bucket}/${manifestKeyFor(huge)} is unreadable: it has ${50 * MiB} bytes`);

    const restored = await runCliMeasured(['restore', '--latest', '--database', 'app', '--target-url', svc.pg.urlFor('latest_after_huge'), '--create'], env);
    expectSmallAndFast('restore', restored);
    expect(restored.code, restored.stderr).toBe(0);
    expect(restored.result).toMatchObject({ status: 'restored', key: good });
    expect(restored.stderr).toContain(`--latest skipped ${huge}`);

    const prune = await runCliMeasured(['prune'], { ...env, RETENTION_COUNT: '1' });
    expectSmallAndFast('prune', prune);
    expect(prune.code, prune.stderr).toBe(0);
    // Not counted, never deleted while newer than the backup kept, and the good one stays.
    expect(prune.result).toMatchObject({ databases: [expect.objectContaining({ database: 'app', kept: [good], unreadable: [huge], deleted: [] })] });

    const run = await runCliMeasured(['backup', '--reason', 'beside a huge manifest'], { ...env, RETENTION_COUNT: '1' });
    expectSmallAndFast('run', run);
    expect(run.code, run.stderr).toBe(0);
    const fresh = (run.result!.backups as { key: string }[])[0]!.key;
    // The run's own backup is the one RETENTION_COUNT=1 keeps: both older ones go, the huge one
    // as an unreadable backup older than the oldest kept (its manifest never read whole).
    expect(run.result!.pruned).toEqual(expect.arrayContaining([good, huge, manifestKeyFor(huge)]));
    expect(await listKeys(svc.clients, svc.bucket, prefix)).toEqual([fresh, manifestKeyFor(fresh)]);
  });
});

describe('a manifest must describe its object', () => {
  it('bytes that disagree with the dump object: not counted by retention, so prune keeps the good backups', async () => {
    const prefix = 'bytes/';
    const env = { ...svc.env, BACKUP_PREFIX: prefix };
    const now = Date.now();
    const oldest = await backupAt(prefix, new Date(now - 3 * DAY));
    const middle = await backupAt(prefix, new Date(now - 2 * DAY));
    const wrong = await backupAt(prefix, new Date(now - DAY), (m) => ({ ...m, bytes: (m.bytes as number) + 1 }));

    const list = await runCli(['list', '--json'], env);
    expect(list.code, list.stderr).toBe(0);
    expect(listed(list)).toEqual([middle, oldest]);
    expect(list.stderr).toMatch(new RegExp(`skipped ${wrong.replace(/[.]/g, '\\.')}: .*it says \\d+ bytes, the dump object has \\d+`));

    const prune = await runCli(['prune'], { ...env, RETENTION_COUNT: '2' });
    expect(prune.code, prune.stderr).toBe(0);
    expect(prune.result).toMatchObject({ databases: [expect.objectContaining({ database: 'app', kept: [middle, oldest], unreadable: [wrong], deleted: [] })] });
    expect(await listKeys(svc.clients, svc.bucket, prefix)).toHaveLength(6);
  });
});
