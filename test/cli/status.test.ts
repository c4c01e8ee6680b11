/**
 * `pg-s3-backup status` against the real CLI, PostgreSQL and moto. A backup "30 hours old" is made
 * for real: moto runs under libfaketime with its clock read from a file (FAKETIME_TIMESTAMP_FILE),
 * set 30 hours back while the CLI (under faketime too) takes the backup of `ledger`, then set back
 * to the present: S3 stamped that backup 30 hours ago, exactly as a backup that stopped running.
 * The verdict uses S3's clock, so a CLI whose own clock is days ahead still sees a fresh backup.
 */
import { CloudFormationClient, CreateStackCommand, DeleteStackCommand, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { CloudWatchClient, PutMetricAlarmCommand, SetAlarmStateCommand } from '@aws-sdk/client-cloudwatch';
import { CreateScheduleCommand, SchedulerClient } from '@aws-sdk/client-scheduler';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../cli/main.ts';
import { buildDumpKey, manifestKeyFor } from '../../engine/store/backup-key.ts';
import { startMotoServer } from '../../scripts/local-services.ts';
import { TEST_REGION } from '../support/aws.ts';
import { runCli, runCliAt, startCliServices, type CliRun, type CliServices } from '../support/cli.ts';
import { createDatabase, loadSampleData } from '../support/fixtures.ts';

let svc: CliServices;
let clockDir: string;
let clockFile: string;
/** Moves moto's clock (libfaketime re-reads the file at every call: FAKETIME_NO_CACHE). */
const setMotoClock = (offset: string) => writeFileSync(clockFile, `${offset}\n`);
const credentials = { accessKeyId: 'testing', secretAccessKey: 'testing' };

beforeAll(async () => {
  clockDir = mkdtempSync(join(tmpdir(), 'pgs3b-status-'));
  clockFile = join(clockDir, 'moto-clock');
  setMotoClock('+0');
  svc = await startCliServices({
    // `env -u FAKETIME`: the wrapper's fixed offset would win over the file.
    aws: async () => {
      const moto = await startMotoServer({ wrap: ['faketime', '-f', '+0', 'env', '-u', 'FAKETIME'], env: { FAKETIME_TIMESTAMP_FILE: clockFile, FAKETIME_NO_CACHE: '1' } });
      return { endpoint: moto.endpoint, stop: () => moto.stop() };
    },
  });
  await createDatabase(svc.pg, 'ledger');
  await loadSampleData(svc.pg, 'ledger', 200);
  // ledger: one backup 30 hours ago (moto and the CLI both 30 hours back), then nothing.
  setMotoClock('-30h');
  const old = await runCliAt('-30h', ['backup', '--database', 'ledger'], svc.env);
  setMotoClock('+0');
  expect(old.code, old.stderr + old.stdout).toBe(0);
  // app: backed up now.
  const fresh = await runCli(['backup', '--database', 'app'], svc.env);
  expect(fresh.code, fresh.stderr + fresh.stdout).toBe(0);
}, 240_000);
afterAll(async () => {
  await svc?.stop();
  if (clockDir) rmSync(clockDir, { recursive: true, force: true });
});

type DbLine = { event: string; database: string; verdict: string; newest: { ageHours: number; key: string; runner: string | null } | null; unreadable: { key: string; problem: string }[]; problems: string[] };
const dbLines = (run: CliRun) => run.events.filter((e) => e.event === 'status.database') as unknown as DbLine[];
const byDb = (run: CliRun) => Object.fromEntries(dbLines(run).map((d) => [d.database, d]));

describe('status: exit codes from the newest complete backup\'s age', () => {
  it('exits 1 when a database\'s newest backup is older than a daily schedule allows (26 h), naming it; JSON lines end with the result', async () => {
    const run = await runCli(['status', '--json'], svc.env);
    expect(run.code, run.stderr).toBe(1);
    expect(run.events.at(-1)).toBe(run.result);
    expect(run.events.map((e) => e.event)).toEqual(['status.database', 'status.database', 'result']);
    expect(run.result).toMatchObject({ ok: false, stale: ['ledger'], maxAgeHours: 26, databases: 2, bucket: svc.bucket, stack: { name: 'PgS3Backup', state: 'absent' } });
    const dbs = byDb(run);
    expect(dbs.ledger).toMatchObject({ verdict: 'stale', problems: [expect.stringMatching(/^newest complete backup is 30(\.\d)? h old \(allowed: 26 h\)$/)] });
    expect(dbs.ledger!.newest!.ageHours).toBeGreaterThanOrEqual(29.9);
    expect(dbs.ledger!.newest!.ageHours).toBeLessThan(31);
    expect(dbs.app).toMatchObject({ verdict: 'ok', problems: [], newest: { runner: 'host' } });
    expect(dbs.app!.newest!.ageHours).toBeLessThan(1);
  });

  it('exits 0 when --max-age-hours allows the older backup, and a CLI whose clock runs 3 days ahead still measures by S3\'s clock', async () => {
    const run = await runCli(['status', '--json', '--max-age-hours', '48'], svc.env);
    expect(run.code, run.stderr).toBe(0);
    expect(run.result).toMatchObject({ ok: true, stale: [], maxAgeHours: 48, maxAgeFrom: '--max-age-hours' });
    const ahead = await runCliAt('+3d', ['status', '--json', '--max-age-hours', '48', '--no-stack'], svc.env);
    expect(ahead.code, ahead.stderr).toBe(0);
    expect(byDb(ahead).app!.newest!.ageHours).toBeLessThan(1);
    expect(ahead.result).toMatchObject({ stack: { state: 'not checked' } });
  });

  it('exits 2 on a usage error', async () => {
    let stderr = '';
    const code = await main(['status', '--max-age-hours', 'soon'], { stdout: { write: () => true }, stderr: { write: (s: string) => (stderr += s) }, env: svc.env });
    expect(code).toBe(2);
    expect(stderr).toContain('expected a number of hours');
  });
});

describe('status: what needs a look', () => {
  it('reports a newer backup whose manifest is unreadable, and judges the age by the newest readable one', async () => {
    const key = buildDumpKey('pg-s3-backup/', 'app', new Date());
    await svc.clients.s3.send(new PutObjectCommand({ Bucket: svc.bucket, Key: key, Body: 'PGDMP not really' }));
    await svc.clients.s3.send(new PutObjectCommand({ Bucket: svc.bucket, Key: manifestKeyFor(key), Body: '{"formatVersion": 99' }));
    const run = await runCli(['status', '--json', '--max-age-hours', '48'], svc.env);
    expect(run.code, run.stderr).toBe(0);
    const app = byDb(run).app!;
    expect(app.verdict).toBe('attention');
    expect(app.unreadable).toEqual([{ key, problem: expect.stringContaining('is unreadable: not JSON') }]);
    expect(app.problems).toContain('1 backup(s) with an unreadable manifest');
    expect(app.newest!.key).not.toBe(key);
    expect(run.result).toMatchObject({ ok: true, attention: ['app'] });
  });
});

describe('status with the deployed stack', () => {
  const STACK = 'PgS3BackupStatusTest';
  const SCHEDULE = `${STACK}-Nightly`;
  let cloudformation: CloudFormationClient;

  beforeAll(async () => {
    const common = { region: TEST_REGION, credentials, endpoint: svc.aws.endpoint };
    cloudformation = new CloudFormationClient(common);
    const cloudwatch = new CloudWatchClient(common);
    const scheduler = new SchedulerClient(common);
    await cloudformation.send(new CreateStackCommand({
      StackName: STACK,
      TemplateBody: JSON.stringify({
        // moto's CloudFormation creates no alarms: the alarm below notifies the stack's topic, as the stack's do.
        Resources: { Topic: { Type: 'AWS::SNS::Topic', Properties: {} } },
        Outputs: {
          BucketName: { Value: svc.bucket }, BackupPrefix: { Value: 'pg-s3-backup/' }, AlertTopicArn: { Value: { Ref: 'Topic' } }, ScheduleName: { Value: SCHEDULE },
          DashboardUrl: { Value: 'https://console.aws.amazon.com/cloudwatch/home?region=us-east-1#dashboards:name=pg-s3-backup' },
        },
      }),
    }));
    const topicArn = (await cloudformation.send(new DescribeStacksCommand({ StackName: STACK }))).Stacks![0]!.Outputs!.find((o) => o.OutputKey === 'AlertTopicArn')!.OutputValue!;
    for (const name of [`${STACK}-DeadManAlarm0`, `${STACK}-ErrorsAlarm`]) {
      await cloudwatch.send(new PutMetricAlarmCommand({
        AlarmName: name, Namespace: 'PgS3Backup', MetricName: 'BackupSucceeded', Statistic: 'Sum', Period: 3600, EvaluationPeriods: 1, Threshold: 1,
        ComparisonOperator: 'LessThanThreshold', AlarmActions: [topicArn], OKActions: [topicArn],
      }));
    }
    await cloudwatch.send(new SetAlarmStateCommand({ AlarmName: `${STACK}-DeadManAlarm0`, StateValue: 'ALARM', StateReason: 'no BackupSucceeded for ledger in 26 hours' }));
    await cloudwatch.send(new SetAlarmStateCommand({ AlarmName: `${STACK}-ErrorsAlarm`, StateValue: 'OK', StateReason: 'fine' }));
    // Weekly (Sundays at 03:00 Paris): a backup may be a week and two hours old.
    await scheduler.send(new CreateScheduleCommand({
      Name: SCHEDULE, ScheduleExpression: 'cron(0 3 ? * 1 *)', ScheduleExpressionTimezone: 'Europe/Paris', FlexibleTimeWindow: { Mode: 'OFF' },
      Target: { Arn: `arn:aws:lambda:${TEST_REGION}:123456789012:function:f`, RoleArn: 'arn:aws:iam::123456789012:role/scheduler' },
    }));
  });
  afterAll(async () => {
    await cloudformation?.send(new DeleteStackCommand({ StackName: STACK }));
  });

  it('shows each alarm\'s state and the dashboard, and takes the allowed age from the deployed schedule (weekly: 170 h)', async () => {
    const run = await runCli(['status', '--json', '--stack', STACK], svc.env);
    expect(run.code, run.stderr).toBe(0);
    expect(run.result).toMatchObject({
      ok: true, maxAgeHours: 170, maxAgeFrom: 'schedule cron(0 3 ? * 1 *) in Europe/Paris',
      stack: { name: STACK, state: 'found', dashboardUrl: expect.stringContaining('#dashboards:name=pg-s3-backup') },
      alarmsInAlarm: [`${STACK}-DeadManAlarm0`],
    });
    expect(run.events.filter((e) => e.event === 'status.alarm')).toEqual([
      expect.objectContaining({ name: `${STACK}-DeadManAlarm0`, state: 'ALARM', reason: 'no BackupSucceeded for ledger in 26 hours' }),
      expect.objectContaining({ name: `${STACK}-ErrorsAlarm`, state: 'OK' }),
    ]);
    expect(run.events.at(-1)!.event).toBe('result');
  });
});
