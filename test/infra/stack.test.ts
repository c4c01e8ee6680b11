/**
 * Targeted assertions on the synthesized template, one synth per configuration shape, shared by
 * every assertion about it (bundling costs about a second per synth). The layer is a small
 * fixture so that these tests do not depend on the layer build; cdk-cli.test.ts synthesizes the
 * real app with the real layer.
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { App } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../infra/app.ts';
import { DEAD_MAN_HOURS } from '../../infra/constructs/backup-alerts.ts';
import { LayerNotBuiltError } from '../../infra/constructs/pg-dump-layer.ts';
import { FUNCTION_NODE_ENVIRONMENT } from '../../infra/constructs/backup-function.ts';

const SECRET = 'arn:aws:secretsmanager:eu-west-3:123456789012:secret:prod/db-AbCdEf';
const FIXTURES = fileURLToPath(new URL('fixtures/', import.meta.url));
const FIXTURE_LAYER = (arch: string) => resolve(FIXTURES, 'layer', arch);
const FIXTURE_ENTRY = 'test/infra/fixtures/handler.ts';
const now = new Date('2026-01-01T00:00:00Z');

interface Synth {
  readonly app: App;
  readonly template: Template;
  readonly json: { Resources: Record<string, { Type: string; Properties: Record<string, unknown> }>; Outputs: Record<string, { Value: unknown }> };
}

function synth(context: Record<string, unknown>, options: { entry?: string; arch?: string } = {}): Synth {
  const { app, stack } = buildApp({
    // The drill function has its own file (drill.test.ts): these assertions are about the backup.
    context: { dbSecretArn: SECRET, drillSchedule: 'off', ...context },
    layerDir: FIXTURE_LAYER(options.arch ?? 'arm64'),
    now,
    entry: options.entry ?? FIXTURE_ENTRY,
  });
  const template = Template.fromStack(stack);
  return { app, template, json: template.toJSON() as Synth['json'] };
}

function resourcesOf(s: Synth, type: string): { id: string; props: Record<string, unknown> }[] {
  return Object.entries(s.json.Resources)
    .filter(([, r]) => r.Type === type)
    .map(([id, r]) => ({ id, props: r.Properties }));
}

function logicalId(s: Synth, type: string): string {
  const all = resourcesOf(s, type);
  expect(all, type).toHaveLength(1);
  return all[0]!.id;
}

/** The backup bucket (the other one holds its access logs). */
function backupBucketId(s: Synth): string {
  return resourcesOf(s, 'AWS::S3::Bucket').find((b) => 'VersioningConfiguration' in b.props)!.id;
}

/** The KMS key whose description mentions `purpose` ('backups' or 'alert'). */
function keyId(s: Synth, purpose: string): string {
  return resourcesOf(s, 'AWS::KMS::Key').find((k) => String(k.props.Description).includes(purpose))!.id;
}

/** Every IAM statement of every inline policy attached to the backup function's role. */
function functionStatements(s: Synth): Record<string, unknown>[] {
  const fn = resourcesOf(s, 'AWS::Lambda::Function')[0]!;
  const roleId = ((fn.props.Role as { 'Fn::GetAtt': string[] })['Fn::GetAtt'])[0];
  return resourcesOf(s, 'AWS::IAM::Policy')
    .filter((p) => JSON.stringify(p.props.Roles) === JSON.stringify([{ Ref: roleId }]))
    // The construct's own policy first, then the role's default policy (grants made by CDK).
    .sort((a, b) => Number(a.id.includes('DefaultPolicy')) - Number(b.id.includes('DefaultPolicy')))
    .flatMap((p) => (p.props.PolicyDocument as { Statement: Record<string, unknown>[] }).Statement);
}

function nagViolations(app: App): string[] {
  return new AwsSolutionsChecks().validateScope(app).violations.map((v) => `${v.ruleName} ${v.violatingResources.map((r) => r.constructPath).join(',')}`);
}

/** Every cdk-nag acknowledgement: construct path, finding id, reason. */
function acknowledgements(app: App): { path: string; id: string; reason: string }[] {
  return app.node
    .findAll()
    .flatMap((c) => c.node.metadata.filter((m) => m.type === 'aws:cdk:acknowledged-rules').map((m) => ({ c, data: m.data as Record<string, string> })))
    .flatMap(({ c, data }) => Object.entries(data).map(([id, reason]) => ({ path: c.node.path, id, reason })));
}

