/**
 * `pg-s3-backup restore` and `verify`, end to end: the real program against PostgreSQL and moto,
 * with a backup taken by `pg-s3-backup backup` (the Lambda's pipeline).
 */
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAlertInbox } from '../support/aws.ts';
import { contentChecksums } from '../support/fixtures.ts';
import { NASTY_PASSWORD, startPostgres, type TestPostgres } from '../support/postgres.ts';
import { databases, expectNoSecret, runCli, startCliServices, type CliServices, resultOf } from '../support/cli.ts';

let svc: CliServices;
let key: string;
let source: Record<string, string>;

beforeAll(async () => {
  svc = await startCliServices();
  const run = await runCli(['backup', '--reason', 'cli-restore test'], svc.env);
  expect(run.code, run.stderr).toBe(0);
  key = (run.result!.backups as { key: string }[])[0]!.key;
  source = await contentChecksums(svc.pg, 'app');
});
afterAll(async () => {
  await svc?.stop();
});

/** Replaces the dump object with the same bytes but one, returns a function that puts it back. */
async function tamper(): Promise<() => Promise<void>> {
  const res = await svc.clients.s3.send(new GetObjectCommand({ Bucket: svc.bucket, Key: key }));
  const original = Buffer.from(await res.Body!.transformToByteArray());
  const changed = Buffer.from(original);
  changed.writeUInt8(changed.readUInt8(changed.length - 10) ^ 0xff, changed.length - 10);
  await svc.clients.s3.send(new PutObjectCommand({ Bucket: svc.bucket, Key: key, Body: changed }));
  return async () => {
    await svc.clients.s3.send(new PutObjectCommand({ Bucket: svc.bucket, Key: key, Body: original }));
  };
}

