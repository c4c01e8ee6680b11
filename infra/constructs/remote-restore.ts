/**
 * Restore where the database lives: `pg-s3-backup restore --remote` (and `verify --remote`) run
 * the CLI's own restore as an ECS Fargate task of this construct's task definition, in the
 * Fargate runner's cluster, subnets and security group, from the runner's image. The task reads
 * the backups (read only), and the target's credentials from a Secrets Manager secret the operator
 * names; the operator's side needs only the managed policy made here (OperatorPolicyArn).
 *
 * Which secrets the task may read cannot be known at deploy time (a restore target is chosen in
 * an incident), so the task role may read the secrets **named under one prefix**,
 * `<stackName>/restore/` (`RESTORE_SECRET_PREFIX`): a secret's name is fixed at creation (Secrets
 * Manager cannot rename), unlike a tag, which anyone allowed to tag the production secret could
 * add to it; and the production database's secret is not under the prefix, so a restore task can
 * never read it. The runbook ("Restore from inside the VPC") says how to create such a secret.
 */
import { ArnFormat, Stack, Validations } from 'aws-cdk-lib';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import type { RemoteTaskPlace } from '../../engine/restore/remote-task.ts';
import { IMAGE_RDS_CA_BUNDLE, IMAGE_TMP, IMAGE_USER } from '../container/image.ts';
import type { BackupBucket } from './backup-bucket.ts';
import { bucketResourceLogicalId } from './backup-function.ts';
import { CONTAINER_NAME, type FargateRunner } from './fargate-runner.ts';

/** The secrets a restore task may read: `<stackName>/restore/…` (targets, scratch servers, age identities). */
export function restoreSecretPrefix(stackName: string): string {
  return `${stackName}/restore/`;
}

/** The awslogs stream prefix: a task's stream is `<prefix>/<container>/<task id>`. */
export const RESTORE_LOG_STREAM_PREFIX = 'restore';

/** Engine settings a restore reads; the backup's others (secret, topic, retention…) are not its business. */
const RESTORE_SETTINGS = ['BACKUP_BUCKET', 'BACKUP_PREFIX', 'STORAGE_PROFILE'] as const;

export interface RemoteRestoreProps {
  readonly stackName: string;
  /** The Fargate runner: its cluster, image, network and security group. */
  readonly runner: FargateRunner;
  readonly bucket: BackupBucket;
  /** The engine's environment, as the function has it (only RESTORE_SETTINGS are passed on). */
  readonly environment: Readonly<Record<string, string>>;
  readonly cpu: number;
  readonly memoryMiB: number;
  readonly ephemeralStorageGiB: number;
  readonly logRetentionDays: number;
}

/** What `--remote` reads from the stack output `RemoteRestore` (cli/remote.ts parses it): where the task runs, and the secrets it may read. */
export type RemoteRestoreOutput = RemoteTaskPlace & { readonly secretPrefix: string };

export class RemoteRestore extends Construct {
  readonly taskDefinition: ecs.FargateTaskDefinition;
  readonly taskRole: iam.Role;
  readonly executionRole: iam.IRole;
  readonly logGroup: logs.LogGroup;
  readonly operatorPolicy: iam.ManagedPolicy;
  readonly secretPrefix: string;
  readonly output: RemoteRestoreOutput;

