/**
 * The restore drill (issue 13): its own function (lambda/drill-handler.ts with the pg_dump layer
 * for pg_restore and the pg-server layer for a throwaway PostgreSQL in /tmp), its own schedule an
 * hour after the backup, and its own alarms. It reads backups and writes `<dump key>.verify.json`
 * next to them; it never touches a database, so it has no database secret, no VPC and no database
 * port (with drillIdentitySecretArn, it reads the one secret holding encrypted backups' identity).
 */
import { join, resolve } from 'node:path';
import { Annotations, Aws, type CfnElement, Duration, Size, Stack, TimeZone, Token, Validations } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as targets from 'aws-cdk-lib/aws-scheduler-targets';
import type * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import { toEnvironment } from '../../engine/config.ts';
import { METRIC_NAMES } from '../../engine/observability.ts';
import { VERIFY_REPORT_SUFFIX } from '../../engine/store/backup-key.ts';
import { REPO_ROOT, type Architecture } from '../../layers/pg-dump/paths.ts';
import { DRILL_MIN_MEMORY_MB, type DrillFrequency, type IdentitySecret } from '../config.ts';
import { formatHourMinute } from '../dst.ts';
import { notifyTopic } from './alarm-actions.ts';
import { DEAD_MAN_HOURS, deadManAlarms } from './backup-alerts.ts';
import type { BackupBucket } from './backup-bucket.ts';
import { bucketResourceLogicalId, FUNCTION_NODE_ENVIRONMENT, FUNCTION_RUNTIME, FUNCTION_TIMEOUT, handlerBundling } from './backup-function.ts';
import { SERVER_LAYER_MOUNT } from './pg-server-layer.ts';

/** Lambda's bounds of /tmp. */
export const EPHEMERAL_STORAGE_MIB = { min: 512, max: 10240 } as const;

/** The weekly drill's day (Scheduler's cron day-of-week). */
export const WEEKLY_DRILL_DAY = 'SUN';

export interface DrillFunctionProps {
  /** The drill handler module (exports `handler`). @default lambda/drill-handler.ts */
  readonly entry?: string;
  readonly architecture: Architecture;
  /** The pg_dump layer: the drill restores with its pg_restore. */
  readonly pgDumpLayer: lambda.ILayerVersion;
  /** The pg-server layer (PgServerLayer): the throwaway server, mounted at /opt/pg-server. */
  readonly serverLayer: lambda.ILayerVersion;
  readonly bucket: BackupBucket;
  /** Databases drilled, one dead-man alarm each; empty: every database found in the bucket (one alarm on successful invocations). */
  readonly databases: readonly string[];
  readonly topic: sns.ITopic;
  readonly topicKey: kms.IKey;
  readonly logRetentionDays: number;
  /** MB; the throwaway server, pg_restore and the function share it (and CPU grows with it). @default 2048 (the minimum accepted) */
  readonly memorySize?: number;
  /** /tmp in MiB: the downloaded dump plus the restored database must fit (else the drill skips that database and says so). @default 10240 (Lambda's maximum) */
  readonly ephemeralStorageMiB?: number;
  /**
   * The age identity of encrypted backups: the secret the drill reads it from at run time (its ARN
   * in AGE_IDENTITY_SECRET_ARN; the identity itself never in the environment), and its
   * customer-managed key if it has one. Absent: an encrypted backup's drill fails saying so.
   */
  readonly identitySecret?: IdentitySecret;
  /** When the drill runs: local time in the IANA zone, every night or on Sundays. */
  readonly schedule: { readonly frequency: DrillFrequency; readonly hour: number; readonly minute: number; readonly timeZone: string };
}

