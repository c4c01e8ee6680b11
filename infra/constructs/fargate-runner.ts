/**
 * The runner for dumps that outgrow one Lambda invocation: an ECS Fargate task running the same
 * engine (`pg-s3-backup run --database X`), in the function's VPC, subnets and security group,
 * with its own role holding exactly the function's data permissions. The fan-out's Map starts it
 * with `RunTask.sync` and waits for it; the image is a CDK asset built at deploy, never at synth.
 */
import { Annotations, Duration, Stack, Validations } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecrAssets from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { toEnvironment } from '../../engine/config.ts';
import { METRIC_NAMESPACE } from '../../engine/observability.ts';
import { REPO_ROOT, type Architecture } from '../../layers/pg-dump/paths.ts';
import { ASSET_IGNORE_MODE, assetExclude, DOCKERFILE_IN_CONTEXT, ensureImageBundle, IMAGE_RDS_CA_BUNDLE, IMAGE_TMP, IMAGE_USER } from '../container/image.ts';
import { RUNNER_NODE_OPTIONS } from '../node-options.ts';

export interface FargateRunnerProps {
  readonly architecture: Architecture;
  /** The function's network: the task runs in the same subnets with the same security group. */
  readonly network: { readonly vpc: ec2.IVpc; readonly subnets: ec2.SubnetSelection };
  readonly securityGroup: ec2.ISecurityGroup;
  /** The engine's environment, as the function has it. */
  readonly environment: Readonly<Record<string, string>>;
  /** The function's data permissions (bucket prefix, secret, topic, keys). */
  readonly dataAccess: readonly iam.PolicyStatement[];
  /** cdk-nag's finding id for the objects-under-the-prefix wildcard in `dataAccess`. */
  readonly objectsFinding: string;
  /** vCPU units. @default 1024 (1 vCPU) */
  readonly cpu: number;
  /** Memory, MiB (must suit `cpu`, see Fargate's table). @default 2048 */
  readonly memoryMiB: number;
  /** Task storage, GiB (21–200): the dump streams, so this matters for drills only. @default 21 */
  readonly ephemeralStorageGiB: number;
  /** The whole run's bound inside the task (RUN_TIMEOUT_SECONDS); the state machine's task timeout adds a margin. */
  readonly runTimeout: Duration;
  readonly logRetentionDays: number;
}

export const CONTAINER_NAME = 'engine';

export class FargateRunner extends Construct {
  readonly cluster: ecs.ICluster;
  readonly taskDefinition: ecs.FargateTaskDefinition;
  readonly container: ecs.ContainerDefinition;
  readonly taskRole: iam.Role;
  readonly logGroup: logs.LogGroup;
  readonly runTimeout: Duration;
  readonly securityGroup: ec2.ISecurityGroup;
  readonly vpc: ec2.IVpc;
  readonly subnets: ec2.SubnetSelection;
  /** The engine's image (the restore task of `restore --remote` runs it too). */
  readonly image: ecs.ContainerImage;
  readonly runtimePlatform: ecs.RuntimePlatform;

  constructor(scope: Construct, id: string, props: FargateRunnerProps) {
    super(scope, id);
    this.runTimeout = props.runTimeout;
    this.securityGroup = props.securityGroup;
    this.subnets = props.network.subnets;
    this.vpc = props.network.vpc;
    // aws-cdk-lib types Cluster.defaultCloudMapNamespace as `INamespace | undefined` where ICluster
    // has an optional INamespace: exactOptionalPropertyTypes rejects the (sound) assignment.
    this.cluster = new ecs.Cluster(this, 'Cluster', { vpc: props.network.vpc, containerInsightsV2: ecs.ContainerInsights.ENABLED }) as unknown as ecs.ICluster;
    this.taskRole = new iam.Role(this, 'TaskRole', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com', { conditions: { StringEquals: { 'aws:SourceAccount': Stack.of(this).account } } }),
      description: 'pg-s3-backup Fargate runner: the backup function\'s data permissions, nothing more',
    });
    const policy = new iam.Policy(this, 'TaskPolicy', {
      statements: [
        ...props.dataAccess.map((s) => s.copy()),
        // The backup metrics the dead-man alarms watch: CloudWatch extracts EMF from Lambda's logs
        // only, so the task puts them itself (CLOUDWATCH_METRICS below), into this namespace only.
        new iam.PolicyStatement({
          sid: 'PutBackupMetrics',
          actions: ['cloudwatch:PutMetricData'],
          resources: ['*'],
          conditions: { StringEquals: { 'cloudwatch:namespace': METRIC_NAMESPACE } },
        }),
      ],
    });
    this.taskRole.attachInlinePolicy(policy);