describe('restore', () => {
  it('restores the newest backup into a new database (--create) with identical content, password never shown', async () => {
    const run = await runCli(['restore', '--latest', '--database', 'app', '--target-url', svc.pg.urlFor('copy1'), '--create'], svc.env);
    expect(run.code, run.stderr).toBe(0);
    expect(run.result).toMatchObject({ status: 'restored', key, sourceDatabase: 'app', created: true });
    expect(run.events.map((e) => e.event)).toEqual(expect.arrayContaining(['restore.manifest', 'restore.download.progress', 'restore.sha256-verified', 'restore.progress', 'restore.done', 'result']));
    // pg_restore's progress: tables done out of the archive's tables with data.
    expect(run.events.find((e) => e.event === 'restore.progress')).toMatchObject({ database: 'copy1', tablesDone: 0, tablesTotal: 4 });
    expect(run.events.find((e) => e.event === 'restore.done')).toMatchObject({ database: 'copy1', tables: 4 });
    expect(await contentChecksums(svc.pg, 'copy1')).toEqual(source);
    expectNoSecret(run, NASTY_PASSWORD);
  });

  it('refuses a non-empty database without --clean and leaves it untouched; --clean --jobs 2 replaces it', async () => {
    // A restored copy that was then damaged: rows lost, and a table the backup does not know.
    const first = await runCli(['restore', '--key', key, '--target-url', svc.pg.urlFor('copy2'), '--create'], svc.env);
    expect(first.code, first.stderr).toBe(0);
    await svc.pg.query('delete from orders where id > 10; create table keep_me (id int); insert into keep_me values (42)', [], 'copy2');
    const refused = await runCli(['restore', '--key', key, '--target-url', svc.pg.urlFor('copy2')], svc.env);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/is not empty .*nothing was restored/);
    expect(refused.stderr).toMatch(/what to do: .*--clean/);
    expect(refused.events.find((e) => e.event === 'error')).toMatchObject({ error: 'TargetNotEmptyError', stage: 'restore' });
    // Refused before any download.
    expect(refused.events.some((e) => e.event === 'restore.download.progress')).toBe(false);
    expect((await svc.pg.query<{ n: string }>('select count(*) as n from orders', [], 'copy2'))[0]!.n).toBe('10');

    const cleaned = await runCli(['restore', '--key', key, '--target-url', svc.pg.urlFor('copy2'), '--clean', '--jobs', '2'], svc.env);
    expect(cleaned.code, cleaned.stderr).toBe(0);
    const after = await contentChecksums(svc.pg, 'copy2');
    expect(after['public.keep_me']).toBe('1:' + (await svc.pg.query<{ m: string }>("select md5('(42)') as m"))[0]!.m);
    delete after['public.keep_me'];
    expect(after).toEqual(source);
  });

  it('refuses a tampered object (sha256 mismatch) before the target is touched', async () => {
    const restoreObject = await tamper();
    try {
      const run = await runCli(['restore', '--key', key, '--target-url', svc.pg.urlFor('never_created'), '--create'], svc.env);
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(/does not match its manifest: sha256 [0-9a-f]{64}, manifest says [0-9a-f]{64}; nothing was restored/);
      expect(run.events.find((e) => e.event === 'error')).toMatchObject({ error: 'IntegrityError' });
      expect(run.events.some((e) => e.event === 'restore.progress')).toBe(false);
      expect(await databases(svc.pg)).not.toContain('never_created');

      await svc.pg.query('create database empty_target');
      const intoExisting = await runCli(['restore', '--key', key, '--target-url', svc.pg.urlFor('empty_target')], svc.env);
      expect(intoExisting.code).toBe(1);
      const objects = await svc.pg.query<{ n: string }>("select count(*) as n from pg_class where relnamespace = 'public'::regnamespace", [], 'empty_target');
      expect(Number(objects[0]!.n)).toBe(0);
    } finally {
      await restoreObject();
    }
  });

  it('fails with a clear message when the target database is missing (no --create), the temporary directory is unusable, or the key is not a backup', async () => {
    const missing = await runCli(['restore', '--key', key, '--target-url', svc.pg.urlFor('no_such_db')], svc.env);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/database "no_such_db" does not exist/);
    expect(missing.stderr).toMatch(/--create/);
    expectNoSecret(missing, NASTY_PASSWORD);

    const noTemp = await runCli(['restore', '--key', key, '--target-url', svc.pg.urlFor('no_temp'), '--create', '--temp-dir', '/nonexistent/dir'], svc.env);
    expect(noTemp.code).toBe(1);
    expect(noTemp.stderr).toMatch(/temporary directory \/nonexistent\/dir is not usable[\s\S]*what to do: Pass --temp-dir/);
    expect(await databases(svc.pg)).not.toContain('no_temp');

    const badKey = await runCli(['restore', '--key', 'elsewhere/app.dump', '--target-url', svc.pg.urlFor('x')], svc.env);
    expect(badKey.code).toBe(2);
    expect(badKey.stderr).toMatch(/is not a backup key/);
  });

  it('restores a single table with --table', async () => {
    const run = await runCli(['restore', '--key', key, '--target-url', svc.pg.urlFor('one_table'), '--create', '--table', 'orders'], svc.env);
    expect(run.code, run.stderr).toBe(0);
    const tables = await svc.pg.query<{ relname: string }>("select relname from pg_class where relkind = 'r' and relnamespace = 'public'::regnamespace", [], 'one_table');
    expect(tables.map((t) => t.relname)).toEqual(['orders']);
    const n = await svc.pg.query<{ n: string }>('select count(*) as n from orders', [], 'one_table');
    expect(Number(n[0]!.n)).toBe(4000);
  });
});

