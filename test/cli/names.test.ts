/**
 * The CLI's conventional names (issue 25 item 3), end to end against PostgreSQL and moto:
 * `backup` (with `run` as its alias), a `--dry-run` that writes nothing, `--no-prune`, the global
 * `--bucket/--prefix/--region/--profile` options over the environment, and `alert` kept out of
 * the command list.
 */
import { ListObjectVersionsCommand, PutBucketVersioningCommand } from '@aws-sdk/client-s3';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBucket, listKeys, listMultipartUploads } from '../support/aws.ts';
import { NASTY_PASSWORD } from '../support/postgres.ts';
import { baseEnv, databases, expectNoSecret, runCli, startCliServices, type CliServices, listedOf } from '../support/cli.ts';

let svc: CliServices;

beforeAll(async () => {
  svc = await startCliServices({ retentionCount: 2 });
  // Versioned, as the stack creates it: an object written and deleted again still shows as a
  // version or a delete marker, so "nothing written" is proven, not just "nothing left".
  await svc.clients.s3.send(new PutBucketVersioningCommand({ Bucket: svc.bucket, VersioningConfiguration: { Status: 'Enabled' } }));
});
afterAll(async () => {
  await svc?.stop();
});

/** Every version and delete marker in the bucket: what any write, even undone, leaves behind. */
async function bucketHistory(bucket: string): Promise<string[]> {
  const res = await svc.clients.s3.send(new ListObjectVersionsCommand({ Bucket: bucket }));
  return [
    ...(res.Versions ?? []).map((v) => `${v.Key} ${v.VersionId} ${v.ETag}`),
    ...(res.DeleteMarkers ?? []).map((m) => `${m.Key} ${m.VersionId} delete-marker`),
  ].sort();
}

type Listed = { key: string; database: string }[];
const listJson = async (args: readonly string[], env: Record<string, string>) => {
  const run = await runCli(['list', '--json', ...args], env);
  expect(run.code, run.stderr).toBe(0);
  return listedOf<Listed[number]>(run);
};