    this.runtimePlatform = {
      cpuArchitecture: props.architecture === 'arm64' ? ecs.CpuArchitecture.ARM64 : ecs.CpuArchitecture.X86_64,
      operatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
    };
    this.taskDefinition = new ecs.FargateTaskDefinition(this, 'Task', {
      cpu: props.cpu,
      memoryLimitMiB: props.memoryMiB,
      ephemeralStorageGiB: props.ephemeralStorageGiB,
      taskRole: this.taskRole,
      runtimePlatform: this.runtimePlatform,
    });
    this.logGroup = new logs.LogGroup(this, 'LogGroup', { retention: props.logRetentionDays as logs.RetentionDays });
    // The image copies the CLI bundle: it must be today's, with no chunk of an earlier build.
    ensureImageBundle();
    this.image = ecs.ContainerImage.fromAsset(REPO_ROOT, {
      file: DOCKERFILE_IN_CONTEXT,
      // Exactly the files image-files.json lists (and the Dockerfile): nothing else is staged or hashed.
      exclude: assetExclude(),
      ignoreMode: ASSET_IGNORE_MODE,
      buildArgs: { LAYER_ARCH: props.architecture },
      platform: props.architecture === 'arm64' ? ecrAssets.Platform.LINUX_ARM64 : ecrAssets.Platform.LINUX_AMD64,
    });
    this.container = this.taskDefinition.addContainer(CONTAINER_NAME, {
      image: this.image,
      // The fan-out overrides the command per database: ["run", "--database", X, "--reason", "scheduled"].
      command: ['run'],
      environment: {
        ...props.environment,
        // The task's vCPUs (1,024 CPU units each) unless dumpJobs says otherwise: off Lambda the engine defaults to 1.
        DUMP_JOBS: props.environment.DUMP_JOBS ?? String(Math.max(1, Math.floor(props.cpu / 1024))),
        // The CLI's JSON lines, one per event, are what CloudWatch Logs keeps.
        NODE_OPTIONS: RUNNER_NODE_OPTIONS,
        // Checked by the engine's schema, like the function's.
        ...toEnvironment({
          // In a task the engine has no Lambda budget: the run's own deadline bounds it instead.
          RUN_TIMEOUT_SECONDS: props.runTimeout.toSeconds(),
          // As in Lambda: TLS verify-full against the RDS CA bundle unless the secret says otherwise.
          RDS_CA_BUNDLE: IMAGE_RDS_CA_BUNDLE,
          // BackupSucceeded & co. through PutMetricData: the same dead-man alarms as the function's.
          CLOUDWATCH_METRICS: true,
        }),
      },
      logging: ecs.LogDrivers.awsLogs({ streamPrefix: 'backup', logGroup: this.logGroup }),
      readonlyRootFilesystem: true,
      // No root, and no passwd entry needed: the numeric id of the base image's `node` user.
      user: IMAGE_USER,
    });
    // The only writable place: a task volume on the task's ephemeral storage (ECS gives it the
    // image's /tmp permissions, 1777). pg_dump streams to S3; restores and scratch files use it.
    this.taskDefinition.addVolume({ name: 'tmp' });
    this.container.addMountPoints({ sourceVolume: 'tmp', containerPath: IMAGE_TMP, readOnly: false });

    Validations.of(policy).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason: `cloudwatch:PutMetricData supports no resource-level permission: the statement is limited to the ${METRIC_NAMESPACE} namespace by its cloudwatch:namespace condition.`,
    });
    Validations.of(policy).acknowledge({
      id: props.objectsFinding,
      reason: "The backup function's own data statements: objects under the backup prefix only (timestamped keys), the one secret, the one topic, their keys.",
    });
    if (this.taskDefinition.executionRole) {
      Validations.of(this.taskDefinition.executionRole).acknowledge({
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason: 'Written by ECS for the execution role: ecr:GetAuthorizationToken, which supports no resource-level permission, beside pulls of this image and writes to this log group.',
      });
    }
    Annotations.of(props.network.vpc).acknowledgeWarning(
      '@aws-cdk/aws-ec2:vpcAttributeIsListTokenavailabilityZones',
      'The cluster only needs the VPC id: the task runs in the explicit subnets the state machine passes.',
    );
    Validations.of(this.taskDefinition).acknowledge({
      id: 'AwsSolutions-ECS2',
      reason: 'The environment holds settings only (bucket, prefix, secret ARN, topic ARN): the credentials are read from Secrets Manager at run time, never put in the task definition.',
    });
  }
}