describe('restore into PostgreSQL 15 (a pg_dump 18 archive into a server older than 17)', () => {
  let old: TestPostgres;
  beforeAll(async () => {
    old = await startPostgres({ major: 15 });
  });
  afterAll(async () => {
    await old?.stop();
  });

  it('tolerates only the harmless transaction_timeout error and reports it as a warning', async () => {
    const run = await runCli(['restore', '--key', key, '--target-url', old.urlFor('app'), '--create', '--jobs', '2'], svc.env);
    expect(run.code, run.stderr).toBe(0);
    expect((run.result!.warnings as string[]).join('\n')).toMatch(/transaction_timeout/);
    expect(await contentChecksums(old, 'app')).toEqual(source);
  });

  it('--clean replaces that database: the drop script runs without pg_dump 18\'s SET transaction_timeout, which 15 does not know', async () => {
    await old.query('INSERT INTO customers (id, name) SELECT -g, \'stray\' FROM generate_series(1, 3) g', [], 'app');
    const run = await runCli(['restore', '--key', key, '--target-url', old.urlFor('app'), '--clean', '--jobs', '2'], svc.env);
    expect(run.code, run.stderr).toBe(0);
    expect(await contentChecksums(old, 'app')).toEqual(source);
  });

  it('reports any other error and drops the database it created', async () => {
    // A role the archive does not know cannot own a table: with owners kept, pg_restore fails on a real error.
    await svc.pg.query('create role ghost_owner');
    await svc.pg.query('alter table customers owner to ghost_owner', [], 'app');
    const again = await runCli(['backup'], svc.env);
    expect(again.code, again.stderr).toBe(0);
    const newest = (again.result!.backups as { key: string }[])[0]!.key;
    await svc.pg.query('alter table customers owner to postgres', [], 'app');

    const run = await runCli(['restore', '--key', newest, '--target-url', old.urlFor('broken'), '--create'], svc.env);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/role "ghost_owner" does not exist/);
    expect(run.stderr).toMatch(/exited with code 1/);
    expect(run.stderr).toMatch(/--no-owner/);
    expect(await databases(old)).not.toContain('broken');

    const withoutOwners = await runCli(['restore', '--key', newest, '--target-url', old.urlFor('fixed'), '--create', '--no-owner'], svc.env);
    expect(withoutOwners.code, withoutOwners.stderr).toBe(0);
  });
});

describe('verify', () => {
  it('restores into a scratch database, reports tables, rows, sizes and timings, and drops it', async () => {
    const before = await databases(svc.pg);
    const run = await runCli(['verify', '--latest', '--database', 'app', '--scratch-url', svc.pg.url, '--json'], svc.env);
    expect(run.code, run.stderr).toBe(0);
    // --json: stdout is the report and nothing else.
    const report = resultOf<Record<string, unknown>>(run);
    expect(report).toMatchObject({ status: 'ok', database: 'app', sha256Verified: true, problems: [] });
    expect(report.tocEntries).toBeGreaterThan(10);
    const tables = report.tables as { schema: string; table: string; rows: number; bytes: number }[];
    expect(tables.find((t) => t.table === 'orders')).toMatchObject({ schema: 'public', rows: 4000 });
    expect(tables.find((t) => t.table === 'customers')!.bytes).toBeGreaterThan(0);
    expect(report.totalRows).toBe(tables.reduce((s, t) => s + t.rows, 0));
    expect(report.timingsMs).toMatchObject({ download: expect.any(Number), list: expect.any(Number), restore: expect.any(Number), total: expect.any(Number) });
    expect(await databases(svc.pg)).toEqual(before);
    expect(JSON.stringify(report)).not.toContain(encodeURIComponent(NASTY_PASSWORD));
    expectNoSecret(run, NASTY_PASSWORD);
  });

  it('fails (exit 1, status failed) on a tampered object, and creates no scratch database', async () => {
    const before = await databases(svc.pg);
    const restoreObject = await tamper();
    try {
      const run = await runCli(['verify', '--key', key, '--scratch-url', svc.pg.url], svc.env);
      expect(run.code).toBe(1);
      expect(run.result).toMatchObject({ status: 'failed', sha256Verified: false });
      expect((run.result!.problems as { stage: string; message: string }[])[0]).toMatchObject({ stage: 'verify', message: expect.stringMatching(/does not match its manifest/) });
      expect(await databases(svc.pg)).toEqual(before);
    } finally {
      await restoreObject();
    }
  });

  it('--alert publishes the report to ALERT_TOPIC_ARN', async () => {
    const inbox = await createAlertInbox(svc.clients);
    const run = await runCli(['verify', '--latest', '--scratch-url', svc.pg.url, '--alert'], { ...svc.env, ALERT_TOPIC_ARN: inbox.topicArn });
    expect(run.code, run.stderr).toBe(0);
    const [message] = await inbox.receive(1, 10_000);
    expect(message?.subject).toBe('[pg-s3-backup] restore drill OK: app');
    expect(JSON.parse(message!.message)).toMatchObject({ status: 'ok', database: 'app', sha256Verified: true });
    expect(message!.message).not.toContain(encodeURIComponent(NASTY_PASSWORD));
  });

  it('fails with a usage error (exit 2) without --latest or --key', async () => {
    const run = await runCli(['verify', '--scratch-url', svc.pg.url], svc.env);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/exactly one of --latest and --key/);
  });
});
