/**
 * Where the dumps live: a bucket created with every protection on, or an existing bucket
 * imported by name. The engine's pruning is the retention (the newest `retentionCount` complete
 * backups per database, never for a database whose backup failed); the lifecycle rules only
 * catch what pruning left behind (a database no longer backed up, a stack gone, failed uploads),
 * slowly enough that backups which stopped still leave the last good ones for months
 * (infra/config.ts: DEFAULT_BACKSTOP_EXPIRATION_DAYS).
 */
import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import type { LifecycleConfig, ReplicationConfig } from '../config.ts';
import { BackupReplication } from './backup-replication.ts';

export interface BackupBucketProps {
  /** Key prefix of every backup object (ends with `/`). */
  readonly prefix: string;
  /** The lifecycle backstop of a created bucket (validated in infra/config.ts). */
  readonly lifecycle?: LifecycleConfig;
  /** Import this existing bucket instead of creating one. */
  readonly existingBucketName?: string;
  /** The imported bucket's SSE-KMS key, when it has one (the function needs to use it). */
  readonly existingBucketKmsKeyArn?: string;
  /** WORM retention for a created bucket. */
  readonly objectLock?: { readonly days: number; readonly mode: 'GOVERNANCE' | 'COMPLIANCE' };
  /** A second copy of the prefix by S3 Replication (a created bucket only). */
  readonly replication?: ReplicationConfig;
}

export class BackupBucket extends Construct {
  readonly bucket: s3.IBucket;
  /** The key objects are encrypted with, when known. */
  readonly key?: kms.IKey;
  readonly prefix: string;
  /** The second copy, when configured: its role, rule and alarms. */
  readonly replication?: BackupReplication;

  constructor(scope: Construct, id: string, props: BackupBucketProps) {
    super(scope, id);
    this.prefix = props.prefix;

    if (props.existingBucketName) {
      this.bucket = s3.Bucket.fromBucketName(this, 'Bucket', props.existingBucketName);
      if (props.existingBucketKmsKeyArn) this.key = kms.Key.fromKeyArn(this, 'Key', props.existingBucketKmsKeyArn);
      return;
    }

    const key = new kms.Key(this, 'Key', {
      description: 'pg-s3-backup: encrypts the PostgreSQL backups',
      enableKeyRotation: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    // Server access logs cannot be delivered to an SSE-KMS bucket: the log bucket uses SSE-S3.
    const logs = new s3.Bucket(this, 'AccessLogs', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      removalPolicy: RemovalPolicy.RETAIN,
      lifecycleRules: [{ id: 'expire-access-logs', expiration: Duration.days(365) }],
    });
    Validations.of(logs).acknowledge({ id: 'AwsSolutions-S1', reason: 'This is the server access log bucket itself; logging it into itself would loop.' });

    if (!props.lifecycle) throw new Error('BackupBucket: a created bucket needs its lifecycle configuration');
    const replication = props.replication
      ? new BackupReplication(this, 'Replication', { ...props.replication, prefix: props.prefix, sourceKey: key, objectLock: props.objectLock !== undefined })
      : undefined;
    const { backstopExpirationDays, noncurrentVersionDays } = props.lifecycle;
    const bucket = new s3.Bucket(this, 'Bucket', {
      encryption: s3.BucketEncryption.KMS,
      encryptionKey: key,
      // One data key per bucket and hour instead of one KMS call per object part: cheaper, same protection.
      bucketKeyEnabled: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      versioned: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      serverAccessLogsBucket: asIBucket(logs),
      serverAccessLogsPrefix: 'backups/',
      removalPolicy: RemovalPolicy.RETAIN,
      // Versioning (above) is what S3 Replication requires of the source.
      ...(replication ? { replicationRole: replication.role, replicationRules: replication.rules } : {}),
      ...(props.objectLock
        ? {
            objectLockEnabled: true,
            objectLockDefaultRetention:
              props.objectLock.mode === 'COMPLIANCE'
                ? s3.ObjectLockRetention.compliance(Duration.days(props.objectLock.days))
                : s3.ObjectLockRetention.governance(Duration.days(props.objectLock.days)),
          }
        : {}),
      lifecycleRules: [
        {
          // Backups pruning missed: long after any backup pruning would keep (validated), and
          // long enough that a database whose backups stopped keeps its last good one listed.
          id: 'backstop-expire-old-backups',
          prefix: props.prefix,
          expiration: Duration.days(backstopExpirationDays),
        },
        {
          // Pruned (or expired) versions stay recoverable: a mistaken prune can be undone.
          id: 'expire-noncurrent-versions',
          noncurrentVersionExpiration: Duration.days(noncurrentVersionDays),
        },
        {
          id: 'abort-incomplete-multipart-uploads',
          abortIncompleteMultipartUploadAfter: Duration.days(1),
        },
        {
          // Pruning and expiration leave delete markers once the versions behind them are gone.
          id: 'remove-expired-delete-markers',
          expiredObjectDeleteMarker: true,
        },
      ],
    });
    this.bucket = asIBucket(bucket);
    this.key = key;
    if (replication) {
      replication.grant(this.bucket);
      this.replication = replication;
    }
  }
}

/**
 * aws-cdk-lib declares `Bucket.isWebsite` as `boolean | undefined` where `IBucket` has an optional
 * `boolean`, which `exactOptionalPropertyTypes` rejects although every Bucket is an IBucket at run
 * time (upstream typing, not a real mismatch): the one place that bridges it.
 */
function asIBucket(bucket: s3.Bucket): s3.IBucket {
  return bucket as unknown as s3.IBucket;
}
