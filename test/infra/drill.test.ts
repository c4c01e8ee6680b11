/**
 * The restore drill's deployment (issue 13): its function, both layers, its schedule an hour after
 * the backup, its alarms and its role, on the synthesized template. The layers are fixtures (a
 * manifest each), so these tests need no layer build; test/infra/iam.test.ts evaluates the role,
 * test/infra/cdk-cli.test.ts synthesizes with the real layers.
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { App, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sns from 'aws-cdk-lib/aws-sns';
import { AwsSolutionsChecks } from 'cdk-nag';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../infra/app.ts';
import { InfraConfigError, parseConfig } from '../../infra/config.ts';
import { DEAD_MAN_HOURS } from '../../infra/constructs/backup-alerts.ts';
import { BackupBucket } from '../../infra/constructs/backup-bucket.ts';
import { DrillFunction, type DrillFunctionProps } from '../../infra/constructs/drill-function.ts';
import { LayerNotBuiltError } from '../../infra/constructs/pg-dump-layer.ts';
import { FUNCTION_NODE_ENVIRONMENT } from '../../infra/constructs/backup-function.ts';

const SECRET = 'arn:aws:secretsmanager:eu-west-3:123456789012:secret:prod/db-AbCdEf';
const FIXTURES = fileURLToPath(new URL('fixtures/', import.meta.url));
const FIXTURE_ENTRY = 'test/infra/fixtures/handler.ts';
const now = new Date('2026-01-01T00:00:00Z');

interface Synth {
  readonly app: App;
  readonly stack: Stack;
  readonly template: Template;
  readonly resources: Record<string, { Type: string; Properties: Record<string, unknown> }>;
}

function synth(context: Record<string, unknown>, serverLayerDir = resolve(FIXTURES, 'server-layer', String(context.architecture ?? 'arm64'))): Synth {
  const { app, stack } = buildApp({
    context: { dbSecretArn: SECRET, ...context },
    layerDir: resolve(FIXTURES, 'layer', String(context.architecture ?? 'arm64')),
    serverLayerDir,
    entry: FIXTURE_ENTRY,
    drillEntry: FIXTURE_ENTRY,
    now,
  });
  const template = Template.fromStack(stack);
  return { app, stack, template, resources: (template.toJSON() as { Resources: Synth['resources'] }).Resources };
}

function idsOf(s: Synth, type: string, filter: (p: Record<string, unknown>) => boolean = () => true): string[] {
  return Object.entries(s.resources)
    .filter(([, r]) => r.Type === type && filter(r.Properties))
    .map(([id]) => id);
}

function drillFunction(s: Synth): { id: string; props: Record<string, unknown> } {
  const [id, ...more] = idsOf(s, 'AWS::Lambda::Function', (p) => String(p.Description).includes('restore drill'));
  expect(more).toEqual([]);
  return { id: id!, props: s.resources[id!]!.Properties };
}

function drillSchedule(s: Synth): Record<string, unknown> {
  const ids = idsOf(s, 'AWS::Scheduler::Schedule', (p) => String(p.Description).includes('drill'));
  expect(ids).toHaveLength(1);
  return s.resources[ids[0]!]!.Properties;
}

function drillAlarms(s: Synth): Record<string, unknown>[] {
  return idsOf(s, 'AWS::CloudWatch::Alarm', (p) => String(p.AlarmDescription).includes('drill')).map((id) => s.resources[id]!.Properties);
}

function nagViolations(app: App): string[] {
  return new AwsSolutionsChecks().validateScope(app).violations.map((v) => `${v.ruleName} ${v.violatingResources.map((r) => r.constructPath).join(',')}`);
}

function drillAcknowledgements(app: App): string[] {
  return app.node
    .findAll()
    .filter((c) => c.node.path.includes('/Drill/'))
    .flatMap((c) => c.node.metadata.filter((m) => m.type === 'aws:cdk:acknowledged-rules').flatMap((m) => Object.entries(m.data as Record<string, string>).map(([id, reason]) => ({ path: c.node.path, id, reason }))))
    .map(({ path, id, reason }) => {
      expect(reason.length, id).toBeGreaterThan(40);
      return `${path} ${id}`;
    })
    .sort();
}

describe('the default drill (database from the secret, UTC, backup at 02:00)', () => {
  let s: Synth;
  beforeAll(() => {
    s = synth({});
  });

  it('runs lambda/drill-handler with the pg_dump and pg-server layers, 2 GB, 15 minutes, 10 GiB of /tmp, no network', () => {
    const { props } = drillFunction(s);
    const layers = idsOf(s, 'AWS::Lambda::LayerVersion');
    const serverLayer = idsOf(s, 'AWS::Lambda::LayerVersion', (p) => String(p.Description).includes('/opt/pg-server'));
    expect(serverLayer).toHaveLength(1);
    expect(s.resources[serverLayer[0]!]!.Properties).toMatchObject({ CompatibleArchitectures: ['arm64'] });
    expect(String(s.resources[serverLayer[0]!]!.Properties.Description)).toContain('PostgreSQL 18.6 server');
    const dumpLayer = layers.find((l) => l !== serverLayer[0])!;
    expect(props).toMatchObject({
      Architectures: ['arm64'],
      MemorySize: 2048,
      Timeout: 900,
      EphemeralStorage: { Size: 10240 },
      Handler: 'index.handler',
      Layers: [{ Ref: dumpLayer }, { Ref: serverLayer[0] }],
    });
    expect(props.VpcConfig).toBeUndefined();
    s.template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', { FunctionName: { Ref: drillFunction(s).id }, MaximumRetryAttempts: 0 });
  });

  it('gets the engine environment of a bucket reader: no secret, no database list, the layer at /opt/pg-server', () => {
    const bucket = idsOf(s, 'AWS::S3::Bucket', (p) => 'VersioningConfiguration' in p)[0]!;
    expect((drillFunction(s).props.Environment as { Variables: Record<string, unknown> }).Variables).toEqual({
      BACKUP_BUCKET: { Ref: bucket },
      BACKUP_PREFIX: 'pg-s3-backup/',
      ALERT_TOPIC_ARN: { Ref: idsOf(s, 'AWS::SNS::Topic')[0] },
      PG_SERVER_LAYER: '/opt/pg-server',
      ...FUNCTION_NODE_ENVIRONMENT,
    });
  });

  it('schedules the drill every night an hour after the backup, in the same zone', () => {
    expect(drillSchedule(s)).toMatchObject({
      ScheduleExpression: 'cron(0 3 * * ? *)',
      ScheduleExpressionTimezone: 'UTC',
      State: 'ENABLED',
      Target: { Arn: { 'Fn::GetAtt': [drillFunction(s).id, 'Arn'] }, Input: '{}' },
    });
  });

  it('grants reading the prefix, writing only .verify.json reports, listing the prefix, the bucket key and the topic: no secret', () => {
    const role = ((drillFunction(s).props.Role as { 'Fn::GetAtt': string[] })['Fn::GetAtt'])[0];
    const policies = idsOf(s, 'AWS::IAM::Policy', (p) => JSON.stringify(p.Roles) === JSON.stringify([{ Ref: role }]));
    expect(policies).toHaveLength(1);
    const statements = (s.resources[policies[0]!]!.Properties.PolicyDocument as { Statement: Record<string, unknown>[] }).Statement;
    const bucketArn = { 'Fn::GetAtt': [idsOf(s, 'AWS::S3::Bucket', (p) => 'VersioningConfiguration' in p)[0], 'Arn'] };
    const key = (purpose: string) => ({ 'Fn::GetAtt': [idsOf(s, 'AWS::KMS::Key', (p) => String(p.Description).includes(purpose))[0], 'Arn'] });
    expect(statements).toEqual([
      { Sid: 'WriteOwnLogs', Effect: 'Allow', Action: ['logs:CreateLogStream', 'logs:PutLogEvents'], Resource: { 'Fn::GetAtt': [(drillFunction(s).props.LoggingConfig as { LogGroup: { Ref: string } }).LogGroup.Ref, 'Arn'] } },
      { Sid: 'ReadBackups', Effect: 'Allow', Action: 's3:GetObject', Resource: { 'Fn::Join': ['', [bucketArn, '/pg-s3-backup/*']] } },
      { Sid: 'WriteDrillReports', Effect: 'Allow', Action: 's3:PutObject', Resource: { 'Fn::Join': ['', [bucketArn, '/pg-s3-backup/*.verify.json']] } },
      { Sid: 'ListBackups', Effect: 'Allow', Action: 's3:ListBucket', Resource: bucketArn, Condition: { StringLike: { 's3:prefix': ['pg-s3-backup/*'] } } },
      { Sid: 'PublishAlerts', Effect: 'Allow', Action: 'sns:Publish', Resource: { Ref: idsOf(s, 'AWS::SNS::Topic')[0] } },
      { Sid: 'EncryptAlerts', Effect: 'Allow', Action: ['kms:GenerateDataKey', 'kms:Decrypt'], Resource: key('alert') },
      { Sid: 'UseBackupKey', Effect: 'Allow', Action: ['kms:Decrypt', 'kms:GenerateDataKey'], Resource: key('backups') },
    ]);
    expect(JSON.stringify(statements)).not.toMatch(/secretsmanager|ec2:/);
  });

  it('alarms on errors and on no successful invocation in 26 h (the databases are not named), to the alert topic', () => {
    const topic = { Ref: idsOf(s, 'AWS::SNS::Topic')[0] };
    const alarms = drillAlarms(s);
    expect(alarms).toHaveLength(2);
    for (const a of alarms) expect(a).toMatchObject({ AlarmActions: [topic], OKActions: [topic] });
    expect(alarms).toContainEqual(expect.objectContaining({ MetricName: 'Errors', Dimensions: [{ Name: 'FunctionName', Value: { Ref: drillFunction(s).id } }], Threshold: 1, TreatMissingData: 'notBreaching' }));
    expect(alarms).toContainEqual(
      expect.objectContaining({ EvaluationPeriods: DEAD_MAN_HOURS, DatapointsToAlarm: DEAD_MAN_HOURS, TreatMissingData: 'breaching', Metrics: expect.arrayContaining([expect.objectContaining({ Expression: 'FILL(invocations, 0) - FILL(errors, 0)' })]) }),
    );
  });

  it('passes cdk-nag, acknowledging only its own prefix wildcards and its schedule\'s invoke, on its policy and schedule role', () => {
    expect(nagViolations(s.app)).toEqual([]);
    const bucket = idsOf(s, 'AWS::S3::Bucket', (p) => 'VersioningConfiguration' in p)[0]!;
    expect(drillAcknowledgements(s.app)).toEqual(
      [
        `PgS3Backup/Drill/Policy Annotation::AwsSolutions-IAM5[Resource::<${bucket}.Arn>/pg-s3-backup/*]`,
        `PgS3Backup/Drill/Policy Annotation::AwsSolutions-IAM5[Resource::<${bucket}.Arn>/pg-s3-backup/*.verify.json]`,
        `PgS3Backup/Drill/ScheduleRole Annotation::AwsSolutions-IAM5[Resource::<${drillFunction(s).id}.Arn>:*]`,
      ].sort(),
    );
  });

  it('outputs the drill function', () => {
    expect((s.template.toJSON() as { Outputs: Record<string, { Value: unknown }> }).Outputs.DrillFunctionName!.Value).toEqual({ Ref: drillFunction(s).id });
  });
});

describe('the drill with named databases, a zone and the context keys', () => {
  it('drills the named databases with one DrillSucceeded dead-man alarm each (26 one-hour periods, missing = breaching)', () => {
    const s = synth({ databases: ['app', 'my db'], timeZone: 'Europe/Paris', scheduleHour: 3, scheduleMinute: 15, drillMemorySize: 4096, drillEphemeralStorageMiB: 4096, architecture: 'x86_64' });
    const { props } = drillFunction(s);
    expect(props).toMatchObject({ MemorySize: 4096, EphemeralStorage: { Size: 4096 }, Architectures: ['x86_64'] });
    expect((props.Environment as { Variables: Record<string, unknown> }).Variables).toMatchObject({ DATABASES: 'app,my db' });
    expect(drillSchedule(s)).toMatchObject({ ScheduleExpression: 'cron(15 4 * * ? *)', ScheduleExpressionTimezone: 'Europe/Paris' });
    const deadMen = drillAlarms(s).filter((a) => a.MetricName === 'DrillSucceeded');
    expect(deadMen.map((a) => a.Dimensions)).toEqual([[{ Name: 'Database', Value: 'app' }], [{ Name: 'Database', Value: 'my db' }]]);
    for (const a of deadMen) {
      expect(a).toMatchObject({ Namespace: 'PgS3Backup', Statistic: 'Sum', Period: 3600, EvaluationPeriods: DEAD_MAN_HOURS, DatapointsToAlarm: DEAD_MAN_HOURS, ComparisonOperator: 'LessThanThreshold', Threshold: 1, TreatMissingData: 'breaching' });
      // CloudWatch's limit on an alarm's whole range: 7 days.
      expect((a.Period as number) * (a.EvaluationPeriods as number)).toBeLessThanOrEqual(604_800);
    }
    expect(nagViolations(s.app)).toEqual([]);
  });

  it('moves the drill past a DST gap: backup 01:30 in Europe/Paris, drill 03:30 (02:30 is skipped on the spring-forward night)', () => {
    expect(parseConfig({ dbSecretArn: SECRET, timeZone: 'Europe/Paris', scheduleHour: 1, scheduleMinute: 30 }, { now }).drill).toMatchObject({ hour: 3, minute: 30, frequency: 'nightly' });
    // With allowDstSkip the operator accepted a skipped night: an hour after, gap or not.
    expect(parseConfig({ dbSecretArn: SECRET, timeZone: 'Europe/Paris', scheduleHour: 1, scheduleMinute: 30, allowDstSkip: true }, { now }).drill).toMatchObject({ hour: 2, minute: 30 });
    // Past midnight.
    expect(parseConfig({ dbSecretArn: SECRET, scheduleHour: 23, scheduleMinute: 45 }, { now }).drill).toMatchObject({ hour: 0, minute: 45 });
  });

  it('runs weekly on Sundays without a dead-man alarm (CloudWatch looks back 7 days at most), and says so', () => {
    const s = synth({ databases: ['app'], drillSchedule: 'weekly' });
    expect(drillSchedule(s)).toMatchObject({ ScheduleExpression: 'cron(0 3 ? * SUN *)' });
    expect(drillAlarms(s).map((a) => a.MetricName)).toEqual(['Errors']);
    Annotations.fromStack(s.stack).hasWarning('/PgS3Backup/Drill', Match.stringLikeRegexp('drillSchedule=weekly: no dead-man alarm'));
  });

  it('drills every database in the bucket when the backup discovers them on the server (databases=*)', () => {
    // runner=auto: with runner=lambda, databases=* fails cdk-nag on main already (the fan-out's X-Ray `*`, acknowledged only with Fargate).
    const s = synth({ databases: '*', runner: 'auto', vpcId: 'vpc-0123456789abcdef0', subnetIds: ['subnet-0123456789abcdef0'] });
    expect((drillFunction(s).props.Environment as { Variables: Record<string, unknown> }).Variables.DATABASES).toBeUndefined();
    expect(drillFunction(s).props.VpcConfig).toBeUndefined();
    expect(nagViolations(s.app)).toEqual([]);
  });

  it('deploys no drill with drillSchedule=off, and then needs no pg-server layer', () => {
    const s = synth({ drillSchedule: 'off' }, resolve(FIXTURES, 'no-such-layer'));
    expect(idsOf(s, 'AWS::Lambda::Function')).toHaveLength(1);
    expect(idsOf(s, 'AWS::Lambda::LayerVersion')).toHaveLength(1);
    expect(idsOf(s, 'AWS::Scheduler::Schedule')).toHaveLength(1);
  });

  it('fails with the build command when the pg-server layer is missing or built for another architecture', () => {
    const missing = resolve(FIXTURES, 'no-such-layer');
    expect(() => synth({}, missing)).toThrow(
      new LayerNotBuiltError(
        `the pg-server layer for arm64 (the restore drill's throwaway PostgreSQL) is not built (no ${resolve(missing, 'pg-server', 'manifest.json')}): run \`npm run build:layer:server -- arm64\` first, or set drillSchedule=off`,
      ),
    );
    expect(() => synth({}, resolve(FIXTURES, 'server-layer', 'x86_64'))).toThrow(/describes a x86_64 layer but the drill function runs on arm64: run `npm run build:layer:server -- arm64`/);
  });

  it('validates its context keys, naming each', () => {
    const problems = (context: Record<string, unknown>): string => {
      try {
        parseConfig({ dbSecretArn: SECRET, ...context }, { now });
      } catch (err) {
        expect(err).toBeInstanceOf(InfraConfigError);
        return (err as Error).message;
      }
      throw new Error('expected an InfraConfigError');
    };
    const message = problems({ drillSchedule: 'monthly', drillEphemeralStorageMiB: 100, drillMemorySize: 1024 });
    expect(message).toContain('context "drillSchedule": expected `nightly`, `weekly` or `off`');
    expect(message).toContain('context "drillEphemeralStorageMiB": expected an integer from 512 to 10240');
    expect(message).toContain('context "drillMemorySize": expected an integer from 2048 to 10240');
    expect(parseConfig({ dbSecretArn: SECRET, drillEphemeralStorageMiB: '2048', drillSchedule: 'weekly' }, { now }).drill).toMatchObject({ ephemeralStorageMiB: 2048, memorySize: 2048, frequency: 'weekly' });
    expect(parseConfig({ dbSecretArn: SECRET }, { now }).drill).toEqual({ frequency: 'nightly', hour: 3, minute: 0, timeZone: 'UTC', ephemeralStorageMiB: 10240, memorySize: 2048 });
    expect(parseConfig({ dbSecretArn: SECRET, drillSchedule: 'off' }, { now }).drill).toBeUndefined();
    // Encrypted backups without an identity secret: no drill by default, and none on request (naming the key to set).
    const recipient = 'age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p';
    expect(parseConfig({ dbSecretArn: SECRET, encryptRecipients: recipient }, { now }).drill).toBeUndefined();
    expect(problems({ encryptRecipients: recipient, drillSchedule: 'nightly' })).toMatch(/context "drillSchedule": the drill function cannot restore encrypted backups without their age identity .*set "drillIdentitySecretArn"/);
    // With one: the drill is on by default, and on request.
    const identity = 'arn:aws:secretsmanager:eu-west-3:123456789012:secret:prod/age-identity-Q1w2E3';
    const key = 'arn:aws:kms:eu-west-3:123456789012:key/0b7f2f4e-1111-2222-3333-444455556666';
    expect(parseConfig({ dbSecretArn: SECRET, encryptRecipients: recipient, drillIdentitySecretArn: identity }, { now }).drill).toMatchObject({ frequency: 'nightly', identitySecret: { arn: identity } });
    expect(parseConfig({ dbSecretArn: SECRET, encryptRecipients: recipient, drillIdentitySecretArn: identity, drillIdentitySecretKmsKeyArn: key, drillSchedule: 'weekly' }, { now }).drill).toMatchObject({ frequency: 'weekly', identitySecret: { arn: identity, kmsKeyArn: key } });
    expect(problems({ drillIdentitySecretKmsKeyArn: key })).toContain('context "drillIdentitySecretKmsKeyArn" is the key of "drillIdentitySecretArn"');
    expect(problems({ drillIdentitySecretArn: identity, drillSchedule: 'off' })).toContain('context "drillIdentitySecretArn" is for the drill function, but drillSchedule=off');
  });
});

describe('the DrillFunction construct on its own', () => {
  function props(stack: Stack, overrides: Partial<DrillFunctionProps>): DrillFunctionProps {
    const layer = lambda.LayerVersion.fromLayerVersionArn(stack, `L${Math.random()}`, 'arn:aws:lambda:eu-west-3:123456789012:layer:x:1');
    return {
      entry: FIXTURE_ENTRY,
      architecture: 'arm64',
      pgDumpLayer: layer,
      serverLayer: layer,
      bucket: new BackupBucket(stack, `B${Math.random()}`, { prefix: 'p/', existingBucketName: 'my-backups' }),
      databases: [],
      topic: sns.Topic.fromTopicArn(stack, `T${Math.random()}`, 'arn:aws:sns:eu-west-3:123456789012:t'),
      topicKey: kms.Key.fromKeyArn(stack, `K${Math.random()}`, 'arn:aws:kms:eu-west-3:123456789012:key/0b7f2f4e-1111-2222-3333-444455556666'),
      logRetentionDays: 30,
      schedule: { frequency: 'nightly', hour: 3, minute: 0, timeZone: 'UTC' },
      ...overrides,
    };
  }

  it('rejects inconsistent props, naming every one', () => {
    const stack = new Stack(new App());
    expect(() => new DrillFunction(stack, 'D', props(stack, { memorySize: 1024, ephemeralStorageMiB: 20000, databases: ['*'], schedule: { frequency: 'nightly', hour: 24, minute: 0, timeZone: 'UTC' } }))).toThrow(
      /memorySize must be a whole number of MB from 2048 to 10240 \(got 1024\); ephemeralStorageMiB must be a whole number from 512 to 10240 \(got 20000\); schedule.hour and schedule.minute must be a time of day \(got 24:0\); databases must name databases/,
    );
    expect(() => new DrillFunction(stack, 'E', props(stack, { databases: ['app', 'app'] }))).toThrow(/databases must name each database once/);
  });
});
