/**
 * The backup metrics off Lambda: PutMetricData with the EMF metrics' namespace, names, units and
 * dimension (the dead-man alarms are built on them), and a CloudWatch that does not answer is a
 * warning, never a thrown error (the backup is in S3 either way).
 */
import { CloudWatchClient, GetMetricStatisticsCommand } from '@aws-sdk/client-cloudwatch';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupMetricData, cloudWatchMetrics, metricsPublisher } from '../../engine/cloudwatch-metrics.ts';
import { loadConfig } from '../../engine/config.ts';
import type { EngineEvent } from '../../engine/events.ts';
import { METRIC_DIMENSION, METRIC_NAMES, METRIC_NAMESPACE } from '../../engine/observability.ts';
import { TEST_REGION } from '../support/aws.ts';
import { startMoto, type TestAws } from '../support/moto.ts';
import { freePort } from '../support/postgres.ts';

const credentials = { accessKeyId: 'testing', secretAccessKey: 'testing' };

describe('CloudWatch metrics off Lambda', () => {
  let aws: TestAws;
  beforeAll(async () => {
    aws = await startMoto();
  });
  afterAll(async () => {
    await aws?.stop();
  });

  it('puts BackupSucceeded, BackupBytes and BackupDurationMs per database, as the EMF lines name them', async () => {
    const client = new CloudWatchClient({ region: TEST_REGION, endpoint: aws.endpoint, credentials });
    const events: EngineEvent[] = [];
    const publish = cloudWatchMetrics(client, (e) => events.push(e));
    const at = new Date();
    await publish({ database: 'shop', succeeded: true, bytes: 4096, durationMs: 2000 });
    await publish({ database: 'crm', succeeded: false, bytes: 0, durationMs: 0 });
    expect(events).toEqual([]);
    const sum = async (name: string, database: string) =>
      (await client.send(new GetMetricStatisticsCommand({ Namespace: METRIC_NAMESPACE, MetricName: name, Dimensions: [{ Name: METRIC_DIMENSION, Value: database }], StartTime: new Date(at.getTime() - 60_000), EndTime: new Date(at.getTime() + 60_000), Period: 3600, Statistics: ['Sum'] }))).Datapoints?.map((d) => d.Sum);
    expect({ shop: await sum(METRIC_NAMES.succeeded, 'shop'), crm: await sum(METRIC_NAMES.succeeded, 'crm'), bytes: await sum(METRIC_NAMES.bytes, 'shop'), ms: await sum(METRIC_NAMES.durationMs, 'shop') }).toEqual({ shop: [1], crm: [0], bytes: [4096], ms: [2000] });
    expect(backupMetricData({ database: 'shop', succeeded: true, bytes: 4096, durationMs: 2000 }, at).map((d) => [d.MetricName, d.Unit])).toEqual([
      ['BackupSucceeded', 'Count'], ['BackupBytes', 'Bytes'], ['BackupDurationMs', 'Milliseconds'], ['BackupThroughputBytesPerSecond', 'Bytes/Second'],
    ]);
  });

  it('reports a CloudWatch it cannot reach as a warning event and returns', async () => {
    const client = new CloudWatchClient({ region: TEST_REGION, endpoint: `http://127.0.0.1:${await freePort()}`, credentials, maxAttempts: 1 });
    const events: EngineEvent[] = [];
    await cloudWatchMetrics(client, (e) => events.push(e))({ database: 'shop', succeeded: true, bytes: 1, durationMs: 1 });
    expect(events).toMatchObject([{ event: 'metrics.not-sent', stage: 'notify', database: 'shop', error: expect.stringMatching(/ECONNREFUSED/) }]);
  });

  it('is on only off Lambda and with CLOUDWATCH_METRICS', () => {
    const env = { BACKUP_BUCKET: 'backups-bucket', DATABASE_URL: 'postgresql://u@h/db' };
    const noop = () => {};
    expect(metricsPublisher(loadConfig({ ...env, CLOUDWATCH_METRICS: 'true' }), noop)).toBeTypeOf('function');
    expect(metricsPublisher(loadConfig(env), noop)).toBeUndefined();
    expect(metricsPublisher(loadConfig({ BACKUP_BUCKET: 'backups-bucket', DB_SECRET_ID: 'db', CLOUDWATCH_METRICS: 'true', AWS_LAMBDA_FUNCTION_NAME: 'fn' }), noop)).toBeUndefined();
  });
});
