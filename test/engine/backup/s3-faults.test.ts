/**
 * S3 faults through a proxy: persistent 503s abort the multipart upload (nothing at the key, no
 * upload left, pg_dump stopped, alert sent, nothing pruned); a single 503 or connection reset is
 * retried by the SDK and the backup completes with a matching checksum.
 */
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildDumpKey, manifestKeyFor } from '../../../engine/store/backup-key.ts';
import { runBackup } from '../../../engine/backup/backup.ts';
import { loadConfig } from '../../../engine/config.ts';
import { createDeps } from '../../../engine/deps.ts';
import { parseManifest } from '../../../engine/store/manifest.ts';
import { type BackupMetrics } from '../../../engine/observability.ts';
import { noMetrics, silentLog, type MetricsSink, lambdaDeps } from '../../../lambda/powertools.ts';
import { createAlertInbox, createBucket, createSecret, listKeys, listMultipartUploads, putText, testClients, type AlertInbox, type TestClients } from '../../support/aws.ts';
import { isUploadPart, startFaultProxy, type Fault, type FaultProxy, type ProxiedRequest } from '../../support/fault-proxy.ts';
import { startMoto, type TestAws } from '../../support/moto.ts';
import { writeFakePgDump } from '../../support/fixtures.ts';

const MiB = 1024 * 1024;

