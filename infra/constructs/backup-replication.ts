/**
 * A second copy of the backups by S3 Replication: AWS's engine copies each new object under the
 * prefix to a bucket in another region or account, re-encrypted with that side's KMS key. No copy
 * loop of our own. Replication Time Control (15 minutes) with its metrics, delete markers NOT
 * replicated (pruning here never removes the replica: the destination's own lifecycle does), and
 * alarms on failed operations and on latency beyond the RTC target to the alert topic.
 *
 * The role S3 assumes may read the versions under the prefix (and the source key only through S3
 * for this bucket), and replicate objects to the destination under the same prefix (with the
 * replica key only through S3 in the destination's region): nothing else.
 */
import { Aws, Duration, Validations } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import type { ReplicationConfig } from '../config.ts';
import { notifyTopic } from './alarm-actions.ts';

/** The rule's id: a metric dimension of the replication metrics and alarms. */
export const REPLICATION_RULE_ID = 'pg-s3-backup-second-copy';
/** Replication Time Control's target: 99.99 % of objects within 15 minutes. */
const RTC_MINUTES = 15;

export interface BackupReplicationProps extends ReplicationConfig {
  /** The backups' key prefix: only it is replicated, to the same keys. */
  readonly prefix: string;
  /** The source bucket's KMS key (replication decrypts with it). */
  readonly sourceKey: kms.IKey;
  /** The source bucket has Object Lock: its retention and legal holds are replicated too. */
  readonly objectLock: boolean;
}

export class BackupReplication extends Construct {
  readonly role: iam.Role;
  readonly rules: s3.ReplicationRule[];
  readonly destinationBucketName: string;
  private readonly props: BackupReplicationProps;