  constructor(scope: Construct, id: string, props: RemoteRestoreProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const { runner } = props;
    const { bucket, prefix, key } = props.bucket;
    this.secretPrefix = restoreSecretPrefix(props.stackName);
    const secrets = stack.formatArn({ service: 'secretsmanager', resource: 'secret', resourceName: `${this.secretPrefix}*`, arnFormat: ArnFormat.COLON_RESOURCE_NAME });

    this.taskRole = new iam.Role(this, 'TaskRole', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com', { conditions: { StringEquals: { 'aws:SourceAccount': stack.account } } }),
      description: `pg-s3-backup restore --remote: reads backups under its prefix and the secrets named ${this.secretPrefix}*; writes nothing`,
    });
    // Read only: a restore never writes to the bucket, publishes or puts metrics.
    const statements = [
      new iam.PolicyStatement({ sid: 'ReadBackupObjects', actions: ['s3:GetObject'], resources: [bucket.arnForObjects(`${prefix}*`)] }),
      new iam.PolicyStatement({ sid: 'ListBackupKeys', actions: ['s3:ListBucket'], resources: [bucket.bucketArn], conditions: { StringLike: { 's3:prefix': [`${prefix}*`] } } }),
      ...(key ? [new iam.PolicyStatement({ sid: 'DecryptBackups', actions: ['kms:Decrypt'], resources: [key.keyArn] })] : []),
      // Secrets under the default aws/secretsmanager key need no KMS grant (its key policy allows
      // Secrets Manager's callers in the account); a customer key is the operator's to grant.
      new iam.PolicyStatement({ sid: 'ReadRestoreSecrets', actions: ['secretsmanager:GetSecretValue'], resources: [secrets] }),
    ];
    const policy = new iam.Policy(this, 'TaskPolicy', { statements });
    this.taskRole.attachInlinePolicy(policy);

    this.taskDefinition = new ecs.FargateTaskDefinition(this, 'Task', {
      cpu: props.cpu,
      memoryLimitMiB: props.memoryMiB,
      ephemeralStorageGiB: props.ephemeralStorageGiB,
      taskRole: this.taskRole,
      runtimePlatform: runner.runtimePlatform,
    });
    this.logGroup = new logs.LogGroup(this, 'LogGroup', { retention: props.logRetentionDays as logs.RetentionDays });
    const environment = Object.fromEntries(RESTORE_SETTINGS.filter((k) => props.environment[k] !== undefined).map((k) => [k, props.environment[k]!]));
    const container = this.taskDefinition.addContainer(CONTAINER_NAME, {
      image: runner.image,
      // `--remote` always overrides it with the operator's restore or verify.
      command: ['--help'],
      environment: {
        ...environment,
        NODE_OPTIONS: '--enable-source-maps',
        // TLS verify-full against the RDS CA bundle unless the target's secret says otherwise.
        RDS_CA_BUNDLE: IMAGE_RDS_CA_BUNDLE,
      },
      logging: ecs.LogDrivers.awsLogs({ streamPrefix: RESTORE_LOG_STREAM_PREFIX, logGroup: this.logGroup }),
      readonlyRootFilesystem: true,
      user: IMAGE_USER,
    });
    // The dump is downloaded to /tmp (ephemeral storage): size it with fargateEphemeralGiB.
    this.taskDefinition.addVolume({ name: 'tmp' });
    container.addMountPoints({ sourceVolume: 'tmp', containerPath: IMAGE_TMP, readOnly: false });
    this.executionRole = this.taskDefinition.obtainExecutionRole();