describe('the full deployment (VPC, several databases, Slack, real handler)', () => {
  let s: Synth;
  beforeAll(() => {
    s = synth(
      {
        databases: ['app', 'analytics'],
        vpcId: 'vpc-0123456789abcdef0',
        subnetIds: ['subnet-0123456789abcdef0', 'subnet-0fedcba9876543210'],
        dbSecurityGroupId: 'sg-0fedcba9876543210',
        dbPort: 6432,
        scheduleHour: 3,
        scheduleMinute: 15,
        timeZone: 'Europe/Paris',
        retentionCount: 10,
        alertEmails: ['ops@example.com', 'dba@example.com'],
        slackWorkspaceId: 'T0123ABCD',
        slackChannelId: 'C0123ABCD',
        notifyOnSuccess: true,
        pgDumpCompression: 'zstd:3',
        encryptRecipients: ['age1n5xe8w6gv4mkva4z60yr2vv55zuh5pvd6engura3cfp92y6vvq5qxqdu75', 'age1mplejazsj7mf5anvs0rspqtja2zz9m5pjgkhwcfxv3cg9h5tlgtq9thu87'],
        memorySize: 2048,
        logRetentionDays: 30,
      },
      { entry: 'lambda/handler.ts' },
    );
  });

  it('has a KMS-encrypted, versioned, private, TLS-only bucket with access logs, retained', () => {
    s.template.hasResource('AWS::S3::Bucket', {
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
      Properties: Match.objectLike({
        BucketEncryption: {
          ServerSideEncryptionConfiguration: [
            { BucketKeyEnabled: true, ServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: { 'Fn::GetAtt': [Match.stringLikeRegexp('^StorageKey'), 'Arn'] } } },
          ],
        },
        VersioningConfiguration: { Status: 'Enabled' },
        PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
        LoggingConfiguration: { DestinationBucketName: { Ref: Match.stringLikeRegexp('^StorageAccessLogs') }, LogFilePrefix: 'backups/' },
      }),
    });
    s.template.hasResource('AWS::KMS::Key', {
      DeletionPolicy: 'Retain',
      Properties: Match.objectLike({ EnableKeyRotation: true, Description: Match.stringLikeRegexp('backups') }),
    });
    // The TLS-only policy on both buckets.
    const tlsDenials = resourcesOf(s, 'AWS::S3::BucketPolicy').filter((p) =>
      JSON.stringify(p.props.PolicyDocument).includes('"Condition":{"Bool":{"aws:SecureTransport":"false"}},"Effect":"Deny"'),
    );
    expect(tlsDenials).toHaveLength(2);
  });

  it('has lifecycle rules as a slow backstop: 100 days under the prefix, noncurrent 30 days, MPU 1 day (test/infra/lifecycle.test.ts proves why)', () => {
    s.template.hasResourceProperties('AWS::S3::Bucket', {
      LifecycleConfiguration: {
        Rules: Match.arrayWith([
          { Id: 'backstop-expire-old-backups', Prefix: 'pg-s3-backup/', ExpirationInDays: 100, Status: 'Enabled' },
          { Id: 'expire-noncurrent-versions', NoncurrentVersionExpiration: { NoncurrentDays: 30 }, Status: 'Enabled' },
          { Id: 'abort-incomplete-multipart-uploads', AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 }, Status: 'Enabled' },
        ]),
      },
    });
    s.template.resourcePropertiesCountIs('AWS::S3::Bucket', { ObjectLockEnabled: true }, 0);
  });

  it('attaches the layer, built for the function architecture and described with its PostgreSQL version', () => {
    s.template.hasResourceProperties('AWS::Lambda::LayerVersion', {
      CompatibleArchitectures: ['arm64'],
      Description: Match.stringLikeRegexp('18\\.1'),
    });
    s.template.hasResourceProperties('AWS::Lambda::Function', {
      Layers: [{ Ref: logicalId(s, 'AWS::Lambda::LayerVersion') }],
      Architectures: ['arm64'],
    });
  });

  it('runs the function on Node.js 22+ for 15 minutes, with its log group, the engine environment and source maps', () => {
    const fn = resourcesOf(s, 'AWS::Lambda::Function')[0]!.props;
    expect(Number(/^nodejs(\d+)\.x$/.exec(fn.Runtime as string)?.[1])).toBeGreaterThanOrEqual(22);
    expect(fn).toMatchObject({ Timeout: 900, MemorySize: 2048, Handler: 'index.handler', LoggingConfig: { LogGroup: { Ref: logicalId(s, 'AWS::Logs::LogGroup') } } });
    expect((fn.Environment as { Variables: Record<string, unknown> }).Variables).toEqual({
      DB_SECRET_ID: SECRET,
      DATABASES: 'app,analytics',
      BACKUP_BUCKET: { Ref: backupBucketId(s) },
      BACKUP_PREFIX: 'pg-s3-backup/',
      RETENTION_COUNT: '10',
      ALERT_TOPIC_ARN: { Ref: logicalId(s, 'AWS::SNS::Topic') },
      PG_DUMP_COMPRESSION: 'zstd:3',
      ENCRYPT_RECIPIENTS: 'age1n5xe8w6gv4mkva4z60yr2vv55zuh5pvd6engura3cfp92y6vvq5qxqdu75,age1mplejazsj7mf5anvs0rspqtja2zz9m5pjgkhwcfxv3cg9h5tlgtq9thu87',
      NOTIFY_ON_SUCCESS: 'true',
      STORAGE_PROFILE: 'aws',
      ...FUNCTION_NODE_ENVIRONMENT,
    });
    s.template.hasResourceProperties('AWS::Logs::LogGroup', { RetentionInDays: 30 });
  });

  it('bounds async retries and sends failed invocations to the failure queue', () => {
    s.template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      MaximumRetryAttempts: 1,
      MaximumEventAgeInSeconds: 21600,
      DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [logicalId(s, 'AWS::SQS::Queue'), 'Arn'] } } },
    });
  });

  it('schedules the backup at the local time in the IANA zone, with retries and the encrypted dead-letter queue', () => {
    const queue = logicalId(s, 'AWS::SQS::Queue');
    s.template.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'cron(15 3 * * ? *)',
      ScheduleExpressionTimezone: 'Europe/Paris',
      FlexibleTimeWindow: { Mode: 'OFF' },
      State: 'ENABLED',
      Target: Match.objectLike({
        Arn: { 'Fn::GetAtt': [logicalId(s, 'AWS::Lambda::Function'), 'Arn'] },
        Input: JSON.stringify({ reason: 'scheduled' }),
        RetryPolicy: { MaximumRetryAttempts: 10, MaximumEventAgeInSeconds: 14400 },
        DeadLetterConfig: { Arn: { 'Fn::GetAtt': [queue, 'Arn'] } },
      }),
    });
    s.template.hasResourceProperties('AWS::SQS::Queue', { SqsManagedSseEnabled: true, MessageRetentionPeriod: 1209600 });
    s.template.hasResourceProperties('AWS::SQS::QueuePolicy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]) },
    });
  });

  it('grants exactly the permissions the engine uses, scoped to the prefix, the secret, the topic and the keys', () => {
    const bucket = backupBucketId(s);
    const bucketKey = keyId(s, 'backups');
    const topicKey = keyId(s, 'alert');
    expect(functionStatements(s)).toEqual([
      { Sid: 'WriteOwnLogs', Effect: 'Allow', Action: ['logs:CreateLogStream', 'logs:PutLogEvents'], Resource: { 'Fn::GetAtt': [logicalId(s, 'AWS::Logs::LogGroup'), 'Arn'] } },
      {
        Sid: 'BackupObjects',
        Effect: 'Allow',
        Action: ['s3:PutObject', 's3:AbortMultipartUpload', 's3:GetObject', 's3:DeleteObject', 's3:GetObjectRetention', 's3:GetObjectLegalHold'],
        Resource: { 'Fn::Join': ['', [{ 'Fn::GetAtt': [bucket, 'Arn'] }, '/pg-s3-backup/*']] },
      },
      // Pruning asks the bucket whether it has Object Lock before asking each object.
      { Sid: 'ReadBucketObjectLock', Effect: 'Allow', Action: 's3:GetBucketObjectLockConfiguration', Resource: { 'Fn::GetAtt': [bucket, 'Arn'] } },
      { Sid: 'ListBackups', Effect: 'Allow', Action: 's3:ListBucket', Resource: { 'Fn::GetAtt': [bucket, 'Arn'] }, Condition: { StringLike: { 's3:prefix': ['pg-s3-backup/*'] } } },
      // Each run aborts its prefix's stale multipart uploads (the listing has no prefix condition key: the bucket).
      { Sid: 'ListStaleUploads', Effect: 'Allow', Action: 's3:ListBucketMultipartUploads', Resource: { 'Fn::GetAtt': [bucket, 'Arn'] } },
      // Check mode removes its probe with every version: the probe keys only.
      { Sid: 'RemoveCheckProbes', Effect: 'Allow', Action: 's3:DeleteObjectVersion', Resource: { 'Fn::Join': ['', [{ 'Fn::GetAtt': [bucket, 'Arn'] }, '/pg-s3-backup/_check/probe-*']] } },
      { Sid: 'ReadDatabaseSecret', Effect: 'Allow', Action: 'secretsmanager:GetSecretValue', Resource: SECRET },
      { Sid: 'PublishAlerts', Effect: 'Allow', Action: 'sns:Publish', Resource: { Ref: logicalId(s, 'AWS::SNS::Topic') } },
      { Sid: 'EncryptAlerts', Effect: 'Allow', Action: ['kms:GenerateDataKey', 'kms:Decrypt'], Resource: { 'Fn::GetAtt': [topicKey, 'Arn'] } },
      { Sid: 'EncryptBackups', Effect: 'Allow', Action: ['kms:GenerateDataKey', 'kms:Decrypt'], Resource: { 'Fn::GetAtt': [bucketKey, 'Arn'] } },
      {
        Sid: 'ManageVpcNetworkInterfaces',
        Effect: 'Allow',
        Action: ['ec2:CreateNetworkInterface', 'ec2:DescribeNetworkInterfaces', 'ec2:DescribeSubnets', 'ec2:DeleteNetworkInterface', 'ec2:AssignPrivateIpAddresses', 'ec2:UnassignPrivateIpAddresses'],
        Resource: '*',
      },
      // Added by the on-failure destination.
      { Effect: 'Allow', Action: ['sqs:SendMessage', 'sqs:GetQueueAttributes', 'sqs:GetQueueUrl'], Resource: { 'Fn::GetAtt': [logicalId(s, 'AWS::SQS::Queue'), 'Arn'] } },
    ]);
    s.template.hasResourceProperties('AWS::IAM::Role', {
      AssumeRolePolicyDocument: { Statement: [Match.objectLike({ Principal: { Service: 'lambda.amazonaws.com' } })] },
      ManagedPolicyArns: Match.absent(),
    });
  });

  it('puts the function in the VPC with a security group reaching only the database port and HTTPS', () => {
    const sg = logicalId(s, 'AWS::EC2::SecurityGroup');
    s.template.hasResourceProperties('AWS::Lambda::Function', {
      VpcConfig: { SubnetIds: ['subnet-0123456789abcdef0', 'subnet-0fedcba9876543210'], SecurityGroupIds: [{ 'Fn::GetAtt': [sg, 'GroupId'] }] },
    });
    s.template.hasResourceProperties('AWS::EC2::SecurityGroup', {
      VpcId: 'vpc-0123456789abcdef0',
      SecurityGroupIngress: Match.absent(),
      SecurityGroupEgress: [{ CidrIp: '0.0.0.0/0', IpProtocol: 'tcp', FromPort: 443, ToPort: 443, Description: Match.anyValue() }],
    });
    s.template.resourceCountIs('AWS::EC2::SecurityGroupEgress', 1);
    s.template.hasResourceProperties('AWS::EC2::SecurityGroupEgress', {
      GroupId: { 'Fn::GetAtt': [sg, 'GroupId'] },
      DestinationSecurityGroupId: 'sg-0fedcba9876543210',
      IpProtocol: 'tcp',
      FromPort: 6432,
      ToPort: 6432,
    });
    s.template.resourceCountIs('AWS::EC2::SecurityGroupIngress', 1);
    s.template.hasResourceProperties('AWS::EC2::SecurityGroupIngress', {
      GroupId: 'sg-0fedcba9876543210',
      SourceSecurityGroupId: { 'Fn::GetAtt': [sg, 'GroupId'] },
      IpProtocol: 'tcp',
      FromPort: 6432,
      ToPort: 6432,
    });
  });

  it('has a KMS-encrypted, TLS-only topic with e-mail and Slack subscribers, usable by CloudWatch alarms', () => {
    const topicKey = keyId(s, 'alert');
    s.template.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: { 'Fn::GetAtt': [topicKey, 'Arn'] } });
    s.template.hasResourceProperties('AWS::SNS::TopicPolicy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]) },
    });
    for (const email of ['ops@example.com', 'dba@example.com']) s.template.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: email });
    s.template.hasResourceProperties('AWS::Chatbot::SlackChannelConfiguration', {
      SlackWorkspaceId: 'T0123ABCD',
      SlackChannelId: 'C0123ABCD',
      SnsTopicArns: [{ Ref: logicalId(s, 'AWS::SNS::Topic') }],
    });
    const ownAlarms = {
      StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } },
      ArnLike: { 'aws:SourceArn': { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':cloudwatch:', { Ref: 'AWS::Region' }, ':', { Ref: 'AWS::AccountId' }, ':alarm:*']] } },
    };
    s.template.hasResourceProperties('AWS::KMS::Key', {
      Description: Match.stringLikeRegexp('alert'),
      EnableKeyRotation: true,
      KeyPolicy: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Allow', Principal: { Service: 'cloudwatch.amazonaws.com' }, Action: ['kms:Decrypt', 'kms:GenerateDataKey*'], Condition: ownAlarms }),
        ]),
      },
    });
  });

  it('lets this account\'s CloudWatch alarms publish to the topic, beside the TLS Deny (the topic policy replaces SNS\'s default one)', () => {
    const topic = { Ref: logicalId(s, 'AWS::SNS::Topic') };
    s.template.resourceCountIs('AWS::SNS::TopicPolicy', 1);
    s.template.hasResourceProperties('AWS::SNS::TopicPolicy', {
      Topics: [topic],
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
          {
            Sid: 'CloudWatchAlarmsPublish',
            Effect: 'Allow',
            Principal: { Service: 'cloudwatch.amazonaws.com' },
            Action: 'sns:Publish',
            Resource: topic,
            Condition: {
              StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } },
              ArnLike: { 'aws:SourceArn': { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':cloudwatch:', { Ref: 'AWS::Region' }, ':', { Ref: 'AWS::AccountId' }, ':alarm:*']] } },
            },
          },
        ]),
      },
    });
  });

  it('alarms to the topic on errors, duration near the timeout, the failure queue, and no success per database in 26 h', () => {
    const topic = { Ref: logicalId(s, 'AWS::SNS::Topic') };
    const fn = { Ref: logicalId(s, 'AWS::Lambda::Function') };
    // Every alarm notifies the topic when it fires and when it clears.
    const hasAlarm = (props: Record<string, unknown>) => s.template.hasResourceProperties('AWS::CloudWatch::Alarm', { AlarmActions: [topic], OKActions: [topic], ...props });
    s.template.resourceCountIs('AWS::CloudWatch::Alarm', 5);
    hasAlarm({
      Namespace: 'AWS/Lambda',
      MetricName: 'Errors',
      Dimensions: [{ Name: 'FunctionName', Value: fn }],
      Statistic: 'Sum',
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      Threshold: 1,
      EvaluationPeriods: 1,
    });
    hasAlarm({
      Namespace: 'AWS/Lambda',
      MetricName: 'Duration',
      Dimensions: [{ Name: 'FunctionName', Value: fn }],
      Statistic: 'Maximum',
      ComparisonOperator: 'GreaterThanThreshold',
      Threshold: 720_000,
    });
    hasAlarm({
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [logicalId(s, 'AWS::SQS::Queue'), 'QueueName'] } }],
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      Threshold: 1,
    });
    for (const database of ['app', 'analytics']) {
      hasAlarm({
        Namespace: 'PgS3Backup',
        MetricName: 'BackupSucceeded',
        Dimensions: [{ Name: 'Database', Value: database }],
        Statistic: 'Sum',
        // 26 one-hour periods, all breaching: no success anywhere in the last 26 hours.
        Period: 3600,
        EvaluationPeriods: DEAD_MAN_HOURS,
        DatapointsToAlarm: DEAD_MAN_HOURS,
        ComparisonOperator: 'LessThanThreshold',
        Threshold: 1,
        TreatMissingData: 'breaching',
      });
    }
    // CloudWatch limits: period × evaluation periods ≤ 7 days (≤ 1 day for periods under an hour).
    for (const alarm of resourcesOf(s, 'AWS::CloudWatch::Alarm')) {
      const period = alarm.props.Period as number;
      const total = period * (alarm.props.EvaluationPeriods as number);
      expect(period % 60, alarm.id).toBe(0);
      expect(total, alarm.id).toBeLessThanOrEqual(period < 3600 ? 86_400 : 604_800);
    }
  });

  it('outputs the bucket, the function, the topic and a ready invoke command', () => {
    const fn = logicalId(s, 'AWS::Lambda::Function');
    expect(s.json.Outputs.FunctionName!.Value).toEqual({ Ref: fn });
    expect(s.json.Outputs.AlertTopicArn!.Value).toEqual({ Ref: logicalId(s, 'AWS::SNS::Topic') });
    // doctor finds the schedule by this output (older stacks: by their resources).
    expect(s.json.Outputs.ScheduleName!.Value).toEqual({ Ref: logicalId(s, 'AWS::Scheduler::Schedule') });
    expect(JSON.stringify(s.json.Outputs.BucketName!.Value)).toMatch(/StorageBucket/);
    const invoke = JSON.stringify(s.json.Outputs.InvokeCommand!.Value);
    expect(invoke).toContain('aws lambda invoke --region ');
    expect(invoke).toContain(`{"Ref":"${fn}"}`);
    expect(invoke).toContain('--payload \'{\\"reason\\":\\"on-demand\\"}\'');
  });

  it('passes cdk-nag AwsSolutions with only reasoned acknowledgements on the narrowest constructs', () => {
    expect(nagViolations(s.app)).toEqual([]);
    const acks = acknowledgements(s.app);
    expect(acks.map(({ path, id }) => `${path} ${id}`).sort()).toEqual(
      [
        'PgS3Backup/Backup/Policy Annotation::AwsSolutions-IAM5[Resource::*]',
        `PgS3Backup/Backup/Policy Annotation::AwsSolutions-IAM5[Resource::<${backupBucketId(s)}.Arn>/pg-s3-backup/*]`,
        `PgS3Backup/Backup/Policy Annotation::AwsSolutions-IAM5[Resource::<${backupBucketId(s)}.Arn>/pg-s3-backup/_check/probe-*]`,
        'PgS3Backup/FailedRuns/Queue Annotation::AwsSolutions-SQS3',
        `PgS3Backup/Nightly/Role Annotation::AwsSolutions-IAM5[Resource::<${logicalId(s, 'AWS::Lambda::Function')}.Arn>:*]`,
        'PgS3Backup/Storage/AccessLogs Annotation::AwsSolutions-S1',
      ].sort(),
    );
    for (const a of acks) expect(a.reason.length, a.id).toBeGreaterThan(40);
  });
});