/** Every inconsistency of the props, each naming its prop. */
function checkProps(props: DrillFunctionProps): string[] {
  const problems: string[] = [];
  const memory = props.memorySize ?? DRILL_MIN_MEMORY_MB;
  if (!Number.isInteger(memory) || memory < DRILL_MIN_MEMORY_MB || memory > 10240) problems.push(`memorySize must be a whole number of MB from ${DRILL_MIN_MEMORY_MB} to 10240 (got ${memory})`);
  const storage = props.ephemeralStorageMiB ?? EPHEMERAL_STORAGE_MIB.max;
  if (!Number.isInteger(storage) || storage < EPHEMERAL_STORAGE_MIB.min || storage > EPHEMERAL_STORAGE_MIB.max) {
    problems.push(`ephemeralStorageMiB must be a whole number from ${EPHEMERAL_STORAGE_MIB.min} to ${EPHEMERAL_STORAGE_MIB.max} (got ${storage})`);
  }
  const { hour, minute } = props.schedule;
  if (!Number.isInteger(hour) || hour < 0 || hour > 23 || !Number.isInteger(minute) || minute < 0 || minute > 59) problems.push(`schedule.hour and schedule.minute must be a time of day (got ${hour}:${minute})`);
  if (props.databases.includes('*')) problems.push('databases must name databases: "*" discovers them on the server, but the drill has no database access (pass [] to drill every database in the bucket)');
  if (new Set(props.databases).size !== props.databases.length) problems.push('databases must name each database once');
  return problems;
}

/**
 * The drill function's environment (what `DrillFunction` deploys; test/lambda/drill-lambda-root.test.ts
 * runs the bundled handler with the same).
 */
export function drillFunctionEnvironment(o: {
  readonly bucketName: string;
  readonly prefix: string;
  readonly topicArn: string;
  readonly databases: readonly string[];
  /** The age identity's secret (drillIdentitySecretArn): its ARN only, never the identity. */
  readonly identitySecretArn?: string | undefined;
}): Record<string, string> {
  return {
    ...toEnvironment(
      {
        BACKUP_BUCKET: o.bucketName,
        BACKUP_PREFIX: o.prefix,
        ALERT_TOPIC_ARN: o.topicArn,
        DATABASES: o.databases.length > 0 ? o.databases : undefined,
        PG_SERVER_LAYER: SERVER_LAYER_MOUNT,
        AGE_IDENTITY_SECRET_ARN: o.identitySecretArn,
      },
      { isDeployTimeValue: (v) => Token.isUnresolved(v) },
    ),
    ...FUNCTION_NODE_ENVIRONMENT,
  };
}

export class DrillFunction extends Construct {
  readonly function: nodejs.NodejsFunction;
  readonly role: iam.Role;
  readonly logGroup: logs.LogGroup;
  readonly schedule: scheduler.Schedule;
  readonly alarms: cloudwatch.Alarm[] = [];
  readonly environment: Readonly<Record<string, string>>;

