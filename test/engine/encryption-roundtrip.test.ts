/**
 * Client-side encryption with age (issue 16 §2), end to end against PostgreSQL 18, moto and the
 * real layers: `pg-s3-backup backup` with ENCRYPT_RECIPIENTS stores an age file (and the globals as
 * `.sql.age`) with a version-3 manifest; `restore`, `verify --scratch-url`, `verify --local` and
 * the drill decrypt with an identity from a file or a Secrets Manager secret and give back the
 * whole database; a wrong identity, a missing one and a truncated object fail with a clear error
 * before the target is touched; an unencrypted backup still restores without an identity; no
 * identity ever shows in any output.
 */
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { Decrypter, generateX25519Identity, identityToRecipient } from 'age-encryption';
import { createHash } from 'node:crypto';
import { chmodSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recipientFingerprint } from '../../engine/encryption.ts';
import { noMetrics, type Log } from '../../lambda/powertools.ts';
import type { Manifest } from '../../engine/store/manifest.ts';
import { createDrillHandler, DrillFailedError } from '../../lambda/drill-handler.ts';
import { awsEnv, createSecret, listKeys, listMultipartUploads } from '../support/aws.ts';
import { createDatabase, writeFakePgDump } from '../support/fixtures.ts';
import { ensureLayer, ensureServerLayer, serverLayerRoot } from '../support/layer.ts';
import { compareDatabases } from '../support/whole-database.ts';
import { backUp, databases, expectNoSecret, runCli, startCliServices, type CliRun, type CliServices, listedOf, resultOf } from '../support/cli.ts';

let svc: CliServices;
let dir: string;
let identity: string;
let recipient: string;
let second: string;
let wrongIdentity: string;
let identityFile: string;
let wrongFile: string;
let secretArn: string;
let encEnv: Record<string, string>;
let key: string;
let manifest: Manifest;
let cipher: Buffer;

beforeAll(async () => {
  await ensureServerLayer('x86_64');
  svc = await startCliServices();
  identity = await generateX25519Identity();
  recipient = await identityToRecipient(identity);
  // A second recipient (say, the break-glass key kept offline): either identity opens the backup.
  second = await identityToRecipient(await generateX25519Identity());
  wrongIdentity = await generateX25519Identity();
  dir = mkdtempSync(join(tmpdir(), 'pgs3b-age-'));
  // As root the throwaway server (verify --local) runs as nobody, which must reach its folder.
  chmodSync(dir, 0o711);
  identityFile = join(dir, 'backup-key.txt');
  writeFileSync(identityFile, `# created: 2026-12-02T04:00:00Z\n# public key: ${recipient}\n${identity}\n`, { mode: 0o600 });
  wrongFile = join(dir, 'other-key.txt');
  writeFileSync(wrongFile, `${wrongIdentity}\n`, { mode: 0o600 });
  secretArn = await createSecret(svc.clients, `# public key: ${recipient}\n${identity}\n`, 'age-identity');
  encEnv = { ...svc.env, ENCRYPT_RECIPIENTS: `${recipient},${second}`, BACKUP_GLOBALS: 'true' };

  ({ key, manifest } = await backUp(svc.clients, encEnv, 'encryption test'));
  cipher = await getBytes(key);
}, 900_000); // the first run builds the pg-server layer (up to 6 minutes cold, on a busy machine)