describe('the minimal deployment (secret only: no VPC, database from the secret, UTC)', () => {
  let s: Synth;
  beforeAll(() => {
    s = synth({});
  });

  it('has no wildcard resource at all and no network', () => {
    const statements = functionStatements(s);
    expect(statements.map((st) => st.Sid)).toEqual(['WriteOwnLogs', 'BackupObjects', 'ReadBucketObjectLock', 'ListBackups', 'ListStaleUploads', 'RemoveCheckProbes', 'ReadDatabaseSecret', 'PublishAlerts', 'EncryptAlerts', 'EncryptBackups', undefined]);
    for (const st of statements) {
      expect(JSON.stringify(st.Resource)).not.toMatch(/"\*"/);
      expect(JSON.stringify(st.Action)).not.toContain('*');
    }
    s.template.resourceCountIs('AWS::EC2::SecurityGroup', 0);
    s.template.hasResourceProperties('AWS::Lambda::Function', { VpcConfig: Match.absent(), Environment: { Variables: Match.objectLike({ DATABASES: Match.absent(), PG_DUMP_COMPRESSION: Match.absent(), ENCRYPT_RECIPIENTS: Match.absent() }) } });
    s.template.resourceCountIs('AWS::Chatbot::SlackChannelConfiguration', 0);
    s.template.resourceCountIs('AWS::SNS::Subscription', 0);
  });

  it('schedules 02:00 UTC by default', () => {
    s.template.hasResourceProperties('AWS::Scheduler::Schedule', { ScheduleExpression: 'cron(0 2 * * ? *)', ScheduleExpressionTimezone: 'UTC' });
  });

  it('falls back to a dead-man alarm on successful invocations, and says so', () => {
    s.template.resourceCountIs('AWS::CloudWatch::Alarm', 4);
    s.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      EvaluationPeriods: DEAD_MAN_HOURS,
      DatapointsToAlarm: DEAD_MAN_HOURS,
      ComparisonOperator: 'LessThanThreshold',
      Threshold: 1,
      TreatMissingData: 'breaching',
      Metrics: Match.arrayWith([
        Match.objectLike({ Expression: 'FILL(invocations, 0) - FILL(errors, 0)', ReturnData: true }),
        Match.objectLike({ Id: 'invocations', MetricStat: Match.objectLike({ Metric: Match.objectLike({ MetricName: 'Invocations' }), Period: 3600, Stat: 'Sum' }) }),
      ]),
    });
    const annotations = Annotations.fromStack(s.app.node.findChild('PgS3Backup') as never);
    annotations.hasWarning('/PgS3Backup', Match.stringLikeRegexp('context "databases" is not set'));
    annotations.hasWarning('/PgS3Backup', Match.stringLikeRegexp('nobody is subscribed'));
  });

  it('passes cdk-nag without the VPC acknowledgement', () => {
    expect(nagViolations(s.app)).toEqual([]);
    expect(acknowledgements(s.app).map((a) => a.id)).not.toContain('Annotation::AwsSolutions-IAM5[Resource::*]');
  });
});