  constructor(scope: Construct, id: string, props: DrillFunctionProps) {
    super(scope, id);
    const problems = checkProps(props);
    if (problems.length > 0) throw new Error(`DrillFunction ${this.node.path}: ${problems.join('; ')}`);
    const { bucket, prefix } = props.bucket;

    this.logGroup = new logs.LogGroup(this, 'LogGroup', { retention: props.logRetentionDays as logs.RetentionDays });
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: 'pg-s3-backup restore drill: reads backups under its prefix, writes their .verify.json reports, alerts; no database access',
    });
    const statements = [
      new iam.PolicyStatement({ sid: 'WriteOwnLogs', actions: ['logs:CreateLogStream', 'logs:PutLogEvents'], resources: [this.logGroup.logGroupArn] }),
      new iam.PolicyStatement({ sid: 'ReadBackups', actions: ['s3:GetObject'], resources: [bucket.arnForObjects(`${prefix}*`)] }),
      // The report is the only object it writes: never a dump, a manifest or anything outside the prefix.
      new iam.PolicyStatement({ sid: 'WriteDrillReports', actions: ['s3:PutObject'], resources: [bucket.arnForObjects(`${prefix}*${VERIFY_REPORT_SUFFIX}`)] }),
      new iam.PolicyStatement({
        sid: 'ListBackups',
        actions: ['s3:ListBucket'],
        resources: [bucket.bucketArn],
        conditions: { StringLike: { 's3:prefix': [`${prefix}*`] } },
      }),
      new iam.PolicyStatement({ sid: 'PublishAlerts', actions: ['sns:Publish'], resources: [props.topic.topicArn] }),
      new iam.PolicyStatement({ sid: 'EncryptAlerts', actions: ['kms:GenerateDataKey', 'kms:Decrypt'], resources: [props.topicKey.keyArn] }),
    ];
    if (props.bucket.key) {
      // Decrypt to read a dump; GenerateDataKey to write a report under SSE-KMS.
      statements.push(new iam.PolicyStatement({ sid: 'UseBackupKey', actions: ['kms:Decrypt', 'kms:GenerateDataKey'], resources: [props.bucket.key.keyArn] }));
    }
    if (props.identitySecret) {
      statements.push(new iam.PolicyStatement({ sid: 'ReadAgeIdentity', actions: ['secretsmanager:GetSecretValue'], resources: [props.identitySecret.arn] }));
      if (props.identitySecret.kmsKeyArn) {
        // Secrets Manager decrypts the value with the customer-managed key on the drill's behalf:
        // Decrypt only, on that key only, through Secrets Manager only (as the backup function's
        // DecryptDatabaseSecret). GetSecretValue on the one secret bounds which values it opens.
        statements.push(
          new iam.PolicyStatement({
            sid: 'DecryptAgeIdentity',
            actions: ['kms:Decrypt'],
            resources: [props.identitySecret.kmsKeyArn],
            conditions: { StringEquals: { 'kms:ViaService': `secretsmanager.${Aws.REGION}.amazonaws.com` } },
          }),
        );
      }
    }
    const policy = new iam.Policy(this, 'Policy', { statements });
    this.role.attachInlinePolicy(policy);
    const bucketArn = bucketNagArn(props.bucket);
    Validations.of(policy).acknowledge({
      id: `AwsSolutions-IAM5[Resource::${bucketArn}/${prefix}*]`,
      reason: 'Backup objects have timestamped keys: the drill reads only the objects under the backup prefix.',
    });
    Validations.of(policy).acknowledge({
      id: `AwsSolutions-IAM5[Resource::${bucketArn}/${prefix}*${VERIFY_REPORT_SUFFIX}]`,
      reason: 'Drill reports sit next to timestamped dumps (<dump key>.verify.json): the drill writes only those keys under the backup prefix.',
    });

    this.environment = drillFunctionEnvironment({ bucketName: bucket.bucketName, prefix, topicArn: props.topic.topicArn, databases: props.databases, identitySecretArn: props.identitySecret?.arn });

    this.function = new nodejs.NodejsFunction(this, 'Function', {
      entry: resolve(REPO_ROOT, props.entry ?? join('lambda', 'drill-handler.ts')),
      handler: 'handler',
      projectRoot: REPO_ROOT,
      depsLockFilePath: join(REPO_ROOT, 'package-lock.json'),
      runtime: FUNCTION_RUNTIME,
      architecture: props.architecture === 'arm64' ? lambda.Architecture.ARM_64 : lambda.Architecture.X86_64,
      memorySize: props.memorySize ?? DRILL_MIN_MEMORY_MB,
      ephemeralStorageSize: Size.mebibytes(props.ephemeralStorageMiB ?? EPHEMERAL_STORAGE_MIB.max),
      timeout: FUNCTION_TIMEOUT,
      layers: [props.pgDumpLayer, props.serverLayer],
      role: this.role,
      logGroup: this.logGroup,
      description: 'pg-s3-backup restore drill: the newest backup of each database restored into a throwaway PostgreSQL, row counts proven',
      environment: this.environment,
      // A failed drill has alerted and thrown (Errors alarm); running it again would only repeat the alert.
      retryAttempts: 0,
      bundling: handlerBundling(),
    });
    this.function.node.addDependency(policy);

    this.schedule = this.addSchedule(props.schedule);
    this.addAlarms(props);
  }

  private addSchedule(when: DrillFunctionProps['schedule']): scheduler.Schedule {
    // Its own role, so the acknowledgement stays on the narrowest construct.
    const role = new iam.Role(this, 'ScheduleRole', {
      assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', { conditions: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } } }),
      description: 'pg-s3-backup drill schedule: starts the restore drill',
    });
    const at = formatHourMinute(when.hour, when.minute);
    const schedule = new scheduler.Schedule(this, 'Schedule', {
      description: `pg-s3-backup: restore drill ${when.frequency === 'weekly' ? `every ${WEEKLY_DRILL_DAY}` : 'every night'} at ${at} ${when.timeZone}`,
      schedule: scheduler.ScheduleExpression.cron({
        minute: String(when.minute),
        hour: String(when.hour),
        ...(when.frequency === 'weekly' ? { weekDay: WEEKLY_DRILL_DAY } : {}),
        timeZone: TimeZone.of(when.timeZone),
      }),
      // Delivery retries only (the start is asynchronous): a throttled Lambda API still gets the night's drill.
      target: new targets.LambdaInvoke(this.function, { input: scheduler.ScheduleTargetInput.fromObject({}), role, retryAttempts: 10, maxEventAge: Duration.hours(4) }),
    });
    const stack = Stack.of(this);
    const fnId = stack.resolve(stack.getLogicalId(this.function.node.defaultChild as CfnElement)) as string;
    Validations.of(role).acknowledge({
      id: `AwsSolutions-IAM5[Resource::<${fnId}.Arn>:*]`,
      reason: 'lambda:InvokeFunction on the drill function and its versions/aliases (the `:*` suffix): the one function only.',
    });
    return schedule;
  }

  private addAlarms(props: DrillFunctionProps): void {
    const add = (alarmId: string, alarmProps: cloudwatch.AlarmProps): void => {
      this.alarms.push(notifyTopic(new cloudwatch.Alarm(this, alarmId, alarmProps), props.topic));
    };
    add('ErrorsAlarm', {
      alarmDescription: 'pg-s3-backup: the restore drill failed (a backup that does not restore, or a crash). Read the alert and the <dump key>.verify.json report: docs/runbooks/database-restore.md, "When the nightly drill fails".',
      metric: this.function.metricErrors({ period: Duration.minutes(5), statistic: cloudwatch.Stats.SUM }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    if (props.schedule.frequency === 'weekly') {
      // A weekly dead-man window must exceed 7 days, and CloudWatch caps an alarm's whole
      // evaluation range (period × periods) at 7 days: such an alarm would fire every week just
      // before the drill runs. The Errors alarm and the drill's own alerts remain.
      Annotations.of(this).addWarningV2(
        'pg-s3-backup:weeklyDrillNoDeadMan',
        'drillSchedule=weekly: no dead-man alarm on DrillSucceeded (CloudWatch alarms look back at most 7 days, a weekly drill needs 8): a drill that stops running is not noticed. Use drillSchedule=nightly for one, and check `pg-s3-backup list` (DRILL column).',
      );
      return;
    }
    for (const { id, props: alarmProps } of deadManAlarms({
      function: this.function,
      databases: props.databases,
      metricName: METRIC_NAMES.drillSucceeded,
      label: 'successful drill invocations',
      whole: `pg-s3-backup: no successful restore drill in ${DEAD_MAN_HOURS} hours (the drill did not run, failed, or skipped a database too large for /tmp). Check the drill's alerts and logs; set the "databases" context for one alarm per database.`,
      perDatabase: (database) =>
        `pg-s3-backup: no successful restore drill of database "${database}" in ${DEAD_MAN_HOURS} hours (it did not run, its newest backup did not restore, or it was skipped as too large for /tmp). Read the drill's alert and the newest <dump key>.verify.json: docs/runbooks/database-restore.md, "When the nightly drill fails".`,
    })) {
      add(id, alarmProps);
    }
  }
}

/** The bucket ARN as cdk-nag names it in a finding: the created bucket's logical id, or the imported bucket's name. */
function bucketNagArn(backupBucket: BackupBucket): string {
  const id = bucketResourceLogicalId(backupBucket);
  return id ? `<${id}.Arn>` : `arn:<AWS::Partition>:s3:::${backupBucket.bucket.bucketName}`;
}
