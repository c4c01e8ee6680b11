/**
 * Manifests are checked, never trusted: against the real CLI, PostgreSQL and moto, a manifest
 * that points at another database's dump (or outside the prefix) is refused by restore and verify,
 * and an unreadable one (not JSON, unknown formatVersion) makes its backup incomplete — `list`
 * skips and reports it, `prune` does not count it, `restore --latest` takes the one before.
 */
import { CopyObjectCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { manifestKeyFor } from '../../../engine/store/backup-key.ts';
import { listKeys } from '../../support/aws.ts';
import { contentChecksums, createDatabase } from '../../support/fixtures.ts';
import { databases, runCli, startCliServices, type CliRun, type CliServices, listedOf } from '../../support/cli.ts';

let svc: CliServices;
/** Two backups of app (older, newer) and one of app2. */
let appOld: string;
let appNew: string;
let app2: string;
let appContent: Record<string, string>;
let app2Content: Record<string, string>;

const backupKey = (run: CliRun) => (run.result!.backups as { key: string }[])[0]!.key;

async function getText(key: string): Promise<string> {
  const res = await svc.clients.s3.send(new GetObjectCommand({ Bucket: svc.bucket, Key: key }));
  return res.Body!.transformToString();
}
async function putManifestText(dumpKey: string, text: string): Promise<void> {
  await svc.clients.s3.send(new PutObjectCommand({ Bucket: svc.bucket, Key: manifestKeyFor(dumpKey), Body: text }));
}

beforeAll(async () => {
  svc = await startCliServices();
  await createDatabase(svc.pg, 'app2');
  await svc.pg.query('create table secrets_of_app2 (id int primary key, v text); insert into secrets_of_app2 select g, md5(g::text) from generate_series(1, 50) g', [], 'app2');
  for (const db of ['app', 'app', 'app2']) {
    const run = await runCli(['backup', '--database', db], svc.env);
    expect(run.code, run.stderr).toBe(0);
    if (db === 'app2') app2 = backupKey(run);
    else if (appOld === undefined) appOld = backupKey(run);
    else appNew = backupKey(run);
  }
  appContent = await contentChecksums(svc.pg, 'app');
  app2Content = await contentChecksums(svc.pg, 'app2');
});
afterAll(async () => {
  await svc?.stop();
});

describe('a manifest that describes another object is refused', () => {
  it("restore and verify refuse app's backup whose manifest points at app2's dump; --latest falls back to the previous backup", async () => {
    const original = await getText(manifestKeyFor(appNew));
    await putManifestText(appNew, await getText(manifestKeyFor(app2)));
    try {
      const restore = await runCli(['restore', '--key', appNew, '--target-url', svc.pg.urlFor('wrong_copy'), '--create'], svc.env);
      expect(restore.code, restore.stdout).toBe(1);
      expect(restore.stderr).toMatch(/does not describe .*its key is .*app2.*its database is "app2", not "app"; refusing to trust it/);
      expect(restore.events.some((e) => e.event === 'restore.download.progress')).toBe(false);
      expect(await databases(svc.pg)).not.toContain('wrong_copy');

      const verify = await runCli(['verify', '--key', appNew, '--scratch-url', svc.pg.urlFor('postgres')], svc.env);
      expect(verify.code).toBe(1);
      expect(verify.stdout).toMatch(/refusing to trust it/);

      const latest = await runCli(['restore', '--latest', '--database', 'app', '--target-url', svc.pg.urlFor('latest_copy'), '--create'], svc.env);
      expect(latest.code, latest.stderr).toBe(0);
      expect(latest.result).toMatchObject({ key: appOld, sourceDatabase: 'app' });
      expect(latest.stderr).toMatch(new RegExp(`warning: --latest skipped ${appNew.replace(/\./g, '\\.')}: .*refusing to trust it`));
      const restored = await contentChecksums(svc.pg, 'latest_copy');
      expect(restored).toEqual(appContent);
      expect(restored).not.toEqual(app2Content);
    } finally {
      await putManifestText(appNew, original);
    }
  });

  it('restore refuses a manifest whose key points outside the prefix (even with a matching database and checksum)', async () => {
    const original = await getText(manifestKeyFor(appNew));
    const outside = 'elsewhere/app/app-20260101T000000000Z.dump';
    await svc.clients.s3.send(new CopyObjectCommand({ Bucket: svc.bucket, Key: outside, CopySource: `${svc.bucket}/${app2}` }));
    const forged = { ...(JSON.parse(await getText(manifestKeyFor(app2))) as Record<string, unknown>), key: outside, database: 'app' };
    await putManifestText(appNew, JSON.stringify(forged));
    try {
      const restore = await runCli(['restore', '--key', appNew, '--target-url', svc.pg.urlFor('outside_copy'), '--create'], svc.env);
      expect(restore.code).toBe(1);
      expect(restore.stderr).toMatch(/its key is outside the prefix "pg-s3-backup\/"/);
      expect(await databases(svc.pg)).not.toContain('outside_copy');
    } finally {
      await putManifestText(appNew, original);
    }
  });
});

describe('an unreadable manifest makes its backup incomplete, nothing more', () => {
  it.each([
    ['invalid JSON', '{"formatVersion": 1, "database": "app", '],
    ['an unknown formatVersion', null],
  ])('%s: list skips and reports it, --all marks it, --latest falls back, prune does not count it', async (_what, text) => {
    const original = await getText(manifestKeyFor(appNew));
    await putManifestText(appNew, text ?? JSON.stringify({ ...(JSON.parse(original) as object), formatVersion: 99 }));
    try {
      const list = await runCli(['list', '--json'], svc.env);
      expect(list.code, list.stderr).toBe(0);
      const rows = listedOf<{ key: string }>(list);
      expect(rows.map((r) => r.key).sort()).toEqual([appOld, app2].sort());
      expect(list.stderr).toMatch(new RegExp(`warning: skipped ${appNew.replace(/\./g, '\\.')}: manifest .* is unreadable: ${text ? 'not JSON' : 'not a manifest this version understands \\(formatVersion'}`));

      const all = await runCli(['list', '--all', '--database', 'app'], svc.env);
      expect(all.code).toBe(0);
      expect(all.stdout).toMatch(new RegExp(`UNREADABLE\\s+${appNew.replace(/\./g, '\\.')}`));

      const latest = await runCli(['verify', '--latest', '--database', 'app', '--scratch-url', svc.pg.urlFor('postgres')], svc.env);
      expect(latest.code, latest.stdout).toBe(0);
      expect(latest.result).toMatchObject({ key: appOld, status: 'ok' });

      // Keeping one backup: the unreadable newest one is not it, so the older good one stays.
      const prune = await runCli(['prune', '--database', 'app'], { ...svc.env, RETENTION_COUNT: '1' });
      expect(prune.code, prune.stderr).toBe(0);
      expect(await listKeys(svc.clients, svc.bucket, 'pg-s3-backup/app/')).toEqual([appOld, manifestKeyFor(appOld), appNew, manifestKeyFor(appNew)].sort());
    } finally {
      await putManifestText(appNew, original);
    }
  });
});
