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
 * never read it. The runbook ("Restore from inside the VPC") says how to create such a secret. A
 * secret under a customer-managed KMS key needs that key listed (context `restoreSecretKmsKeyArns`):
 * the task may then decrypt with it through Secrets Manager in the stack's region, and only so.
 *
 * The task keeps its own deadline, so that a restore whose operator went away (laptop closed,
 * network lost) ends anyway: `--remote` passes its `--timeout` as TASK_TIMEOUT_SECONDS, at which
 * the CLI in the task stops cleanly (as on SIGTERM: pg_restore stopped, a `--create`d database
 * dropped) and exits 124; 60 s later it exits whatever it is doing. Behind both, the container's
 * entry runs the CLI under coreutils `timeout`, the task's first process, which SIGKILLs it
 * `DEADLINE_BACKSTOP_SECONDS` after the deadline: a process that is not node, so that neither a
 * blocked event loop nor a wait in the kernel can keep the task (its bill, its locks on the
 * target) alive. Both count from the container's start, so no clock of the operator's machine is
 * involved. A task started by hand gets the longest deadline `--timeout` allows (24 h).
 */
import { ArnFormat, Aws, Duration, Stack, Token, Validations } from 'aws-cdk-lib';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import type { RemoteTaskPlace } from '../../engine/restore/remote-task.ts';
import { kmsKeyArnProblem } from '../config.ts';
import { IMAGE_CLI, IMAGE_RDS_CA_BUNDLE, IMAGE_TMP, IMAGE_USER } from '../container/image.ts';
import type { BackupBucket } from './backup-bucket.ts';
import { bucketResourceLogicalId } from './backup-function.ts';
import { CONTAINER_NAME, type FargateRunner } from './fargate-runner.ts';
import { TaskFailureAlert } from './task-failure-alert.ts';
import { RUNNER_NODE_OPTIONS } from '../node-options.ts';
import { MAX_TASK_TIMEOUT_SECONDS } from '../../engine/settings/limits.ts';

/** The secrets a restore task may read: `<stackName>/restore/…` (targets, scratch servers, age identities). */
export function restoreSecretPrefix(stackName: string): string {
  return `${stackName}/restore/`;
}

/** The awslogs stream prefix: a task's stream is `<prefix>/<container>/<task id>`. */
export const RESTORE_LOG_STREAM_PREFIX = 'restore';

/** The deadline of a task started without `--remote` (by hand): the longest `--timeout` allows. */
export const TASK_DEFAULT_TIMEOUT_SECONDS = MAX_TASK_TIMEOUT_SECONDS;
/**
 * After the deadline, the time the CLI has to stop cleanly (it exits by itself 60 s after it)
 * before the container's entry SIGKILLs it: a DROP DATABASE of a large half-restored database may
 * take minutes, and the operator who set the deadline expects it kept within minutes.
 */
export const DEADLINE_BACKSTOP_SECONDS = 300;

/**
 * The restore container's entry: the CLI (as the image's ENTRYPOINT runs it) under coreutils
 * `timeout` (in the base image), which stays the first process and passes ECS's SIGTERM (StopTask)
 * on to the CLI; `$@` is the task's command (`restore …`), TASK_TIMEOUT_SECONDS its deadline.
 */