  constructor(scope: Construct, id: string, props: BackupReplicationProps) {
    super(scope, id);
    this.props = props;
    this.destinationBucketName = props.destinationBucketArn.replace(/^arn:aws[a-z-]*:s3:::/, '');
    this.role = new iam.Role(this, 'Role', {
      // Only S3 acting for a bucket of this account: the trust names no bucket, since the bucket
      // already names this role (a condition on its ARN would make the two depend on each other).
      assumedBy: new iam.ServicePrincipal('s3.amazonaws.com', { conditions: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } } }),
      description: 'pg-s3-backup: S3 Replication of the backup prefix to the second copy',
    });
    const destination = s3.Bucket.fromBucketAttributes(this, 'Destination', {
      bucketArn: props.destinationBucketArn,
      ...(props.destinationAccount ? { account: props.destinationAccount } : {}),
    });
    this.rules = [
      {
        id: REPLICATION_RULE_ID,
        destination,
        filter: { prefix: props.prefix },
        kmsKey: kms.Key.fromKeyArn(this, 'ReplicaKey', props.destinationKmsKeyArn),
        sseKmsEncryptedObjects: true,
        // Pruning here must never remove the second copy: deletes stay on this side.
        deleteMarkerReplication: false,
        replicationTimeControl: s3.ReplicationTimeValue.FIFTEEN_MINUTES,
        metrics: s3.ReplicationTimeValue.FIFTEEN_MINUTES,
        // Cross-account: the destination account owns the replicas.
        ...(props.destinationAccount ? { accessControlTransition: true } : {}),
        ...(props.storageClass ? { storageClass: new s3.StorageClass(props.storageClass) } : {}),
      },
    ];
  }

  /** The role's permissions on the source `bucket` (created with `rules` and `role`). */
  grant(bucket: s3.IBucket): void {
    const { prefix, destinationBucketArn, destinationKmsKeyArn } = this.props;
    const destinationRegion = destinationKmsKeyArn.split(':')[3]!;
    const sourceObjects = bucket.arnForObjects(`${prefix}*`);
    const destinationObjects = `${destinationBucketArn}/${prefix}*`;
    const policy = new iam.Policy(this, 'Policy', {
      statements: [
        new iam.PolicyStatement({
          sid: 'ReadReplicationConfiguration',
          actions: ['s3:GetReplicationConfiguration', 's3:ListBucket'],
          resources: [bucket.bucketArn],
        }),
        new iam.PolicyStatement({
          sid: 'ReadSourceVersions',
          actions: [
            's3:GetObjectVersionForReplication',
            's3:GetObjectVersionAcl',
            's3:GetObjectVersionTagging',
            // Object Lock's retention and legal hold travel with the replica (the destination needs Object Lock too).
            ...(this.props.objectLock ? ['s3:GetObjectRetention', 's3:GetObjectLegalHold'] : []),
          ],
          resources: [sourceObjects],
        }),
        new iam.PolicyStatement({
          sid: 'ReplicateToDestination',
          // No s3:ReplicateDelete: delete markers are not replicated.
          actions: ['s3:ReplicateObject', 's3:ReplicateTags', ...(this.props.destinationAccount ? ['s3:ObjectOwnerOverrideToBucketOwner'] : [])],
          resources: [destinationObjects],
        }),
        new iam.PolicyStatement({
          sid: 'DecryptSource',
          actions: ['kms:Decrypt'],
          resources: [this.props.sourceKey.keyArn],
          // With S3 Bucket Keys the encryption context is the bucket's ARN, otherwise the object's.
          conditions: {
            StringEquals: { 'kms:ViaService': `s3.${Aws.REGION}.amazonaws.com` },
            StringLike: { 'kms:EncryptionContext:aws:s3:arn': [bucket.bucketArn, sourceObjects] },
          },
        }),
        new iam.PolicyStatement({
          sid: 'EncryptReplica',
          actions: ['kms:Encrypt', 'kms:GenerateDataKey'],
          resources: [destinationKmsKeyArn],
          conditions: {
            StringEquals: { 'kms:ViaService': `s3.${destinationRegion}.amazonaws.com` },
            StringLike: { 'kms:EncryptionContext:aws:s3:arn': [destinationBucketArn, destinationObjects] },
          },
        }),
      ],
    });
    this.role.attachInlinePolicy(policy);
    Validations.of(policy).acknowledge({
      id: `AwsSolutions-IAM5[Resource::${this.nagArn(bucket)}/${prefix}*]`,
      reason: 'Backup objects have timestamped keys: replication reads only the versions under the backup prefix.',
    });
    Validations.of(policy).acknowledge({
      id: `AwsSolutions-IAM5[Resource::${destinationObjects}]`,
      reason: 'Replicas keep the timestamped keys of the backups: replication writes only under the backup prefix of the destination bucket.',
    });
  }

  /** How cdk-nag writes the bucket's ARN in a finding id (a created bucket: its logical id). */
  private nagArn(bucket: s3.IBucket): string {
    const cfn = bucket.node.defaultChild as s3.CfnBucket | undefined;
    if (!cfn) return bucket.bucketArn;
    return `<${cfn.stack.resolve(cfn.stack.getLogicalId(cfn)) as string}.Arn>`;
  }

  /** Alarms on failed replication and on latency past the RTC target, to `topic` (firing and clearing). */
  alarm(bucket: s3.IBucket, topic: sns.ITopic): cloudwatch.Alarm[] {
    const dimensionsMap = { SourceBucket: bucket.bucketName, DestinationBucket: this.destinationBucketName, RuleId: REPLICATION_RULE_ID };
    const metric = (metricName: string, statistic: string) => new cloudwatch.Metric({ namespace: 'AWS/S3', metricName, dimensionsMap, statistic, period: Duration.minutes(5) });
    const alarms = [
      new cloudwatch.Alarm(this, 'FailedAlarm', {
        alarmDescription: `pg-s3-backup: S3 could not replicate backup objects to the second copy (${this.destinationBucketName}). Check the destination bucket policy, its versioning, the replica KMS key policy, and the replication role; failed objects are not retried by S3 (copy them again, see docs/runbooks/database-restore.md, "Restore from the replica").`,
        metric: metric('OperationsFailedReplication', cloudwatch.Stats.SUM),
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      }),
      new cloudwatch.Alarm(this, 'LatencyAlarm', {
        alarmDescription: `pg-s3-backup: replication to the second copy (${this.destinationBucketName}) is late: objects took more than the ${RTC_MINUTES}-minute Replication Time Control target. The second copy may lag the newest backups.`,
        metric: metric('ReplicationLatency', cloudwatch.Stats.MAXIMUM),
        threshold: RTC_MINUTES * 60,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 3,
        datapointsToAlarm: 2,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      }),
    ];
    return alarms.map((a) => notifyTopic(a, topic));
  }
}
