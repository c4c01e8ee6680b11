/**
 * A good backup whose pruning fails must say so truthfully: the backup exists (key named), only
 * pruning failed. The alert once read "Key attempted: (none) … Nothing was written at that key",
 * which is false after a complete backup (issue 12 §5).
 */
import { DeleteObjectsCommand, S3Client } from '@aws-sdk/client-s3';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../../../engine/backup/backup.ts';
import { loadConfig } from '../../../engine/config.ts';
import { createDeps } from '../../../engine/deps.ts';
import { noMetrics, silentLog, lambdaDeps } from '../../../lambda/powertools.ts';
import { awsEnv, createAlertInbox, createBucket, createSecret, listKeys, testClients, type AlertInbox, type TestClients } from '../../support/aws.ts';
import { createDatabase } from '../../support/fixtures.ts';
import { ensureLayer } from '../../support/layer.ts';
import { startMoto, type TestAws } from '../../support/moto.ts';
import { startPostgres, type TestPostgres } from '../../support/postgres.ts';
import { baseEnv, runCli } from '../../support/cli.ts';
import { startFaultProxy, type FaultProxy } from '../../support/fault-proxy.ts';

describe('a prune failure after a good backup', () => {
  let pgsrv: TestPostgres;
  let aws: TestAws;
  let c: TestClients;
  let inbox: AlertInbox;
  let env: Record<string, string>;
  let proxy: FaultProxy;

  beforeAll(async () => {
    let layer: string;
    [pgsrv, aws, layer] = await Promise.all([startPostgres(), startMoto(), ensureLayer()]);
    proxy = await startFaultProxy(aws.endpoint);
    c = testClients(aws.endpoint);
    inbox = await createAlertInbox(c);
    await createDatabase(pgsrv, 'app');
    await pgsrv.query('create table t (id int primary key); insert into t select generate_series(1, 10)', [], 'app');
    const secretArn = await createSecret(c, { host: pgsrv.host, port: pgsrv.port, username: pgsrv.user, password: pgsrv.password, dbname: 'app' });
    env = { ...awsEnv(aws.endpoint), DB_SECRET_ID: secretArn, BACKUP_BUCKET: await createBucket(c), ALERT_TOPIC_ARN: inbox.topicArn, PG_DUMP_BIN: join(layer, 'bin', 'pg_dump'), RETENTION_COUNT: '1' };
    Object.assign(process.env, awsEnv(aws.endpoint));
  });
  afterAll(async () => {
    await proxy?.stop();
    await Promise.all([pgsrv?.stop(), aws?.stop()]);
  });

  it('alerts that pruning failed, naming the complete backup, never "nothing was written"', async () => {
    const config = loadConfig(env);
    const quiet = { log: silentLog, metrics: noMetrics };
    await runBackup({ reason: 'first' }, config, createDeps(config, lambdaDeps(quiet)));
    await inbox.receive(0, 0);
    // S3 refuses the deletes of the second run's prune (an SCP, a legal hold…), nothing else.
    const s3 = new S3Client({ forcePathStyle: true });
    const send = s3.send.bind(s3) as (command: unknown) => Promise<unknown>;
    Object.assign(s3, { send: (command: unknown) => (command instanceof DeleteObjectsCommand ? Promise.reject(Object.assign(new Error('Access Denied'), { name: 'AccessDenied' })) : send(command)) });
    const result = await runBackup({ reason: 'second' }, config, createDeps(config, lambdaDeps({ ...quiet, s3 })));

    const key = result.backups[0]!.key;
    expect((await listKeys(c, config.bucket)).filter((k) => k.startsWith(key))).toEqual([key, `${key}.json`]);
    expect(result.failures).toEqual([expect.objectContaining({ database: 'app', stage: 'prune', key })]);
    const [alert] = await inbox.receive(1, 20_000);
    expect(alert!.subject).toMatch(/FAILED app: prune/);
    expect(alert!.message).toContain(`The backup itself is complete: s3://${config.bucket}/${key}`);
    expect(alert!.message).not.toMatch(/Nothing was written|Key attempted: \(none/);
  });

  it('the real CLI: S3 answering 500 to the prune\'s manifest GET after a good backup alerts "backup complete, pruning failed", never stage "manifest"', async () => {
    // Every S3 request through the fault proxy; only the GETs of manifests (the prune's reads of
    // the backups it keeps: the run writes its own manifest with a PUT) get 500 InternalError.
    const cliEnv = { ...baseEnv(), ...env, BACKUP_PREFIX: 'cli-prune/', RETENTION_COUNT: '2', AWS_ENDPOINT_URL_S3: proxy.endpoint, AWS_MAX_ATTEMPTS: '2' };
    proxy.setRule(() => 'pass');
    const first = await runCli(['backup', '--reason', 'first'], cliEnv);
    expect(first.code, first.stderr).toBe(0);
    await inbox.receive(0, 0);
    proxy.setRule((r) => (r.method === 'GET' && /\.dump\.json(\?|$)/.test(r.url) ? '500' : 'pass'));
    const second = await runCli(['backup', '--reason', 'second'], cliEnv);
    const manifestGets = proxy.log.filter((e) => e.fault === '500').length;
    proxy.setRule(() => 'pass');

    expect(manifestGets).toBeGreaterThan(0);
    expect(second.code).toBe(1);
    const backup = (second.result!.backups as { key: string; bytes: number }[])[0]!;
    expect(second.result!.failures).toEqual([expect.objectContaining({ database: 'app', stage: 'prune', key: backup.key })]);
    expect((await listKeys(c, env.BACKUP_BUCKET!, backup.key))).toEqual([backup.key, `${backup.key}.json`]);
    const [alert] = await inbox.receive(1, 20_000);
    expect(alert!.subject).toBe('[pg-s3-backup] FAILED app: prune');
    expect(alert!.message).toContain('pruning the older backups of database "app" FAILED (its new backup is complete)');
    expect(alert!.message).toContain(`The backup itself is complete: s3://${env.BACKUP_BUCKET}/${backup.key} (dump and manifest, ${backup.bytes} bytes)`);
    expect(alert!.message).toMatch(/InternalError/);
    expect(alert!.message).toMatch(/What to do: .*s3:GetObject/);
    expect(alert!.message).not.toMatch(/Nothing was written|stage "manifest"|Key attempted/);
  });
});