describe('other bucket shapes and architectures', () => {
  it('imports an existing bucket by name, granting its key, and creates no bucket', () => {
    const keyArn = 'arn:aws:kms:eu-west-3:123456789012:key/0b7f2f4e-1111-2222-3333-444455556666';
    const s = synth({ bucketName: 'my-backups', bucketKmsKeyArn: keyArn, backupPrefix: 'db/nightly/' });
    s.template.resourceCountIs('AWS::S3::Bucket', 0);
    const statements = functionStatements(s);
    expect(statements.find((st) => st.Sid === 'BackupObjects')!.Resource).toEqual({ 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':s3:::my-backups/db/nightly/*']] });
    expect(statements.find((st) => st.Sid === 'ListBackups')!.Condition).toEqual({ StringLike: { 's3:prefix': ['db/nightly/*'] } });
    expect(statements.find((st) => st.Sid === 'EncryptBackups')!.Resource).toBe(keyArn);
    expect(nagViolations(s.app)).toEqual([]);
  });

  it('adds Object Lock to a created bucket, and builds for x86_64 with that layer', () => {
    const s = synth({ objectLockDays: 30, objectLockMode: 'COMPLIANCE', architecture: 'x86_64' }, { arch: 'x86_64' });
    s.template.hasResourceProperties('AWS::S3::Bucket', {
      ObjectLockEnabled: true,
      ObjectLockConfiguration: { ObjectLockEnabled: 'Enabled', Rule: { DefaultRetention: { Mode: 'COMPLIANCE', Days: 30 } } },
    });
    s.template.hasResourceProperties('AWS::Lambda::Function', { Architectures: ['x86_64'] });
    s.template.hasResourceProperties('AWS::Lambda::LayerVersion', { CompatibleArchitectures: ['x86_64'] });
  });

  it('fails with the build command when the layer is missing or built for another architecture', () => {
    expect(() => buildApp({ context: { dbSecretArn: SECRET }, layerDir: resolve(FIXTURES, 'no-such-layer'), entry: FIXTURE_ENTRY, now })).toThrow(
      new LayerNotBuiltError(`the pg_dump layer for arm64 is not built (no ${resolve(FIXTURES, 'no-such-layer/manifest.json')}): run \`npm run build:layer -- arm64\` first`),
    );
    expect(() => buildApp({ context: { dbSecretArn: SECRET }, layerDir: FIXTURE_LAYER('x86_64'), entry: FIXTURE_ENTRY, now })).toThrow(/describes a x86_64 layer but the function runs on arm64: run `npm run build:layer -- arm64`/);
  });
});
