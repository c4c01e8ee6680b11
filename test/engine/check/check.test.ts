/**
 * `pg-s3-backup doctor` and the function's check mode (`{"check": true}`), end to end: a real
 * PostgreSQL 18 with a backup role that lacks what pg_dump needs (large objects, a table with
 * row-level security; another role without any table), moto for S3 (versioned bucket), SNS,
 * Secrets Manager, CloudFormation, CloudWatch and Scheduler. What moto cannot do is injected: the
 * Lambda Invoke runs the real handler in this process (moto runs code only through Docker), and
 * CloudWatch's alarm actions and their history (moto has no DescribeAlarmHistory) are simulated by
 * a wrapper that publishes to the alarm's topic in moto, as CloudWatch would, and records it.
 */
import { CloudFormationClient, CreateStackCommand, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { CloudWatchClient, DescribeAlarmsCommand, DescribeAlarmHistoryCommand, PutMetricAlarmCommand, SetAlarmStateCommand, type AlarmHistoryItem } from '@aws-sdk/client-cloudwatch';
import { InvokeCommand } from '@aws-sdk/client-lambda';
import { ListObjectVersionsCommand, PutBucketVersioningCommand } from '@aws-sdk/client-s3';
import { CreateScheduleCommand, SchedulerClient, UpdateScheduleCommand } from '@aws-sdk/client-scheduler';
import { ListSubscriptionsByTopicCommand, PublishCommand, SubscribeCommand } from '@aws-sdk/client-sns';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../../cli/main.ts';
import type { DoctorClients } from '../../../cli/doctor-aws.ts';
import type { Check } from '../../../engine/check/check.ts';
import { runChecks } from '../../../engine/check/run-checks.ts';
import { loadConfig } from '../../../engine/config.ts';
import { createDeps } from '../../../engine/deps.ts';
import { RequestError } from '../../../engine/errors.ts';
import { silentLog, type MetricsSink, lambdaDeps } from '../../../lambda/powertools.ts';
import { createHandler } from '../../../lambda/handler.ts';
import { awsEnv, createAlertInbox, createSecret, listMultipartUploads, TEST_REGION, type AlertInbox, type TestClients } from '../../support/aws.ts';
import { createDatabase, loadSampleData, writeFakePgDump } from '../../support/fixtures.ts';
import type { TestAws } from '../../support/moto.ts';
import type { TestPostgres } from '../../support/postgres.ts';
import { startBackupServices } from '../../support/services.ts';
import { baseEnv, expectNoSecret, runCli, resultOf } from '../../support/cli.ts';

const READER_PASSWORD = `rëader 'pw' "x" ${'%'}20`;
const credentials = { accessKeyId: 'testing', secretAccessKey: 'testing' };

let pgsrv: TestPostgres;
let aws: TestAws;
let c: TestClients;
let layer: string;
let bucket: string;
let inbox: AlertInbox;
let env: Record<string, string>;

const userUrl = (user: string, password: string) => `postgresql://${encodeURIComponent(user)}:${encodeURIComponent(password)}@${pgsrv.host}:${pgsrv.port}/app`;
const byName = (checks: readonly Check[]) => Object.fromEntries(checks.map((ch) => [ch.name, ch]));
const failed = (checks: readonly Check[]) => checks.filter((ch) => !ch.ok).map((ch) => ch.name);

beforeAll(async () => {
  ({ pg: pgsrv, aws, layer, c, bucket } = await startBackupServices());
  // Versioned, like the stack's bucket: the probe must leave no version and no delete marker.
  await c.s3.send(new PutBucketVersioningCommand({ Bucket: bucket, VersioningConfiguration: { Status: 'Enabled' } }));
  inbox = await createAlertInbox(c);
  await createDatabase(pgsrv, 'app');
  await loadSampleData(pgsrv, 'app', 200);
  await pgsrv.query(
    `create table secrets (id int primary key, v text);
     insert into secrets values (1, 'only for some');
     alter table secrets enable row level security;
     create policy own_rows on secrets using (v = current_user);`,
    [],
    'app',
  );
  // The role the README used to recommend: pg_read_all_data reads every table, but neither the
  // large objects nor a table whose row-level security applies to it.
  await pgsrv.query(`create role reader login password '${READER_PASSWORD.replace(/'/g, "''")}'; grant pg_read_all_data to reader;`);
  await pgsrv.query(`create role nobody login password 'nobody-pw'`);
  env = {
    ...baseEnv(),
    ...awsEnv(aws.endpoint),
    BACKUP_BUCKET: bucket,
    ALERT_TOPIC_ARN: inbox.topicArn,
    PG_DUMP_BIN: join(layer, 'bin', 'pg_dump'),
  };
});
afterAll(async () => {
  await Promise.all([pgsrv?.stop(), aws?.stop()]);
});

async function leftovers(): Promise<{ versions: string[]; uploads: string[] }> {
  const res = await c.s3.send(new ListObjectVersionsCommand({ Bucket: bucket }));
  return {
    versions: [...(res.Versions ?? []), ...(res.DeleteMarkers ?? [])].map((v) => v.Key!).filter((k) => k.includes('_check/')),
    uploads: await listMultipartUploads(c, bucket),
  };
}

describe('doctor --local (the engine checks with the CLI configuration)', () => {
  it('finds the large objects and the row-level security pg_dump fails on, passes once granted; the probe leaves nothing behind', async () => {
    const readerEnv: Record<string, string> = { ...env, DATABASE_URL: userUrl('reader', READER_PASSWORD) };
    const run = await runCli(['doctor', '--local', '--json'], readerEnv);
    expect(run.code, run.stderr).toBe(1);
    const doc = resultOf<{ ok: boolean; mode: string; checks: Check[] }>(run);
    expect(doc).toMatchObject({ ok: false, mode: 'local' });
    const checks = byName(doc.checks);
    expect(failed(doc.checks)).toEqual(['database "app": row-level security', 'database "app": large objects readable']);
    expect(checks['database "app": row-level security']!.detail).toContain('public.secrets');
    expect(checks['database "app": row-level security']!.fix).toContain('ALTER ROLE reader BYPASSRLS');
    expect(checks['database "app": large objects readable']!.detail).toMatch(/cannot read 2 of 2 large object/);
    expect(checks['database "app": large objects readable']!.fix).toMatch(/GRANT SELECT ON LARGE OBJECT \d+ TO reader;/);
    expect(checks['database "app": every table readable']).toMatchObject({ ok: true });
    expect(checks['database "app": reachable']!.detail).toMatch(/as "reader" \(sslmode prefer, without TLS\); PostgreSQL 18/);
    expect(checks['pg_dump: runs']!.detail).toMatch(/^pg_dump 18/);
    for (const name of ['bucket: write (If-None-Match, SHA-256 checksum)', 'bucket: never overwrites (If-None-Match)', 'bucket: read back (checksum)', 'bucket: list under the prefix', 'bucket: multipart upload started and aborted', 'bucket: delete the probe', 'alerts: publish to the topic']) {
      expect(checks[name], name).toMatchObject({ ok: true, status: 'ok' });
    }
    expect(checks['bucket: delete the probe']!.detail).toContain('every version');
    expect(await leftovers()).toEqual({ versions: [], uploads: [] });
    const messages = await inbox.receive(1, 10_000);
    expect(messages).toEqual([expect.objectContaining({ subject: '[pg-s3-backup] CHECK: test message, no action needed', message: expect.stringContaining('not a failure') })]);
    expectNoSecret(run, READER_PASSWORD);

    // What the check predicted is what pg_dump does.
    const { ALERT_TOPIC_ARN: _topic, ...quietEnv } = readerEnv;
    const backup = await runCli(['backup'], quietEnv);
    expect(backup.code).toBe(1);
    expect(JSON.stringify(backup.result)).toMatch(/row-level security|large object/);

    const oids = (await pgsrv.query<{ oid: string }>('select oid::text from pg_largeobject_metadata', [], 'app')).map((r) => r.oid);
    await pgsrv.query(`alter role reader bypassrls; ${oids.map((o) => `grant select on large object ${o} to reader;`).join(' ')}`, [], 'app');
    const fixed = await runCli(['doctor', '--local'], quietEnv);
    expect(fixed.code, fixed.stdout).toBe(0);
    expect(fixed.stdout).toContain('✓ database "app": large objects readable: role reader can read all 2 large object(s)');
    expect(fixed.stdout).toContain('✓ database "app": row-level security: role reader is not subject to row-level security (BYPASSRLS)');
    expect(fixed.stdout).toMatch(/! alerts: publish to the topic: ALERT_TOPIC_ARN is not set/);
    expect(fixed.stdout).toMatch(/\d+ checks: \d+ passed, 1 warning\(s\), 0 failed\n$/);
    expect((await runCli(['backup'], quietEnv)).code).toBe(0);
    expectNoSecret(fixed, READER_PASSWORD);
  });

  it('names the tables a role without privileges cannot read, and what fails before the database', async () => {
    const config = loadConfig({ ...env, DATABASE_URL: userUrl('nobody', 'nobody-pw') });
    const deps = createDeps(config, lambdaDeps({ s3: c.s3, secrets: c.secrets, sns: c.sns, log: silentLog }));
    const nobody = byName((await runChecks({}, config, deps, { source: 'test' })).checks);
    expect(nobody['database "app": every table readable']).toMatchObject({ ok: false, fix: expect.stringContaining('GRANT pg_read_all_data TO nobody;') });
    expect(nobody['database "app": every table readable']!.detail).toMatch(/cannot read 7 of 7 table\(s\) and sequence\(s\): public\."Odd ""Table"" ñame", public\.customers, .* and 2 more; pg_dump would stop/);
    expect(nobody['database "app": row-level security']).toMatchObject({ ok: false });

    const badConfig = loadConfig({ ...env, DATABASE_URL: userUrl('nobody', 'wrong'), PG_DUMP_BIN: '/nonexistent/pg_dump' });
    const bad = await runChecks({}, badConfig, createDeps(badConfig, lambdaDeps({ s3: c.s3, secrets: c.secrets, sns: c.sns, log: silentLog })), { source: 'test' });
    const b = byName(bad.checks);
    expect(bad.ok).toBe(false);
    expect(b['pg_dump: runs']).toMatchObject({ ok: false, fix: expect.stringContaining('PG_DUMP_BIN') });
    expect(b['database "app": reachable']).toMatchObject({ ok: false, detail: expect.stringMatching(/password authentication failed/), fix: expect.stringContaining('password') });
    expect(b['database "app": server version vs pg_dump']!.detail).toMatch(/^not checked/);
    expect(b['database "app": privileges']!.detail).toMatch(/^not checked/);
    expect(b['bucket: write (If-None-Match, SHA-256 checksum)']).toMatchObject({ ok: true });
    expect(JSON.stringify(bad)).not.toContain('wrong@');

    // node-postgres got through, pg_dump (libpq: its own TLS and password handling) does not.
    const dir = mkdtempSync(join(tmpdir(), 'pgs3b-doctor-'));
    try {
      const fake = writeFakePgDump(dir, `echo "pg_dump: error: connection to server at $PGHOST failed: SSL error: certificate verify failed" >&2; exit 1`);
      const libpqConfig = loadConfig({ ...env, DATABASE_URL: pgsrv.urlFor('app'), PG_DUMP_BIN: fake });
      const libpq = byName((await runChecks({}, libpqConfig, createDeps(libpqConfig, lambdaDeps({ s3: c.s3, secrets: c.secrets, sns: c.sns, log: silentLog })), { source: 'test' })).checks);
      expect(libpq['database "app": reachable']).toMatchObject({ ok: true });
      expect(libpq['database "app": pg_dump connects (libpq)']).toMatchObject({
        ok: false,
        detail: expect.stringMatching(/^pg_dump failed: exit code 1 \(pg_dump reported an error\): pg_dump: error: connection to server at 127\.0\.0\.1 failed: SSL error: certificate verify failed$/),
        fix: expect.stringMatching(/sslmode/),
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    await inbox.receive(3, 10_000);
  });
});

/** The deployed function, run in this process on the test services. */
function functionEnv(secretArn: string): Record<string, string> {
  return { DB_SECRET_ID: secretArn, BACKUP_BUCKET: bucket, ALERT_TOPIC_ARN: inbox.topicArn, DATABASES: 'app', PG_DUMP_BIN: join(layer, 'bin', 'pg_dump'), S3_FORCE_PATH_STYLE: 'true' };
}

describe('the function in check mode ({"check": true})', () => {
  it('answers with the checks, takes no backup, counts no success, publishes only its test message', async () => {
    await inbox.receive(10, 1000);
    const secretArn = await createSecret(c, { engine: 'postgres', host: pgsrv.host, port: pgsrv.port, username: pgsrv.user, password: pgsrv.password, dbname: 'app' });
    const finished: unknown[] = [];
    const metrics: MetricsSink = { backupFinished: (m) => void finished.push(m) };
    const handler = createHandler(functionEnv(secretArn), { s3: c.s3, secrets: c.secrets, sns: c.sns, log: silentLog, metrics });
    const context = { awsRequestId: 'req-check', getRemainingTimeInMillis: () => 600_000 };
    const result = await handler({ check: true }, context);
    expect(failed(result.checks)).toEqual([]);
    expect(result).toMatchObject({ status: 'checked', ok: true });
    expect(byName(result.checks)['credentials: secret readable']!.detail).toContain(secretArn);
    expect(finished).toEqual([]);
    expect(await leftovers()).toEqual({ versions: [], uploads: [] });
    const messages = await inbox.receive(1, 10_000);
    expect(messages.map((m) => m.subject)).toEqual(['[pg-s3-backup] CHECK: test message, no action needed']);
    expect(messages[0]!.message).toContain('function req-check');
    expect(JSON.stringify(result)).not.toContain(pgsrv.password);

    await expect(handler({ check: true, reason: 'x' } as never, context)).rejects.toThrow(RequestError);
    await expect(handler({ check: 'yes' } as never, context)).rejects.toThrow(/invalid check event: check/);
    const { BACKUP_BUCKET: _b, ...noBucket } = functionEnv(secretArn);
    const broken = await createHandler(noBucket, { s3: c.s3, secrets: c.secrets, sns: c.sns, log: silentLog })({ check: true }, context);
    expect(broken).toMatchObject({ status: 'checked', ok: false, checks: [{ name: 'configuration', ok: false, detail: expect.stringContaining('BACKUP_BUCKET is required') }] });
    expect(await inbox.receive(1, 2000)).toEqual([]);
  });
});

describe('doctor (the deployed stack, from the operator\'s machine)', () => {
  const STACK = 'PgS3BackupTest';
  const FUNCTION = 'PgS3BackupTest-BackupFunction-AbC';
  const SCHEDULE = 'PgS3BackupTest-Nightly';
  const common = { region: TEST_REGION, credentials };
  let clients: DoctorClients;
  let alarmHistory: Map<string, AlarmHistoryItem[]>;
  let failDelivery: Set<string>;
  let topicArn: string;

  beforeAll(async () => {
    const secretArn = await createSecret(c, { host: pgsrv.host, port: pgsrv.port, username: pgsrv.user, password: pgsrv.password, dbname: 'app' });
    const cloudformation = new CloudFormationClient({ ...common, endpoint: aws.endpoint });
    const cloudwatch = new CloudWatchClient({ ...common, endpoint: aws.endpoint });
    const scheduler = new SchedulerClient({ ...common, endpoint: aws.endpoint });
    await cloudformation.send(new CreateStackCommand({
      StackName: STACK,
      TemplateBody: JSON.stringify({
        // moto's CloudFormation creates no alarms: they are made below, notifying the stack's topic.
        Resources: { Topic: { Type: 'AWS::SNS::Topic', Properties: {} } },
        Outputs: {
          BucketName: { Value: bucket }, BackupPrefix: { Value: 'pg-s3-backup/' }, FunctionName: { Value: FUNCTION },
          AlertTopicArn: { Value: { Ref: 'Topic' } }, ScheduleName: { Value: SCHEDULE },
        },
      }),
    }));
    topicArn = (await cloudformation.send(new DescribeStacksCommand({ StackName: STACK }))).Stacks![0]!.Outputs!.find((o) => o.OutputKey === 'AlertTopicArn')!.OutputValue!;
    for (const metric of ['Errors', 'Duration']) {
      await cloudwatch.send(new PutMetricAlarmCommand({
        AlarmName: `${STACK}-${metric}Alarm`, Namespace: 'AWS/Lambda', MetricName: metric, Statistic: 'Sum', Period: 300, EvaluationPeriods: 1, Threshold: 1,
        ComparisonOperator: 'GreaterThanOrEqualToThreshold', AlarmActions: [topicArn], OKActions: [topicArn],
      }));
    }
    // The topic's readers: the test inbox's queue, and an e-mail address AWS has not seen confirmed.
    const inboxQueue = (await c.sns.send(new ListSubscriptionsByTopicCommand({ TopicArn: inbox.topicArn }))).Subscriptions![0]!.Endpoint!;
    await c.sns.send(new SubscribeCommand({ TopicArn: topicArn, Protocol: 'sqs', Endpoint: inboxQueue }));
    await c.sns.send(new SubscribeCommand({ TopicArn: topicArn, Protocol: 'email', Endpoint: 'ops@example.com' }));
    await scheduler.send(new CreateScheduleCommand({
      Name: SCHEDULE,
      ScheduleExpression: 'cron(0 3 * * ? *)',
      ScheduleExpressionTimezone: 'Europe/Paris',
      FlexibleTimeWindow: { Mode: 'OFF' },
      Target: { Arn: `arn:aws:lambda:${TEST_REGION}:123456789012:function:${FUNCTION}`, RoleArn: 'arn:aws:iam::123456789012:role/scheduler' },
    }));

    const handler = createHandler({ ...functionEnv(secretArn), ALERT_TOPIC_ARN: topicArn }, { s3: c.s3, secrets: c.secrets, sns: c.sns, log: silentLog });
    alarmHistory = new Map();
    failDelivery = new Set();
    clients = {
      cloudformation,
      scheduler,
      // moto has no DescribeAlarmHistory and runs no alarm actions: do what CloudWatch does.
      cloudwatch: {
        send: (async (command: unknown) => {
          if (command instanceof DescribeAlarmHistoryCommand) {
            return { AlarmHistoryItems: alarmHistory.get(command.input.AlarmName!) ?? [] };
          }
          const res = await cloudwatch.send(command as never);
          if (command instanceof SetAlarmStateCommand) {
            const name = command.input.AlarmName!;
            const a = (await cloudwatch.send(new DescribeAlarmsCommand({ AlarmNames: [name] }))).MetricAlarms![0]!;
            const actions = command.input.StateValue === 'ALARM' ? a.AlarmActions : command.input.StateValue === 'OK' ? a.OKActions : [];
            for (const action of actions ?? []) {
              const ok = !failDelivery.has(name);
              if (ok) await c.sns.send(new PublishCommand({ TopicArn: action, Subject: `${command.input.StateValue}: "${name}"`, Message: command.input.StateReason! }));
              const items = alarmHistory.get(name) ?? [];
              items.unshift({
                AlarmName: name, Timestamp: new Date(), HistoryItemType: 'Action',
                HistorySummary: `${ok ? 'Successfully executed' : 'Failed to execute'} action ${action}`,
                HistoryData: JSON.stringify(ok ? { actionState: 'Succeeded', notificationResource: action } : { actionState: 'Failed', notificationResource: action, error: 'CloudWatch Alarms does not have authorization to access the SNS topic encryption key.' }),
              });
              alarmHistory.set(name, items);
            }
          }
          return res;
        }) as never,
      },
      // moto confirms e-mail subscriptions at once; AWS waits for the link to be followed.
      sns: {
        send: (async (command: unknown) => {
          const res = (await c.sns.send(command as never)) as { Subscriptions?: { Protocol?: string; SubscriptionArn?: string }[] };
          if (command instanceof ListSubscriptionsByTopicCommand) {
            for (const s of res.Subscriptions ?? []) if (s.Protocol === 'email') s.SubscriptionArn = 'PendingConfirmation';
          }
          return res;
        }) as never,
      },
      // moto runs function code only through Docker: the real handler runs here instead.
      lambda: {
        send: (async (command: unknown) => {
          if (!(command instanceof InvokeCommand) || command.input.FunctionName !== FUNCTION) throw Object.assign(new Error('Function not found'), { name: 'ResourceNotFoundException' });
          const event = JSON.parse(Buffer.from(command.input.Payload as Uint8Array).toString('utf8')) as never;
          const result = await handler(event, { awsRequestId: 'req-doctor', getRemainingTimeInMillis: () => 600_000 });
          return { StatusCode: 200, Payload: Buffer.from(JSON.stringify(result)) };
        }) as never,
      },
    };
  });

  async function doctor(args: string[], now = Date.parse('2026-12-02T10:00:00Z')): Promise<{ code: number; stdout: string; stderr: string }> {
    let stdout = '';
    let stderr = '';
    const t0 = Date.now();
    const code = await main(['doctor', '--stack', STACK, '--alarm-timeout', '20', ...args], {
      stdout: { write: (s: string) => (stdout += s) },
      stderr: { write: (s: string) => (stderr += s) },
      env: {},
      // A moving clock from a fixed instant: the next run is known, the alarm wait still ends.
      now: () => now + (Date.now() - t0),
      aws: clients,
    });
    return { code, stdout, stderr };
  }

  it('checks outputs, the function, subscriptions (e-mail pending: a warning), every alarm\'s delivery and the next run', async () => {
    await inbox.receive(10, 1000);
    const res = await doctor(['--json']);
    expect(res.code, res.stdout + res.stderr).toBe(0);
    const doc = resultOf<{ ok: boolean; mode: string; stack: string; checks: Check[] }>(res);
    expect(doc).toMatchObject({ ok: true, mode: 'deployed', stack: STACK });
    const checks = byName(doc.checks);
    expect(checks[`stack ${STACK}: outputs found`]).toMatchObject({ ok: true, detail: expect.stringContaining(`FunctionName ${FUNCTION}`) });
    expect(checks['function: database "app": large objects readable']).toMatchObject({ ok: true });
    expect(checks['function: bucket: delete the probe']).toMatchObject({ ok: true });
    expect(checks['alerts: email subscription ops@example.com']).toMatchObject({ ok: true, status: 'warn', fix: expect.stringContaining('Subscription Confirmation') });
    const alarms = doc.checks.filter((ch) => ch.name.startsWith('alarm '));
    expect(alarms).toHaveLength(2);
    for (const a of alarms) expect(a).toMatchObject({ ok: true, detail: expect.stringContaining(`Successfully executed action ${topicArn}`) });
    expect(checks['schedule: enabled, next run']).toMatchObject({
      ok: true,
      detail: expect.stringContaining('cron(0 3 * * ? *) in Europe/Paris; next run 2026-12-03 03:00 Europe/Paris (2026-12-03 02:00 UTC), in 16 h 00 min'),
    });
    // Delivered for real: the function's test message and one notification per alarm.
    const subjects = (await inbox.receive(3, 10_000)).map((m) => m.subject).sort();
    expect(subjects).toEqual(expect.arrayContaining(['[pg-s3-backup] CHECK: test message, no action needed']));
    expect(subjects.filter((s) => s.startsWith('ALARM: '))).toHaveLength(2);
  });

  it('fails, saying what to do, when an alarm cannot deliver, the schedule is disabled or the stack is missing', async () => {
    const broken = `${STACK}-ErrorsAlarm`;
    failDelivery.add(broken);
    await clients.scheduler.send(new UpdateScheduleCommand({
      Name: SCHEDULE, State: 'DISABLED', ScheduleExpression: 'cron(0 3 * * ? *)', ScheduleExpressionTimezone: 'Europe/Paris', FlexibleTimeWindow: { Mode: 'OFF' },
      Target: { Arn: `arn:aws:lambda:${TEST_REGION}:123456789012:function:${FUNCTION}`, RoleArn: 'arn:aws:iam::123456789012:role/scheduler' },
    }));
    const res = await doctor([]);
    expect(res.code).toBe(1);
    expect(res.stdout).toContain(`✗ alarm ${broken}: notification delivered: CloudWatch could not publish to the alert topic: Failed to execute action ${topicArn}`);
    expect(res.stdout).toMatch(/what to do: The topic policy must allow cloudwatch\.amazonaws\.com/);
    expect(res.stdout).toContain(`✗ schedule: enabled, next run: schedule ${SCHEDULE} is DISABLED: no backup runs tonight`);
    expect(res.stdout).toContain('! alerts: email subscription ops@example.com: pending confirmation');
    expect(res.stdout).toContain('✓ function: database "app": row-level security');
    expect(res.stdout).toMatch(/\d+ checks: \d+ passed, 1 warning\(s\), 2 failed/);

    const none = await doctor(['--stack', 'NoSuchStack', '--no-alarm-test', '--json']);
    expect(none.code).toBe(1);
    const doc = resultOf<{ checks: Check[] }>(none);
    expect(doc.checks[0]).toMatchObject({ name: 'stack NoSuchStack: outputs found', ok: false, fix: expect.stringContaining('--stack') });
    expect(doc.checks.slice(1).every((ch) => ch.detail.startsWith('not checked'))).toBe(true);
    await inbox.receive(10, 1000);
  });

  it('exits 2 on usage errors', async () => {
    expect((await doctor(['--local', '--function', 'f'])).code).toBe(2);
    expect((await doctor(['--database', 'app'])).code).toBe(2);
    expect((await doctor(['--alarm-timeout', 'soon'])).code).toBe(2);
  });
});
