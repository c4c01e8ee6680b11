/**
 * The whole deployment, composed from one construct per concern. The stack itself only wires
 * them together and exposes what an operator needs (outputs).
 */
import { Annotations, Aws, CfnOutput, Duration, Stack, type StackProps } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type { Construct } from 'constructs';
import type { BackupConfig } from './config.ts';
import { BackupAlerts } from './constructs/backup-alerts.ts';
import { BackupBucket } from './constructs/backup-bucket.ts';
import { BackupDashboard } from './constructs/backup-dashboard.ts';
import { BackupFunction } from './constructs/backup-function.ts';
import { BackupSchedule } from './constructs/backup-schedule.ts';
import { DrillFunction } from './constructs/drill-function.ts';
import { BackupFanOut } from './constructs/fan-out.ts';
import { FargateRunner } from './constructs/fargate-runner.ts';
import { FailureQueue } from './constructs/failure-queue.ts';
import { PgDumpLayer } from './constructs/pg-dump-layer.ts';
import { PgServerLayer } from './constructs/pg-server-layer.ts';
import { RemoteRestore } from './constructs/remote-restore.ts';

export interface BackupStackProps extends StackProps {
  readonly config: BackupConfig;
  /** The built layer directory (default layers/pg-dump/dist/<arch>). */
  readonly layerDir?: string;
  /** The handler module (default lambda/handler.ts). */
  readonly entry?: string;
  /** The built pg-server layer tree, holding pg-server/ (default layers/pg-server/dist/<arch>). */
  readonly serverLayerDir?: string;
  /** The drill handler module (default lambda/drill-handler.ts). */
  readonly drillEntry?: string;
}

export class BackupStack extends Stack {
  readonly bucket: BackupBucket;
  readonly layer: PgDumpLayer;
  readonly alerts: BackupAlerts;
  readonly failureQueue: FailureQueue;
  readonly backupFunction: BackupFunction;
  readonly schedule: BackupSchedule;
  readonly fanOut: BackupFanOut | undefined;
  readonly fargate: FargateRunner | undefined;
  /** `restore --remote` / `verify --remote`: with the Fargate runner (its image, cluster and network). */
  readonly remoteRestore: RemoteRestore | undefined;
  /** The restore drill (absent with drillSchedule=off). */
  readonly drill: DrillFunction | undefined;
  readonly dashboard: BackupDashboard;

