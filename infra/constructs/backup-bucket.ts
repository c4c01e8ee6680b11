/**
 * Where the dumps live: a bucket created with every protection on, or an existing bucket
 * imported by name. The lifecycle rules are a backstop only: the engine prunes to
 * `retentionCount` backups per database, and the rules merely catch what pruning left behind
 * (a function that stopped running, a deleted stack's leftovers, failed uploads).
 */
import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';

export interface BackupBucketProps {
  /** Key prefix of every backup object (ends with `/`). */
  readonly prefix: string;
  /** Complete backups kept per database by the engine's pruning. */
  readonly retentionCount: number;
  /** Import this existing bucket instead of creating one. */
  readonly existingBucketName?: string;
  /** The imported bucket's SSE-KMS key, when it has one (the function needs to use it). */
  readonly existingBucketKmsKeyArn?: string;
  /** WORM retention for a created bucket. */
  readonly objectLock?: { readonly days: number; readonly mode: 'GOVERNANCE' | 'COMPLIANCE' };
}

/** Days after which the backstop rule expires a current object: pruning, not the rule, decides normally. */
function backstopExpirationDays(retentionCount: number): number {
  return retentionCount + 3;
}

const NONCURRENT_EXPIRATION_DAYS = 7;

export class BackupBucket extends Construct {
  readonly bucket: s3.IBucket;
  /** The key objects are encrypted with, when known. */
  readonly key?: kms.IKey;
  readonly prefix: string;

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
          id: 'backstop-expire-old-backups',
          prefix: props.prefix,
          expiration: Duration.days(backstopExpirationDays(props.retentionCount)),
        },
        {
          id: 'expire-noncurrent-versions',
          noncurrentVersionExpiration: Duration.days(NONCURRENT_EXPIRATION_DAYS),
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
