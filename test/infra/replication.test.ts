/**
 * The second copy (S3 Replication) and GFS retention from CDK context: the synthesized
 * replication rule, role, alarms and outputs, the function's RETENTION_* environment in the
 * schedule's zone, and cdk-nag with only reasoned acknowledgements on the replication policy.
 * (What the replication role may and may not do is evaluated in iam.test.ts.)
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../infra/app.ts';
import { InfraConfigError, parseConfig } from '../../infra/config.ts';

const SECRET = 'arn:aws:secretsmanager:eu-west-3:123456789012:secret:prod/db-AbCdEf';
const FIXTURES = fileURLToPath(new URL('fixtures/', import.meta.url));
const now = new Date('2026-01-01T00:00:00Z');
const REPLICA_KEY = 'arn:aws:kms:eu-central-1:210987654321:key/0b7f2f4e-1111-2222-3333-444455556666';
const REPLICATION = { destinationBucketArn: 'arn:aws:s3:::my-replica', destinationKmsKeyArn: REPLICA_KEY, destinationAccount: '210987654321', storageClass: 'STANDARD_IA' };

function synth(context: Record<string, unknown>): { app: App; template: Template } {
  const { app, stack } = buildApp({ context: { dbSecretArn: SECRET, drillSchedule: 'off', ...context }, layerDir: resolve(FIXTURES, 'layer', 'arm64'), entry: 'test/infra/fixtures/handler.ts', now });
  return { app, template: Template.fromStack(stack) };
}

function nagViolations(app: App): string[] {
  return new AwsSolutionsChecks().validateScope(app).violations.map((v) => `${v.ruleName} ${v.violatingResources.map((r) => r.constructPath).join(',')}`);
}

function acknowledgements(app: App): { path: string; id: string; reason: string }[] {
  return app.node
    .findAll()
    .flatMap((c) => c.node.metadata.filter((m) => m.type === 'aws:cdk:acknowledged-rules').map((m) => ({ c, data: m.data as Record<string, string> })))
    .flatMap(({ c, data }) => Object.entries(data).map(([id, reason]) => ({ path: c.node.path, id, reason })));
}

describe('replication and GFS context (cross-account, Auckland schedule)', () => {
  let s: { app: App; template: Template };
  let bucketId: string;
  beforeAll(() => {
    s = synth({ replication: REPLICATION, retentionCount: 7, retentionDaily: 14, retentionWeekly: 8, retentionMonthly: 12, timeZone: 'Pacific/Auckland', scheduleHour: 3 });
    const buckets = s.template.findResources('AWS::S3::Bucket', { Properties: { VersioningConfiguration: { Status: 'Enabled' } } });
    bucketId = Object.keys(buckets)[0]!;
  });

  it('replicates the prefix with the replica key, RTC and metrics, and no delete markers, from the versioned source', () => {
    s.template.hasResourceProperties('AWS::S3::Bucket', {
      VersioningConfiguration: { Status: 'Enabled' },
      ReplicationConfiguration: {
        Role: { 'Fn::GetAtt': [Match.stringLikeRegexp('^StorageReplicationRole'), 'Arn'] },
        Rules: [
          {
            Id: 'pg-s3-backup-second-copy',
            Status: 'Enabled',
            Filter: { Prefix: 'pg-s3-backup/' },
            DeleteMarkerReplication: { Status: 'Disabled' },
            SourceSelectionCriteria: { SseKmsEncryptedObjects: { Status: 'Enabled' } },
            Destination: {
              Bucket: 'arn:aws:s3:::my-replica',
              Account: '210987654321',
              AccessControlTranslation: { Owner: 'Destination' },
              EncryptionConfiguration: { ReplicaKmsKeyID: REPLICA_KEY },
              ReplicationTime: { Status: 'Enabled', Time: { Minutes: 15 } },
              Metrics: { Status: 'Enabled', EventThreshold: { Minutes: 15 } },
              StorageClass: 'STANDARD_IA',
            },
          },
        ],
      },
    });
  });

  it('gives S3 its own role, trusted only by S3 for this account', () => {
    s.template.hasResourceProperties('AWS::IAM::Role', {
      AssumeRolePolicyDocument: {
        Statement: [{ Action: 'sts:AssumeRole', Effect: 'Allow', Principal: { Service: 's3.amazonaws.com' }, Condition: { StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } } } }],
      },
      ManagedPolicyArns: Match.absent(),
    });
  });

  it('alarms on failed replication and on latency beyond 15 minutes, to the alert topic', () => {
    const dims = [{ Name: 'DestinationBucket', Value: 'my-replica' }, { Name: 'RuleId', Value: 'pg-s3-backup-second-copy' }, { Name: 'SourceBucket', Value: { Ref: bucketId } }];
    const topic = [{ Ref: Match.stringLikeRegexp('^AlertsTopic') }];
    s.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/S3', MetricName: 'OperationsFailedReplication', Statistic: 'Sum', Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold', Dimensions: dims, AlarmActions: topic, OKActions: topic, TreatMissingData: 'notBreaching',
    });
    s.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/S3', MetricName: 'ReplicationLatency', Statistic: 'Maximum', Threshold: 900, ComparisonOperator: 'GreaterThanThreshold', Dimensions: dims, AlarmActions: topic, OKActions: topic,
    });
    s.template.hasOutput('ReplicaBucketArn', { Value: 'arn:aws:s3:::my-replica' });
  });

  it('tells the function the GFS rules in the schedule\'s time zone, and sizes the backstop past the longest keep', () => {
    s.template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ RETENTION_COUNT: '7', RETENTION_DAILY: '14', RETENTION_WEEKLY: '8', RETENTION_MONTHLY: '12', RETENTION_TIME_ZONE: 'Pacific/Auckland' }) },
    });
    s.template.hasResourceProperties('AWS::S3::Bucket', {
      LifecycleConfiguration: { Rules: Match.arrayWith([Match.objectLike({ Id: 'backstop-expire-old-backups', ExpirationInDays: 374 })]) },
    });
  });

  it('passes cdk-nag, acknowledging only the replication policy\'s prefix wildcards, with reasons', () => {
    expect(nagViolations(s.app)).toEqual([]);
    const acks = acknowledgements(s.app).filter((a) => a.path.includes('Replication'));
    expect(acks.map(({ path, id }) => `${path} ${id}`).sort()).toEqual(
      [
        `PgS3Backup/Storage/Replication/Policy Annotation::AwsSolutions-IAM5[Resource::<${bucketId}.Arn>/pg-s3-backup/*]`,
        'PgS3Backup/Storage/Replication/Policy Annotation::AwsSolutions-IAM5[Resource::arn:aws:s3:::my-replica/pg-s3-backup/*]',
      ].sort(),
    );
    for (const a of acks) expect(a.reason.length).toBeGreaterThan(40);
  });
});

describe('without replication or GFS context', () => {
  it('has no replication, no replication alarm, and no RETENTION_DAILY in the environment', () => {
    const s = synth({});
    const buckets = Object.values(s.template.findResources('AWS::S3::Bucket')) as { Properties: Record<string, unknown> }[];
    for (const b of buckets) expect(b.Properties.ReplicationConfiguration).toBeUndefined();
    expect(Object.keys(s.template.findResources('AWS::CloudWatch::Alarm', { Properties: { Namespace: 'AWS/S3' } }))).toEqual([]);
    s.template.hasResourceProperties('AWS::Lambda::Function', { Environment: { Variables: Match.objectLike({ RETENTION_DAILY: Match.absent(), RETENTION_TIME_ZONE: Match.absent() }) } });
  });

  it('a same-account replica: no owner override, and the context rejects what cannot work, naming the keys', () => {
    const s = synth({ replication: JSON.stringify({ destinationBucketArn: 'arn:aws:s3:::my-replica', destinationKmsKeyArn: REPLICA_KEY }) });
    s.template.hasResourceProperties('AWS::S3::Bucket', {
      ReplicationConfiguration: { Rules: [Match.objectLike({ Destination: Match.objectLike({ Account: Match.absent(), AccessControlTranslation: Match.absent(), StorageClass: Match.absent() }) })] },
    });
    const errorOf = (context: Record<string, unknown>) => {
      try {
        parseConfig({ dbSecretArn: SECRET, ...context }, { now });
      } catch (err) {
        expect(err).toBeInstanceOf(InfraConfigError);
        return (err as Error).message;
      }
      throw new Error('expected an error');
    };
    expect(errorOf({ bucketName: 'mine', replication: REPLICATION })).toMatch(/context "replication" configures the replication of a bucket this stack creates, but "bucketName" imports an existing one/);
    expect(errorOf({ replication: { ...REPLICATION, destinationBucketArn: 'my-replica' } })).toMatch(/context "replication.destinationBucketArn": expected a bucket ARN/);
    expect(errorOf({ replication: { ...REPLICATION, storageClass: 'COLD' } })).toMatch(/context "replication.storageClass": expected one of STANDARD/);
    expect(errorOf({ replication: { ...REPLICATION, extra: 1 } })).toMatch(/replication/);
    expect(errorOf({ account: '210987654321', region: 'eu-west-3', replication: REPLICATION })).toMatch(/"replication.destinationAccount" is this stack's "account"/);
  });
});