describe('S3 faults', () => {
  let aws: TestAws;
  let proxy: FaultProxy;
  let direct: TestClients;
  let viaProxy: TestClients;
  let bucket: string;
  let inbox: AlertInbox;
  let secretArn: string;
  let dir: string;

  beforeAll(async () => {
    aws = await startMoto();
    proxy = await startFaultProxy(aws.endpoint);
    direct = testClients(aws.endpoint);
    viaProxy = testClients(aws.endpoint, { s3Endpoint: proxy.endpoint });
    bucket = await createBucket(direct);
    inbox = await createAlertInbox(direct);
    // The fake pg_dump below never connects; the version check is replaced too.
    secretArn = await createSecret(direct, { host: '127.0.0.1', port: 5432, username: 'u', password: 'p4ssw0rd!', dbname: 'app' });
    dir = mkdtempSync(join(tmpdir(), 'pgs3b-s3f-'));
  });
  afterAll(async () => {
    await proxy?.stop();
    await aws?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    proxy.setRule(() => 'pass');
    proxy.log.length = 0;
  });

  const fakePgDump = (body: string): string => writeFakePgDump(dir, body);

  async function run(prefix: string, pgDumpBin: string, metrics: MetricsSink = noMetrics) {
    const config = loadConfig({ DB_SECRET_ID: secretArn, BACKUP_BUCKET: bucket, BACKUP_PREFIX: prefix, ALERT_TOPIC_ARN: inbox.topicArn, PG_DUMP_BIN: pgDumpBin, RETENTION_COUNT: '1' });
    const deps = createDeps(config, lambdaDeps({
      s3: viaProxy.s3,
      secrets: direct.secrets,
      sns: direct.sns,
      log: silentLog,
      metrics,
      serverInfo: async () => ({ versionNum: 180004, text: '18.4' }),
      partSize: 5 * MiB,
    }));
    return runBackup({ reason: 'fault test' }, config, deps);
  }

  async function seed(prefix: string): Promise<string[]> {
    const key = buildDumpKey(prefix, 'app', new Date(Date.UTC(2020, 0, 1)));
    await putText(direct, bucket, key, 'PGDMP');
    await putText(direct, bucket, manifestKeyFor(key), '{}');
    return [key, manifestKeyFor(key)];
  }

  const countBy = (pred: (r: ProxiedRequest) => boolean, fault?: Fault) => proxy.log.filter((e) => pred(e.request) && (fault === undefined || e.fault === fault)).length;
  const isAbort = (r: ProxiedRequest) => r.method === 'DELETE' && /[?&]uploadId=/.test(r.url);

  it('503 for every part: upload aborted, pg_dump stopped, no object, no multipart upload, alert, nothing pruned', async () => {
    const seeded = await seed('every-part/');
    proxy.setRule((r) => (isUploadPart(r) ? '503' : 'pass'));
    // An endless dump: the run can only end if the upload failure stops pg_dump.
    const res = await run('every-part/', fakePgDump('printf PGDMP; exec cat /dev/urandom'));
    expect(res.status).toBe('failed');
    expect(res.failures).toEqual([expect.objectContaining({ database: 'app', stage: 'upload' })]);
    expect(res.failures[0]!.message).toMatch(/ServiceUnavailable|503/);
    expect(res.pruned).toEqual([]);
    expect(countBy(isUploadPart, '503')).toBeGreaterThanOrEqual(3);
    expect(countBy(isAbort)).toBe(1);
    expect(await listKeys(direct, bucket, 'every-part/')).toEqual(seeded);
    expect(await listMultipartUploads(direct, bucket)).toEqual([]);
    const [alert] = await inbox.receive(1);
    expect(alert!.subject).toBe('[pg-s3-backup] FAILED app: upload');
    expect(alert!.message).toMatch(/multipart upload was aborted/);
  });

  it('S3 hanging on the first AbortMultipartUpload: the abort is retried within the clean-up\'s bound (a share per attempt) and nothing is left', async () => {
    // The default clean-up bound is 20 s; a hung first attempt once took all of it (one attempt).
    let hung = false;
    proxy.setRule((r) => {
      if (isUploadPart(r)) return '503';
      if (isAbort(r) && !hung) {
        hung = true;
        return 'blackhole';
      }
      return 'pass';
    });
    const t0 = Date.now();
    const res = await run('abort-hang/', fakePgDump('printf PGDMP; exec cat /dev/urandom'));
    const ms = Date.now() - t0;
    expect(res.failures).toEqual([expect.objectContaining({ database: 'app', stage: 'upload' })]);
    expect(countBy(isAbort, 'blackhole')).toBe(1);
    expect(countBy(isAbort, 'pass')).toBe(1);
    expect(await listMultipartUploads(direct, bucket)).toEqual([]);
    const [alert] = await inbox.receive(1);
    expect(alert!.message).toMatch(/multipart upload was aborted/);
    expect(alert!.message).not.toMatch(/could NOT be aborted/);
    // The hung attempt was cut at its share (5 s), not at the whole bound.
    expect(ms).toBeLessThan(20_000);
  });

  it('pg_dump exiting 1 after 12 MB: the multipart upload it had started is aborted, never completed', async () => {
    const res = await run('exit1/', fakePgDump(`printf PGDMP; head -c 12000000 /dev/urandom; echo 'pg_dump: error: lost connection' >&2; exit 1`));
    expect(res.failures).toEqual([expect.objectContaining({ stage: 'dump', message: expect.stringMatching(/exit code 1[\s\S]*lost connection/) })]);
    expect(countBy((r) => r.method === 'POST' && /[?&]uploads(=|&|$)/.test(r.url))).toBe(1);
    expect(countBy(isUploadPart)).toBeGreaterThanOrEqual(2);
    // One abort: an attempt S3 answered slower than its share of the clean-up (a loaded machine)
    // is given up and tried again, which is not a second abort; one the client heard the end of is.
    expect(proxy.log.filter((e) => isAbort(e.request) && e.answered && (e.status ?? 0) < 500).length, JSON.stringify(proxy.log.filter((e) => isAbort(e.request)))).toBe(1);
    expect(countBy((r) => r.method === 'POST' && /[?&]uploadId=/.test(r.url))).toBe(0);
    expect(await listKeys(direct, bucket, 'exit1/')).toEqual([]);
    expect(await listMultipartUploads(direct, bucket)).toEqual([]);
    await inbox.receive(1);
  });

  it('503 on every CompleteMultipartUpload: aborted, nothing at the key', async () => {
    await seed('complete/');
    proxy.setRule((r) => (r.method === 'POST' && /[?&]uploadId=/.test(r.url) ? '503' : 'pass'));
    const res = await run('complete/', fakePgDump('printf PGDMP; head -c 11000000 /dev/urandom'));
    expect(res.failures).toEqual([expect.objectContaining({ stage: 'upload' })]);
    expect((await listKeys(direct, bucket, 'complete/')).filter((k) => !k.includes('/2020/'))).toEqual([]);
    expect(await listMultipartUploads(direct, bucket)).toEqual([]);
    await inbox.receive(1);
  });

  it.each<[string, Fault]>([
    ['a single 503', '503'],
    ['a single connection reset', 'reset'],
  ])('%s on a part is retried and the backup completes', async (_label, fault) => {
    let injected = false;
    proxy.setRule((r) => {
      if (!injected && isUploadPart(r) && /[?&]partNumber=2(&|$)/.test(r.url)) {
        injected = true;
        return fault;
      }
      return 'pass';
    });
    const prefix = `retry-${fault}/`;
    const res = await run(prefix, fakePgDump('printf PGDMP; head -c 12000000 /dev/urandom'));
    expect(injected).toBe(true);
    expect(res.status).toBe('succeeded');
    const b = res.backups[0]!;
    const body = Buffer.from(await (await direct.s3.send(new GetObjectCommand({ Bucket: bucket, Key: b.key }))).Body!.transformToByteArray());
    expect(body.length).toBe(12_000_005);
    expect(createHash('sha256').update(body).digest('hex')).toBe(b.sha256);
    const manifest = parseManifest(await (await direct.s3.send(new GetObjectCommand({ Bucket: bucket, Key: manifestKeyFor(b.key) }))).Body!.transformToString());
    expect(manifest.sha256).toBe(b.sha256);
    expect(await listMultipartUploads(direct, bucket)).toEqual([]);
  });

  it('manifest write failing: stage manifest, the dump is taken back, a failure metric is recorded', async () => {
    proxy.setRule((r) => (r.method === 'PUT' && r.url.includes('.dump.json') ? '503' : 'pass'));
    const metrics: BackupMetrics[] = [];
    const res = await run('manifest/', fakePgDump('printf PGDMP; head -c 6000000 /dev/urandom'), { backupFinished: (m) => metrics.push(m) });
    expect(res.failures).toEqual([expect.objectContaining({ stage: 'manifest', key: expect.stringMatching(/^manifest\/app\//) })]);
    expect(await listKeys(direct, bucket, 'manifest/')).toEqual([]);
    expect(metrics).toEqual([expect.objectContaining({ database: 'app', succeeded: false, bytes: 6_000_005 })]);
    const [alert] = await inbox.receive(1);
    expect(alert!.subject).toBe('[pg-s3-backup] FAILED app: manifest');
  });

  it('a small dump (single PutObject) failing with 503 leaves nothing', async () => {
    proxy.setRule((r) => (r.method === 'PUT' && r.url.includes('.dump') && !r.url.includes('.json') ? '503' : 'pass'));
    const res = await run('small/', fakePgDump('printf PGDMP; head -c 1000 /dev/urandom'));
    expect(res.failures).toEqual([expect.objectContaining({ stage: 'upload' })]);
    expect(await listKeys(direct, bucket, 'small/')).toEqual([]);
    await inbox.receive(1);
  });
});