    const cluster = runner.cluster;
    const tasks = stack.formatArn({ service: 'ecs', resource: 'task', resourceName: `${cluster.clusterName}/*` });
    // FilterLogEvents names the group (no `:*`), GetLogEvents a stream of it.
    const logGroupArn = stack.formatArn({ service: 'logs', resource: 'log-group', resourceName: this.logGroup.logGroupName, arnFormat: ArnFormat.COLON_RESOURCE_NAME });
    this.operatorPolicy = new iam.ManagedPolicy(this, 'OperatorPolicy', {
      description: `pg-s3-backup restore --remote / verify --remote for stack ${props.stackName}: run the restore task, follow it, stop it`,
      statements: [
        new iam.PolicyStatement({
          sid: 'ReadStackOutputs',
          actions: ['cloudformation:DescribeStacks'],
          resources: [stack.formatArn({ service: 'cloudformation', resource: 'stack', resourceName: `${props.stackName}/*` })],
        }),
        new iam.PolicyStatement({
          sid: 'RunRestoreTask',
          actions: ['ecs:RunTask'],
          resources: [this.taskDefinition.taskDefinitionArn],
          conditions: { ArnEquals: { 'ecs:cluster': cluster.clusterArn } },
        }),
        new iam.PolicyStatement({
          sid: 'FollowRestoreTasks',
          actions: ['ecs:DescribeTasks', 'ecs:StopTask'],
          resources: [tasks],
          conditions: { ArnEquals: { 'ecs:cluster': cluster.clusterArn } },
        }),
        new iam.PolicyStatement({
          sid: 'PassRestoreTaskRoles',
          actions: ['iam:PassRole'],
          resources: [this.taskRole.roleArn, this.executionRole.roleArn],
          conditions: { StringEquals: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' } },
        }),
        new iam.PolicyStatement({
          sid: 'ReadRestoreLogs',
          actions: ['logs:GetLogEvents', 'logs:FilterLogEvents'],
          resources: [logGroupArn, `${logGroupArn}:log-stream:*`],
        }),
      ],
    });

    this.output = {
      cluster: cluster.clusterArn,
      taskDefinition: this.taskDefinition.taskDefinitionArn,
      container: CONTAINER_NAME,
      subnets: runner.vpc.selectSubnets(runner.subnets).subnetIds,
      securityGroups: [runner.securityGroup.securityGroupId],
      logGroup: this.logGroup.logGroupName,
      logStreamPrefix: RESTORE_LOG_STREAM_PREFIX,
      secretPrefix: this.secretPrefix,
    };

    const bucketLogicalId = bucketResourceLogicalId(props.bucket);
    const bucketNag = bucketLogicalId ? `<${bucketLogicalId}.Arn>` : `arn:<AWS::Partition>:s3:::${bucket.bucketName}`;
    Validations.of(policy).acknowledge({
      id: `AwsSolutions-IAM5[Resource::${bucketNag}/${prefix}*]`,
      reason: 'Backup objects have timestamped keys: the restore task reads only the objects under the backup prefix.',
    });
    Validations.of(policy).acknowledge({
      id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:${this.secretPrefix}*]`,
      reason: 'A restore target is chosen at restore time: the task reads only the secrets named under the stack\'s restore prefix (names cannot change after creation; the production secret is not under it).',
    });
    // cdk-nag names a deploy-time value by its logical id: <Id>.
    const nagRef = (token: string) => `<${(stack.resolve(token) as { Ref: string }).Ref}>`;
    const operatorWildcards: Record<string, string> = {
      [`arn:<AWS::Partition>:cloudformation:<AWS::Region>:<AWS::AccountId>:stack/${props.stackName}/*`]: 'A stack ARN ends with its id, which changes when the stack is recreated: the stack is named exactly.',
      [`arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:task/${nagRef(cluster.clusterName)}/*`]: 'Task ids are made at RunTask: DescribeTasks and StopTask reach only the tasks of this cluster (and an ecs:cluster condition).',
      [`arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:${nagRef(this.logGroup.logGroupName)}:log-stream:*`]: 'Log streams are named after the task id: reading is limited to the restore tasks\' own log group.',
    };
    for (const [resource, reason] of Object.entries(operatorWildcards)) Validations.of(this.operatorPolicy).acknowledge({ id: `AwsSolutions-IAM5[Resource::${resource}]`, reason });
    Validations.of(this.taskDefinition).acknowledge({
      id: 'AwsSolutions-ECS2',
      reason: 'The environment holds settings only (bucket, prefix, storage profile): the target\'s credentials are read from Secrets Manager inside the task, never put in the task definition or its overrides.',
    });
    Validations.of(this.executionRole).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason: 'Written by ECS for the execution role: ecr:GetAuthorizationToken, which supports no resource-level permission, beside pulls of this image and writes to this log group.',
    });
  }
}