describe('names', () => {
  it('the command list shows `backup|run` and leaves the `alert` plumbing out; `alert` still runs', async () => {
    const help = await runCli(['--help'], baseEnv());
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^ {2}backup\|run \[options\]/m);
    expect(help.stdout).not.toMatch(/^ {2}alert\b/m);
    for (const flag of ['--bucket <name>', '--prefix <prefix>', '--region <region>', '--profile <name>']) expect(help.stdout).toContain(flag);
    for (const name of ['backup', 'run']) {
      const own = await runCli([name, '--help'], baseEnv());
      expect(own.code).toBe(0);
      expect(own.stdout).toContain('Usage: pg-s3-backup backup|run [options]');
      expect(own.stdout).toContain('--no-prune');
    }
    // Still callable by scripts/backup.sh: with nowhere to report, it says so and exits 1.
    const alert = await runCli(['alert', '--stage', 'lock', '--message', 'held'], baseEnv());
    expect(alert.code).toBe(1);
    expect(alert.result).toMatchObject({ alerted: null, pinged: null });
  });

  it('backup --dry-run writes nothing (no object, no version, no upload) and says what the run would write and prune; `run --dry-run` is the same', async () => {
    // Two backups (and globals files), as RETENTION_COUNT (2) keeps: tonight's third would make
    // pruning delete the oldest of each.
    const env = { ...svc.env, BACKUP_GLOBALS: 'true' };
    for (const name of ['backup', 'run']) expect((await runCli([name, '--reason', 'seed'], env)).code).toBe(0);
    const seeded = await listJson([], env);
    expect(seeded).toHaveLength(2);
    const oldestGlobals = (await listKeys(svc.clients, svc.bucket, 'pg-s3-backup/_globals/'))[0]!;
    const before = await bucketHistory(svc.bucket);

    for (const name of ['backup', 'run']) {
      const dry = await runCli([name, '--dry-run'], env);
      expect(dry.code, dry.stderr).toBe(0);
      expect(dry.result).toMatchObject({
        status: 'ready', dryRun: true, prune: true, pgDumpVersion: expect.stringMatching(/^18\./), failures: [],
        backups: [{ database: 'app', key: expect.stringMatching(/^pg-s3-backup\/app\/.*\.dump$/), serverVersion: expect.stringMatching(/^18\./) }],
      });
      const planned = (dry.result!.backups as { wouldPrune: string[] }[])[0]!;
      expect([...planned.wouldPrune].sort()).toEqual([seeded[1]!.key, `${seeded[1]!.key}.json`]);
      expect(dry.result!.globals).toEqual({ key: expect.stringMatching(/^pg-s3-backup\/_globals\//), wouldPrune: [oldestGlobals] });
      expect(dry.events.map((e) => e.event)).not.toContain('backup.dump.started');
      expectNoSecret(dry, NASTY_PASSWORD);
      expect(await bucketHistory(svc.bucket), `${name} --dry-run wrote to the bucket`).toEqual(before);
      expect(await listMultipartUploads(svc.clients, svc.bucket)).toEqual([]);
    }

    // What it said is what the real run then does.
    const real = await runCli(['backup'], env);
    expect(real.code, real.stderr).toBe(0);
    expect([...(real.result!.pruned as string[])].sort()).toEqual([seeded[1]!.key, `${seeded[1]!.key}.json`, oldestGlobals].sort());
  });

  it('backup --dry-run exits 1 and names the database that would fail, still writing nothing', async () => {
    const before = await bucketHistory(svc.bucket);
    const dry = await runCli(['backup', '--dry-run', '--database', 'no_such_database'], svc.env);
    expect(dry.code).toBe(1);
    expect(dry.result).toMatchObject({ status: 'failed', failures: [{ database: 'no_such_database', stage: 'connect' }] });
    expectNoSecret(dry, NASTY_PASSWORD);
    expect(await bucketHistory(svc.bucket)).toEqual(before);
  });

  it('backup --no-prune takes the backup and deletes nothing', async () => {
    const before = await listJson([], svc.env);
    expect(before).toHaveLength(2);
    const run = await runCli(['backup', '--no-prune'], svc.env);
    expect(run.code, run.stderr).toBe(0);
    expect(run.result).toMatchObject({ status: 'succeeded', pruned: [] });
    const after = await listJson([], svc.env);
    expect(after.map((b) => b.key)).toEqual([(run.result!.backups as { key: string }[])[0]!.key, ...before.map((b) => b.key)]);
  });
});

describe('global options', () => {
  it('--bucket and --prefix win over BACKUP_BUCKET and BACKUP_PREFIX: back up to, list and restore from a second bucket', async () => {
    const replica = await createBucket(svc.clients);
    const ours = new Set((await listJson([], svc.env)).map((b) => b.key));
    const taken = await runCli(['--bucket', replica, 'backup', '--reason', 'replica'], svc.env);
    expect(taken.code, taken.stderr).toBe(0);
    const key = (taken.result!.backups as { key: string }[])[0]!.key;
    expect(await listKeys(svc.clients, replica)).toEqual([key, `${key}.json`]);
    expect((await listJson([], svc.env)).map((b) => b.key)).not.toContain(key);

    // Before or after the command, `--opt value` or `--opt=value`.
    expect((await listJson([`--bucket=${replica}`], svc.env)).map((b) => b.key)).toEqual([key]);
    const restored = await runCli(['restore', '--bucket', replica, '--latest', '--target-url', svc.pg.urlFor('app_from_replica'), '--create'], svc.env);
    expect(restored.code, restored.stderr).toBe(0);
    expect(restored.result).toMatchObject({ key });
    expect(await databases(svc.pg)).toContain('app_from_replica');

    // --prefix: the same layout under another prefix, in the env's bucket.
    const other = await runCli(['backup', '--prefix', 'other/'], svc.env);
    expect(other.code, other.stderr).toBe(0);
    const otherKey = (other.result!.backups as { key: string }[])[0]!.key;
    expect(otherKey).toMatch(/^other\/app\//);
    expect((await listJson(['--prefix', 'other/'], svc.env)).map((b) => b.key)).toEqual([otherKey]);
    expect(new Set((await listJson([], svc.env)).map((b) => b.key))).toEqual(ours);
  });

  it('--region and --profile reach the AWS SDK as AWS_REGION and AWS_PROFILE would; no credential is printed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgs3b-profile-'));
    try {
      const secretKey = 'Pr0f1leS3cretKeyNeverShown';
      writeFileSync(join(dir, 'config'), '[profile replica]\nregion = us-east-1\n', { mode: 0o600 });
      writeFileSync(join(dir, 'credentials'), `[replica]\naws_access_key_id = AKIAREPLICAEXAMPLE\naws_secret_access_key = ${secretKey}\n`, { mode: 0o600 });
      // No region, no credentials in the environment: only the options can supply them.
      const { AWS_REGION: _r, AWS_ACCESS_KEY_ID: _a, AWS_SECRET_ACCESS_KEY: _s, ...rest } = svc.env;
      const env = { ...rest, AWS_CONFIG_FILE: join(dir, 'config'), AWS_SHARED_CREDENTIALS_FILE: join(dir, 'credentials'), AWS_EC2_METADATA_DISABLED: 'true' };
      const expected = (await listJson([], svc.env)).map((b) => b.key);

      const bare = await runCli(['list', '--json'], env);
      expect(bare.code).toBe(1);
      const regionOnly = await runCli(['list', '--json', '--region', 'us-east-1'], env);
      expect(regionOnly.code, 'a region, but no credentials yet').toBe(1);
      expect(regionOnly.stderr).toMatch(/credential/i);
      expect(bare.stderr).not.toBe(regionOnly.stderr);

      const profiled = await runCli(['--profile', 'replica', 'list', '--json'], env);
      expect(profiled.code, profiled.stderr).toBe(0);
      expect(listedOf<Listed[number]>(profiled).map((b) => b.key)).toEqual(expected);
      for (const run of [bare, regionOnly, profiled]) expectNoSecret(run, secretKey);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