  constructor(scope: Construct, id: string, props: BackupStackProps) {
    super(scope, id, props);
    const { config } = props;

    this.bucket = new BackupBucket(this, 'Storage', {
      prefix: config.backupPrefix,
      ...config.bucket,
    });
    this.layer = new PgDumpLayer(this, 'PgDump', { architecture: config.architecture, ...(props.layerDir ? { dir: props.layerDir } : {}) });
    this.alerts = new BackupAlerts(this, 'Alerts', {
      emails: config.alertEmails,
      name: `${config.stackName}-alerts`,
      ...(config.slack ? { slack: config.slack } : {}),
    });
    this.failureQueue = new FailureQueue(this, 'FailedRuns');
    this.backupFunction = new BackupFunction(this, 'Backup', {
      ...(props.entry ? { entry: props.entry } : {}),
      architecture: config.architecture,
      layer: this.layer.layer,
      memorySize: config.memorySize,
      logRetentionDays: config.logRetentionDays,
      bucket: this.bucket,
      dbSecretArn: config.dbSecretArn,
      ...(config.dbSecretKmsKeyArn ? { dbSecretKmsKeyArn: config.dbSecretKmsKeyArn } : {}),
      settings: config.functionSettings,
      topic: this.alerts.topic,
      topicKey: this.alerts.key,
      failureQueue: this.failureQueue.queue,
      ...(config.vpc ? { vpc: config.vpc } : {}),
      dbPort: config.dbPort,
    });
    if (config.fanOut) {
      const { fargate } = config.fanOut;
      const fn = this.backupFunction;
      if (fargate && (!fn.network || !fn.securityGroup)) throw new Error('the Fargate runner needs the function in a VPC (context "vpcId"); infra/config.ts checks this');
      this.fargate =
        fargate && fn.network && fn.securityGroup
          ? new FargateRunner(this, 'Fargate', {
              architecture: config.architecture,
              network: fn.network,
              securityGroup: fn.securityGroup,
              environment: fn.environment,
              dataAccess: fn.dataAccess,
              objectsFinding: fn.objectsFinding,
              cpu: fargate.cpu,
              memoryMiB: fargate.memoryMiB,
              ephemeralStorageGiB: fargate.ephemeralStorageGiB,
              runTimeout: Duration.hours(fargate.timeoutHours),
              logRetentionDays: config.logRetentionDays,
            })
          : undefined;
      this.remoteRestore =
        this.fargate && fargate
          ? new RemoteRestore(this, 'Remote', {
              stackName: config.stackName,
              runner: this.fargate,
              bucket: this.bucket,
              environment: fn.environment,
              cpu: fargate.cpu,
              memoryMiB: fargate.memoryMiB,
              ephemeralStorageGiB: fargate.ephemeralStorageGiB,
              logRetentionDays: config.logRetentionDays,
              secretKmsKeyArns: config.restoreSecretKmsKeyArns,
              topic: this.alerts.topic,
            })
          : undefined;
      this.fanOut = new BackupFanOut(this, 'FanOut', {
        function: fn.function,
        ...(this.fargate ? { fargate: this.fargate } : {}),
        maxConcurrency: config.fanOut.maxConcurrency,
        topic: this.alerts.topic,
        logRetentionDays: config.logRetentionDays,
      });
    }
    this.schedule = new BackupSchedule(this, 'Nightly', {
      target: this.fanOut ? { stateMachine: this.fanOut.stateMachine } : { function: this.backupFunction.function },
      ...config.schedule,
      deadLetterQueue: this.failureQueue.queue,
    });
    // The second copy's failures and lag reach the same topic.
    this.bucket.replication?.alarm(this.bucket.bucket, this.alerts.topic);
    this.alerts.watch({
      function: this.backupFunction.function,
      timeout: this.backupFunction.timeout,
      failureQueue: this.failureQueue.queue,
      databases: config.discover ? [] : config.databases,
    });

    if (config.drill) {
      const serverLayer = new PgServerLayer(this, 'PgServer', { architecture: config.architecture, ...(props.serverLayerDir ? { dir: props.serverLayerDir } : {}) });
      this.drill = new DrillFunction(this, 'Drill', {
        ...(props.drillEntry ? { entry: props.drillEntry } : {}),
        architecture: config.architecture,
        pgDumpLayer: this.layer.layer,
        serverLayer: serverLayer.layer,
        bucket: this.bucket,
        // Discovery lists databases on the server, which the drill cannot reach: it drills every database in the bucket.
        databases: config.discover ? [] : config.databases,
        topic: this.alerts.topic,
        topicKey: this.alerts.key,
        logRetentionDays: config.logRetentionDays,
        memorySize: config.drill.memorySize,
        ephemeralStorageMiB: config.drill.ephemeralStorageMiB,
        schedule: { frequency: config.drill.frequency, hour: config.drill.hour, minute: config.drill.minute, timeZone: config.drill.timeZone },
        ...(config.drill.identitySecret ? { identitySecret: config.drill.identitySecret } : {}),
      });
    }

    // Last, so that it sees every alarm the constructs above made (backup, drill, fan-out, replication).
    this.dashboard = new BackupDashboard(this, 'Dashboard', {
      databases: config.discover ? [] : config.databases,
      alarms: this.node.findAll().filter((c): c is cloudwatch.Alarm => c instanceof cloudwatch.Alarm),
      runnerLogGroups: [{ runner: 'lambda', logGroup: this.backupFunction.logGroup }, ...(this.fargate ? [{ runner: 'fargate', logGroup: this.fargate.logGroup }] : [])],
      drill: this.drill !== undefined,
    });

    if (config.databases.length === 0) {
      Annotations.of(this).addWarningV2(
        'pg-s3-backup:databasesNotSet',
        'context "databases" is not set: the database comes from the secret at run time, so the dead-man alarm watches successful invocations instead of each database\'s BackupSucceeded metric. Set databases=<name>[,<name>] for one alarm per database.',
      );
    }

    if (config.alertEmails.length === 0 && !config.slack) {
      Annotations.of(this).addWarningV2(
        'pg-s3-backup:noAlertSubscriber',
        'neither "alertEmails" nor Slack is configured: failures and alarms reach the alert topic but nobody is subscribed to it yet (see README.md, "Deploy", "Alerts: e-mail and Slack").',
      );
    }

    new CfnOutput(this, 'BucketName', { value: this.bucket.bucket.bucketName, description: 'Bucket holding the backups' });
    if (config.bucket.replication) {
      new CfnOutput(this, 'ReplicaBucketArn', { value: config.bucket.replication.destinationBucketArn, description: 'The second copy (S3 Replication): restore from it with BACKUP_BUCKET set to its name' });
    }
    new CfnOutput(this, 'BackupPrefix', { value: config.backupPrefix, description: 'Key prefix of every backup' });
    new CfnOutput(this, 'FunctionName', { value: this.backupFunction.function.functionName, description: 'The backup function' });
    new CfnOutput(this, 'AlertTopicArn', { value: this.alerts.topic.topicArn, description: 'SNS topic of failures and alarms: subscribe to it' });
    new CfnOutput(this, 'ScheduleName', { value: this.schedule.schedule.scheduleName, description: 'The nightly schedule (EventBridge Scheduler, default group): pg-s3-backup doctor reads it' });
    if (this.drill) {
      new CfnOutput(this, 'DrillFunctionName', { value: this.drill.function.functionName, description: 'The restore drill function (its reports: <dump key>.verify.json)' });
    }
    if (this.remoteRestore) {
      new CfnOutput(this, 'RemoteRestore', { value: this.toJsonString(this.remoteRestore.output), description: 'What restore --remote and verify --remote run: the task definition, cluster, network, log group and the restore secrets\' name prefix' });
      new CfnOutput(this, 'OperatorPolicyArn', { value: this.remoteRestore.operatorPolicy.managedPolicyArn, description: 'Attach to the operators who run restore --remote / verify --remote: run, follow and stop the restore task, nothing else' });
    }
    new CfnOutput(this, 'DashboardUrl', { value: this.dashboard.url, description: 'The CloudWatch dashboard: each database\'s last success, size, duration and drill, the runner, the alarms (pg-s3-backup status shows it too)' });
    new CfnOutput(this, 'FailureQueueUrl', { value: this.failureQueue.queue.queueUrl, description: 'Runs that never completed land here' });
    new CfnOutput(this, 'InvokeCommand', {
      description: 'On-demand backup (synchronous; prints the result)',
      value: `aws lambda invoke --region ${Aws.REGION} --function-name ${this.backupFunction.function.functionName} --cli-binary-format raw-in-base64-out --cli-read-timeout 900 --payload '{"reason":"on-demand"}' /dev/stdout`,
    });
  }
}