afterAll(async () => {
  await svc?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function getBytes(k: string): Promise<Buffer> {
  const res = await svc.clients.s3.send(new GetObjectCommand({ Bucket: svc.bucket, Key: k }));
  return Buffer.from(await res.Body!.transformToByteArray());
}
async function decrypt(body: Buffer, id = identity): Promise<Buffer> {
  const d = new Decrypter();
  d.addIdentity(id);
  return Buffer.from(await d.decrypt(body));
}
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** No identity (nor a recognisable part of one) in anything a run printed. */
function expectNoIdentity(run: CliRun): void {
  for (const id of [identity, wrongIdentity]) {
    expectNoSecret(run, id);
    expectNoSecret(run, id.slice(16, 48));
  }
}

/** A database with rows that a refused restore must leave exactly as it was. */
async function victim(name: string): Promise<() => Promise<string>> {
  await createDatabase(svc.pg, name);
  await svc.pg.query('create table keep (id int primary key, v text); insert into keep select g, md5(g::text) from generate_series(1, 100) g', [], name);
  return async () => (await svc.pg.query<{ s: string }>("select count(*) || ':' || md5(string_agg(v, ',' order by id)) as s from keep", [], name))[0]!.s;
}

describe('backup', () => {
  it('stores an age file to every recipient, with a version-3 manifest (fingerprints, ciphertext and plaintext digests); the globals as .sql.age', async () => {
    expect(cipher.subarray(0, 22).toString()).toBe('age-encryption.org/v1\n');
    expect(cipher.includes(Buffer.from('PGDMP'))).toBe(false);
    expect(manifest).toMatchObject({
      formatVersion: 3,
      key,
      bytes: cipher.length,
      sha256: sha(cipher),
      encryption: { format: 'age', recipients: [recipientFingerprint(recipient), recipientFingerprint(second)] },
    });
    const plain = await decrypt(cipher);
    expect(plain.subarray(0, 5).toString()).toBe('PGDMP');
    expect(manifest.plaintextBytes).toBe(plain.length);
    expect(manifest.plaintextSha256).toBe(sha(plain));

    const listed = await svc.clients.s3.send(new ListObjectsV2Command({ Bucket: svc.bucket, Prefix: 'pg-s3-backup/_globals/' }));
    const globals = (listed.Contents ?? []).map((o) => o.Key!);
    expect(globals).toHaveLength(1);
    expect(globals[0]).toMatch(/globals-\d{8}T\d{9}Z\.sql\.age$/);
    expect((await decrypt(await getBytes(globals[0]!))).toString()).toMatch(/PostgreSQL database cluster dump/);
  });

  it('list says which backups are encrypted, and to which recipients', async () => {
    const json = await runCli(['list', '--database', 'app', '--json'], svc.env);
    expect(json.code, json.stderr).toBe(0);
    const rows = listedOf<{ key: string; encryption: unknown }>(json);
    expect(rows.find((r) => r.key === key)?.encryption).toEqual(manifest.encryption);
    const text = await runCli(['list', '--database', 'app'], svc.env);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain(`ENCRYPTED (age, recipients ${recipientFingerprint(recipient)}, ${recipientFingerprint(second)})`);
  });

  it('fails closed when pg_dump fails after 20 MiB: age\'s final chunk is never written, the upload is aborted, nothing lands', async () => {
    // Three 8 MiB parts' worth: parts were uploaded before the failure.
    const pgDump = writeFakePgDump(dir, "printf PGDMP; head -c 20971520 /dev/urandom; echo 'pg_dump: error: connection lost' >&2; exit 1");
    const run = await runCli(['backup', '--reason', 'fail closed'], { ...encEnv, BACKUP_PREFIX: 'fail-closed/', PG_DUMP_BIN: pgDump, BACKUP_GLOBALS: 'false' });
    expect(run.code).toBe(1);
    expect(run.result).toMatchObject({ status: 'failed', failures: [{ database: 'app', stage: 'dump', message: expect.stringMatching(/pg_dump failed: exit code 1[\s\S]*connection lost/) }] });
    expect(await listKeys(svc.clients, svc.bucket, 'fail-closed/')).toEqual([]);
    expect(await listMultipartUploads(svc.clients, svc.bucket)).toEqual([]);
    expectNoIdentity(run);
  });
});

describe('restore', () => {
  it('restores the encrypted backup with --identity-file into a new database: the whole database comes back; the identity is never shown', async () => {
    const run = await runCli(['restore', '--key', key, '--identity-file', identityFile, '--target-url', svc.pg.urlFor('enc_copy'), '--create'], svc.env);
    expect(run.code, run.stderr).toBe(0);
    expect(run.result).toMatchObject({ status: 'restored', key, sha256: manifest.sha256, decrypted: { bytes: manifest.plaintextBytes, sha256: manifest.plaintextSha256 } });
    const order = run.events.map((e) => e.event).filter((e) => ['restore.identity-matched', 'restore.sha256-verified', 'restore.decrypted', 'restore.progress'].includes(e as string));
    expect(order.slice(0, 4)).toEqual(['restore.identity-matched', 'restore.sha256-verified', 'restore.decrypted', 'restore.progress']);
    expect(await compareDatabases({ pg: svc.pg, database: 'app' }, { pg: svc.pg, database: 'enc_copy' })).toEqual([]);
    expectNoIdentity(run);
    // Mode 0600: nothing to say about it.
    expect(run.stderr).not.toMatch(/has mode/);
  });

  it('an identity file readable by others (0644) is used, with a warning naming its mode and the fix, as ssh does', async () => {
    const open = join(dir, 'readable-key.txt');
    writeFileSync(open, `${identity}\n`);
    // chmod after writing: the mode asked of writeFileSync goes through the umask.
    chmodSync(open, 0o644);
    try {
      const run = await runCli(['restore', '--key', key, '--identity-file', open, '--target-url', svc.pg.urlFor('enc_copy_0644'), '--create'], svc.env);
      expect(run.code, run.stderr).toBe(0);
      expect(run.result).toMatchObject({ status: 'restored', key });
      expect(run.stderr).toContain(`warning: the age identity file ${open} has mode 0644: every user of this machine may read the key that decrypts every backup. It is used anyway; make it yours alone: chmod 600 ${open}`);
      expectNoIdentity(run);
    } finally {
      rmSync(open, { force: true });
    }
  });

  it('refuses a wrong identity at the age header, before the target is touched, naming the recipients\' fingerprints', async () => {
    const state = await victim('victim_wrong');
    const before = await state();
    for (const args of [['--create', '--target-url', svc.pg.urlFor('never_wrong')], ['--clean', '--target-url', svc.pg.urlFor('victim_wrong')]]) {
      const run = await runCli(['restore', '--key', key, '--identity-file', wrongFile, ...args], svc.env);
      expect(run.code).toBe(1);
      expect(run.events.find((e) => e.event === 'error')).toMatchObject({ error: 'IdentityError', stage: 'decrypt' });
      expect(run.stderr).toMatch(new RegExp(`does not open backup .*fingerprints ${recipientFingerprint(recipient)}, ${recipientFingerprint(second)}.*nothing was restored`));
      expect(run.events.some((e) => e.event === 'restore.progress' || e.event === 'restore.sha256-verified')).toBe(false);
      expectNoIdentity(run);
    }
    expect(await databases(svc.pg)).not.toContain('never_wrong');
    expect(await state()).toBe(before);
  });

  it('refuses an encrypted backup without an identity before any download, saying how to give one', async () => {
    const state = await victim('victim_missing');
    const before = await state();
    const run = await runCli(['restore', '--key', key, '--clean', '--target-url', svc.pg.urlFor('victim_missing')], svc.env);
    expect(run.code).toBe(1);
    expect(run.events.find((e) => e.event === 'error')).toMatchObject({ error: 'IdentityError' });
    expect(run.stderr).toMatch(/is encrypted with age .* no identity was given; nothing was restored/);
    expect(run.stderr).toMatch(/--identity-file .*--identity-secret .*AGE_IDENTITY_FILE/);
    expect(run.events.some((e) => e.event === 'restore.download.progress')).toBe(false);
    expect(await state()).toBe(before);
  });

  it('fails closed on a truncated object (the manifest unchanged): nothing restored, target untouched, nothing left in the temporary folder', async () => {
    await svc.clients.s3.send(new PutObjectCommand({ Bucket: svc.bucket, Key: key, Body: cipher.subarray(0, cipher.length - 1000) }));
    try {
      const state = await victim('victim_truncated');
      const before = await state();
      const temp = mkdtempSync(join(dir, 'tmp-'));
      const run = await runCli(['restore', '--key', key, '--identity-file', identityFile, '--clean', '--temp-dir', temp, '--target-url', svc.pg.urlFor('victim_truncated')], svc.env);
      expect(run.code).toBe(1);
      expect(run.events.find((e) => e.event === 'error')).toMatchObject({ error: 'IntegrityError' });
      expect(run.stderr).toMatch(/does not match its manifest: \d+ bytes downloaded, manifest says \d+ \(the age file is truncated/);
      expect(run.events.some((e) => e.event === 'restore.progress')).toBe(false);
      expect(await state()).toBe(before);
      expect(readdirSync(temp)).toEqual([]);

      const verify = await runCli(['verify', '--key', key, '--identity-file', identityFile, '--scratch-url', svc.pg.urlFor('postgres'), '--json'], svc.env);
      expect(verify.code).toBe(1);
      expect(resultOf(verify)).toMatchObject({ status: 'failed', sha256Verified: false, encrypted: true });
    } finally {
      await svc.clients.s3.send(new PutObjectCommand({ Bucket: svc.bucket, Key: key, Body: cipher }));
    }
  });
});

describe('verify and the drill', () => {
  it('verify --scratch-url with AGE_IDENTITY_SECRET_ARN, and verify --local with --identity-file, restore every table', async () => {
    const scratch = await runCli(['verify', '--key', key, '--scratch-url', svc.pg.urlFor('postgres'), '--json'], { ...svc.env, AGE_IDENTITY_SECRET_ARN: secretArn });
    expect(scratch.code, scratch.stderr).toBe(0);
    const report = resultOf<{ status: string; encrypted: boolean; sha256Verified: boolean; tables: unknown[]; problems: unknown[] }>(scratch);
    expect(report).toMatchObject({ status: 'ok', encrypted: true, sha256Verified: true, problems: [] });
    expect(report.tables).toHaveLength(4);
    expectNoIdentity(scratch);

    const local = await runCli(['verify', '--key', key, '--identity-file', identityFile, '--local', '--server-layer', serverLayerRoot('x86_64'), '--temp-dir', dir, '--json'], svc.env);
    expect(local.code, local.stderr).toBe(0);
    expect(resultOf(local)).toMatchObject({ status: 'ok', encrypted: true, sha256Verified: true });
    expectNoIdentity(local);
  });

  it('the drill decrypts with AGE_IDENTITY_SECRET_ARN; without an identity it fails before any restore, saying why; no identity in its logs', async () => {
    const lines: string[] = [];
    const log: Log = {
      debug: (m, a) => lines.push(JSON.stringify([m, a])),
      info: (m, a) => lines.push(JSON.stringify([m, a])),
      warn: (m, a) => lines.push(JSON.stringify([m, a])),
      error: (m, a) => lines.push(JSON.stringify([m, a])),
    };
    const drillEnv = { ...awsEnv(svc.aws.endpoint), BACKUP_BUCKET: svc.bucket, DATABASES: 'app', PG_SERVER_LAYER: serverLayerRoot('x86_64'), PG_DUMP_BIN: join(await ensureLayer(), 'bin', 'pg_dump') };
    // The SDK's default clients (createDeps) read the endpoint and credentials from the process.
    Object.assign(process.env, awsEnv(svc.aws.endpoint));
    const ok = await createDrillHandler({ ...drillEnv, AGE_IDENTITY_SECRET_ARN: secretArn }, { log, metrics: noMetrics }, { tempDir: dir })({}, { awsRequestId: 'req-age' });
    expect(ok).toEqual({ status: 'ok', databases: [{ database: 'app', key, status: 'ok', failingTables: [] }], notReached: [] });

    const err = await createDrillHandler(drillEnv, { log, metrics: noMetrics }, { tempDir: dir })({}, { awsRequestId: 'req-age-2' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DrillFailedError);
    expect((err as Error).message).toMatch(/is encrypted with age .*no identity was given/);
    const all = lines.join('\n');
    expect(all).not.toContain(identity);
    expect(all).not.toContain(identity.slice(16, 48));
  });
});

describe('without encryption', () => {
  it('a backup taken without ENCRYPT_RECIPIENTS is a version-2 manifest and restores without an identity (none is read)', async () => {
    const { key: plainKey, manifest: plainManifest } = await backUp(svc.clients, svc.env, 'plain');
    expect(plainManifest.formatVersion).toBe(2);
    expect(plainManifest.encryption).toBeUndefined();
    expect((await getBytes(plainKey)).subarray(0, 5).toString()).toBe('PGDMP');
    // An identity source that cannot be read: it must not be needed.
    const restored = await runCli(['restore', '--key', plainKey, '--target-url', svc.pg.urlFor('plain_copy'), '--create'], { ...svc.env, AGE_IDENTITY_FILE: join(dir, 'absent.txt') });
    expect(restored.code, restored.stderr).toBe(0);
    expect(await compareDatabases({ pg: svc.pg, database: 'app' }, { pg: svc.pg, database: 'plain_copy' })).toEqual([]);
  });
});
