/**
 * The Lambda handler, run locally against PostgreSQL 18 and moto: a backup that pg_restore
 * restores with identical content, manifests that match their objects, several databases with
 * awkward names, concurrent runs, globals, and a password that never leaks.
 */
import { GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { manifestKeyFor, parseKey } from '../../../engine/store/backup-key.ts';
import { runBackup } from '../../../engine/backup/backup.ts';
import { loadConfig } from '../../../engine/config.ts';
import { createDeps } from '../../../engine/deps.ts';
import { createHandler } from '../../../lambda/handler.ts';
import { METRIC_NAMES, METRIC_NAMESPACE } from '../../../engine/observability.ts';
import { noMetrics, silentLog, lambdaDeps } from '../../../lambda/powertools.ts';
import { awsEnv, createAlertInbox, createSecret, listKeys, listMultipartUploads, storedManifest, type AlertInbox, type TestClients } from '../../support/aws.ts';
import { contentChecksums, createDatabase, loadSampleData, pgRestore } from '../../support/fixtures.ts';
import type { TestAws } from '../../support/moto.ts';
import { NASTY_PASSWORD, type TestPostgres } from '../../support/postgres.ts';
import { startBackupServices } from '../../support/services.ts';

const quiet = { log: silentLog, metrics: noMetrics };
const ODD_NAMES = ['my db', `it's "quoted"`, 'données Ünïcødé'];

describe('backup round trip (handler, PostgreSQL 18, moto)', () => {
  let pgsrv: TestPostgres;
  let aws: TestAws;
  let c: TestClients;
  let layer: string;
  let bucket: string;
  let secretArn: string;
  let inbox: AlertInbox;
  let env: Record<string, string>;

  beforeAll(async () => {
    ({ pg: pgsrv, aws, layer, c, bucket } = await startBackupServices());
    inbox = await createAlertInbox(c);
    secretArn = await createSecret(c, { engine: 'postgres', host: pgsrv.host, port: pgsrv.port, username: pgsrv.user, password: pgsrv.password, dbname: 'app' });
    await createDatabase(pgsrv, 'app');
    await loadSampleData(pgsrv, 'app');
    for (const name of ODD_NAMES) {
      await createDatabase(pgsrv, name);
      await pgsrv.query(`create table t (id int primary key, v text); insert into t select g, $$ü ' " $$ || g from generate_series(1, 50) g`, [], name);
    }
    env = {
      ...awsEnv(aws.endpoint),
      DB_SECRET_ID: secretArn,
      BACKUP_BUCKET: bucket,
      ALERT_TOPIC_ARN: inbox.topicArn,
      PG_DUMP_BIN: join(layer, 'bin', 'pg_dump'),
      RETENTION_COUNT: '3',
      NOTIFY_ON_SUCCESS: 'true',
    };
    // The SDK's default clients (createDeps) read the endpoint and credentials from the process.
    Object.assign(process.env, awsEnv(aws.endpoint));
  });
  afterAll(async () => {
    await Promise.all([pgsrv?.stop(), aws?.stop()]);
  });

  const context = { awsRequestId: 'req-roundtrip', getRemainingTimeInMillis: () => 600_000 };

  it('takes a backup through the handler that pg_restore restores with identical content, large objects included', async () => {
    const writes: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      writes.push(String(chunk));
      return true;
    });
    let result;
    try {
      result = await createHandler(env)({}, context);
    } finally {
      spy.mockRestore();
    }
    expect(result.status).toBe('succeeded');
    expect(result.backups).toHaveLength(1);
    const b = result.backups[0]!;
    expect(b.database).toBe('app');
    expect(parseKey('pg-s3-backup/', b.key)).toMatchObject({ database: 'app', kind: 'dump' });

    // Manifest: present, valid, and its sha256 and size are the object's.
    const manifest = await storedManifest(c, bucket, b.key);
    expect(manifest).toMatchObject({ database: 'app', key: b.key, bytes: b.bytes, sha256: b.sha256, compression: 'zstd:1', reason: 'scheduled' });
    expect(manifest.pgDumpVersion).toMatch(/^18\./);
    expect(manifest.serverVersion).toMatch(/^18\./);
    const obj = await c.s3.send(new GetObjectCommand({ Bucket: bucket, Key: b.key }));
    const bytes = Buffer.from(await obj.Body!.transformToByteArray());
    expect(bytes.subarray(0, 5).toString()).toBe('PGDMP');
    expect(bytes.length).toBe(manifest.bytes);
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(manifest.sha256);
    // S3 holds a SHA-256 checksum for the object too (composite per part for multipart uploads).
    const head = await c.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: b.key, ChecksumMode: 'ENABLED' }));
    expect(head.ChecksumSHA256).toBe(createHash('sha256').update(bytes).digest('base64'));

    // Restore into a fresh database and compare every table and the large objects.
    await createDatabase(pgsrv, 'app_restored');
    const restored = await pgRestore(join(layer, 'bin', 'pg_restore'), pgsrv, 'app_restored', (await c.s3.send(new GetObjectCommand({ Bucket: bucket, Key: b.key }))).Body as Readable);
    expect(restored.stderr).toBe('');
    expect(restored.code).toBe(0);
    const [orig, copy] = await Promise.all([contentChecksums(pgsrv, 'app'), contentChecksums(pgsrv, 'app_restored')]);
    expect(Object.keys(orig)).toHaveLength(5);
    expect(orig['<large objects>']).toMatch(/^2:/);
    expect(copy).toEqual(orig);

    // One JSON log line per stage, EMF metrics with the Database dimension only, and no password anywhere.
    const lines = writes.join('').split('\n').filter((l) => l.trim() !== '');
    const logs = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(logs.map((l) => l.message)).toEqual(expect.arrayContaining(['run started', 'dump started', 'dump uploaded', 'backup complete', 'pruned', 'run finished']));
    const emf = logs.find((l) => l._aws) as { _aws: { CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string }[] }[] }; Database: string; [k: string]: unknown };
    expect(emf._aws.CloudWatchMetrics[0]!.Namespace).toBe(METRIC_NAMESPACE);
    expect(emf._aws.CloudWatchMetrics[0]!.Dimensions).toEqual([['Database']]);
    expect(emf.Database).toBe('app');
    expect(emf[METRIC_NAMES.succeeded]).toBe(1);
    expect(emf[METRIC_NAMES.bytes]).toBe(b.bytes);
    expect(emf[METRIC_NAMES.throughput]).toBeGreaterThan(0);
    expect(emf[METRIC_NAMES.durationMs]).toBeGreaterThan(0);
    expect(writes.join('')).not.toContain(NASTY_PASSWORD);
    expect(pgsrv.password).toBe(NASTY_PASSWORD);

    const [notice] = await inbox.receive(1);
    expect(notice!.subject).toBe('[pg-s3-backup] OK app');
    expect(notice!.message).toContain(b.key);
  });

  it('backs up databases with spaces, quotes and non-ASCII letters, each under its own prefix', async () => {
    const result = await createHandler(env, quiet)({ databases: ODD_NAMES, reason: 'odd names' }, context);
    expect(result.backups.map((b) => b.database)).toEqual(ODD_NAMES);
    for (const b of result.backups) {
      expect(parseKey('pg-s3-backup/', b.key)).toMatchObject({ database: b.database, kind: 'dump' });
      const manifest = await storedManifest(c, bucket, b.key);
      expect(manifest.database).toBe(b.database);
      expect(manifest.reason).toBe('odd names');
      const target = `restored ${b.database}`;
      await createDatabase(pgsrv, target);
      const r = await pgRestore(join(layer, 'bin', 'pg_restore'), pgsrv, target, (await c.s3.send(new GetObjectCommand({ Bucket: bucket, Key: b.key }))).Body as Readable);
      expect(r.code).toBe(0);
      expect(await contentChecksums(pgsrv, target)).toEqual(await contentChecksums(pgsrv, b.database));
    }
    await inbox.receive(1);
  });

  it('gives two runs started in the same millisecond two distinct complete backups', async () => {
    const config = loadConfig({ ...env, NOTIFY_ON_SUCCESS: 'false', RETENTION_COUNT: '100' });
    const at = new Date('2031-05-06T07:08:09.010Z');
    const deps = createDeps(config, lambdaDeps({ s3: c.s3, secrets: c.secrets, sns: c.sns, now: () => at, ...quiet }));
    const [a, b] = await Promise.all([runBackup({ reason: 'one' }, config, deps), runBackup({ reason: 'two' }, config, deps)]);
    expect(a.status).toBe('succeeded');
    expect(b.status).toBe('succeeded');
    const ka = a.backups[0]!.key;
    const kb = b.backups[0]!.key;
    expect(ka).not.toBe(kb);
    const keys = await listKeys(c, bucket, 'pg-s3-backup/app/2031/');
    expect(keys).toEqual([ka, manifestKeyFor(ka), kb, manifestKeyFor(kb)].sort());
    for (const k of [ka, kb]) {
      const m = await storedManifest(c, bucket, k);
      expect(m.key).toBe(k);
    }
    expect(await listMultipartUploads(c, bucket)).toEqual([]);
  });

  it('keeps RETENTION_COUNT backups after repeated runs, stores the globals without role passwords, and honours dryRun', async () => {
    const envG = { ...env, BACKUP_GLOBALS: 'true', NOTIFY_ON_SUCCESS: 'false', BACKUP_PREFIX: 'globals-run/' };
    const handler = createHandler(envG, quiet);
    for (let i = 0; i < 4; i++) await handler({ reason: `run ${i}` }, context);
    const dumps = (await listKeys(c, bucket, 'globals-run/app/')).filter((k) => k.endsWith('.dump'));
    expect(dumps).toHaveLength(3);
    const globals = await listKeys(c, bucket, 'globals-run/_globals/');
    expect(globals).toHaveLength(3);
    const sql = await (await c.s3.send(new GetObjectCommand({ Bucket: bucket, Key: globals[2]! }))).Body!.transformToString();
    expect(sql).toMatch(/CREATE ROLE postgres/);
    expect(sql).not.toMatch(/PASSWORD|SCRAM-SHA-256/);

    const dry = await handler({ dryRun: true }, context);
    expect(dry.pruned.filter((k) => k.endsWith('.dump'))).toHaveLength(1);
    expect((await listKeys(c, bucket, 'globals-run/app/')).filter((k) => k.endsWith('.dump'))).toHaveLength(4);
  });
});