export const RESTORE_ENTRY_POINT = [
  '/bin/sh',
  '-c',
  `exec timeout --signal=KILL "$((\${TASK_TIMEOUT_SECONDS:-${TASK_DEFAULT_TIMEOUT_SECONDS}} + ${DEADLINE_BACKSTOP_SECONDS}))" node ${IMAGE_CLI} "$@"`,
  'pg-s3-backup',
];

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
  /** Customer-managed KMS keys of the restore secrets (context `restoreSecretKmsKeyArns`): kms:Decrypt through Secrets Manager only. */
  readonly secretKmsKeyArns?: readonly string[];
  /**
   * The alert topic: a task that fails with nobody following it (the operator's machine went
   * away) is reported there from ECS's own event (the task cannot publish).
   * @default no alert: the operator's `--remote` is the only one to learn of a failure
   */
  readonly topic?: sns.ITopic;
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
    const secretKeys = checkedSecretKeys(props.secretKmsKeyArns ?? [], stack.region);

    this.taskRole = new iam.Role(this, 'TaskRole', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com', { conditions: { StringEquals: { 'aws:SourceAccount': stack.account } } }),
      description: `pg-s3-backup restore --remote: reads backups under its prefix and the secrets named ${this.secretPrefix}*; writes nothing`,
    });
    // Read only: a restore never writes to the bucket, publishes or puts metrics.
    const statements = [
      new iam.PolicyStatement({ sid: 'ReadBackupObjects', actions: ['s3:GetObject'], resources: [bucket.arnForObjects(`${prefix}*`)] }),
      new iam.PolicyStatement({ sid: 'ListBackupKeys', actions: ['s3:ListBucket'], resources: [bucket.bucketArn], conditions: { StringLike: { 's3:prefix': [`${prefix}*`] } } }),
      ...(key ? [new iam.PolicyStatement({ sid: 'DecryptBackups', actions: ['kms:Decrypt'], resources: [key.keyArn] })] : []),
      new iam.PolicyStatement({ sid: 'ReadRestoreSecrets', actions: ['secretsmanager:GetSecretValue'], resources: [secrets] }),
      // Secrets under the default aws/secretsmanager key need no KMS grant (its key policy allows
      // Secrets Manager's callers in the account); a customer key must be listed, and is usable
      // only by Secrets Manager on the task's behalf (never to decrypt anything else with it).
      ...(secretKeys.length > 0
        ? [
            new iam.PolicyStatement({
              sid: 'DecryptRestoreSecrets',
              actions: ['kms:Decrypt'],
              resources: [...secretKeys],
              conditions: { StringEquals: { 'kms:ViaService': `secretsmanager.${Aws.REGION}.amazonaws.com` } },
            }),
          ]
        : []),
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
      entryPoint: RESTORE_ENTRY_POINT,
      // `--remote` always overrides it with the operator's restore or verify.
      command: ['--help'],
      // StopTask (--timeout, Ctrl-C) sends SIGTERM: the CLI cleans up within 60 s (a database its
      // --create made is dropped); ECS's default of 30 s would SIGKILL it half-way.
      stopTimeout: Duration.seconds(120),
      environment: {
        ...environment,
        // `--remote` overrides it with its --timeout.
        TASK_TIMEOUT_SECONDS: String(TASK_DEFAULT_TIMEOUT_SECONDS),
        NODE_OPTIONS: RUNNER_NODE_OPTIONS,
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

    if (props.topic) {
      new TaskFailureAlert(this, 'FailureAlert', {
        taskDefinition: this.taskDefinition,
        cluster,
        topic: props.topic,
        what: 'restore --remote / verify --remote',
        consequence: 'The restore or verification it ran did not finish: a database it created was dropped if the server still answered; check the target before using it.',
        logGroupName: this.logGroup.logGroupName,
        whatToDo: 'Run it again with pg-s3-backup restore --remote (or verify --remote), a longer --timeout if it reached its deadline; see docs/runbooks/database-restore.md, "Restore from inside the VPC".',
      });
    }

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

/**
 * The restore secrets' keys, each checked (the error names the context key): a key ARN, in the
 * stack's region (Secrets Manager uses only a key of its own region) when the stack has one.
 */
function checkedSecretKeys(arns: readonly string[], region: string): readonly string[] {
  arns.forEach((arn, i) => {
    if (Token.isUnresolved(arn)) return;
    const problem = kmsKeyArnProblem(arn) ?? (!Token.isUnresolved(region) && arn.split(':')[3] !== region ? `is in region ${arn.split(':')[3]}, not the stack's ${region}: Secrets Manager decrypts a secret only with a key of its own region` : undefined);
    if (problem) throw new Error(`RemoteRestore: restoreSecretKmsKeyArns entry ${i + 1}, ${arn}, ${problem}`);
  });
  return arns;
}
