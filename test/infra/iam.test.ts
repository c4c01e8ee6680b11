/**
 * Every permission the deployed system needs, proven by an IAM policy evaluator instead of by
 * reading: the synthesized template is resolved to concrete (fake) ARNs and every principal →
 * action → resource the system uses is evaluated by `@cloud-copilot/iam-simulate` against the
 * identity policies, the resource policies (bucket, topic, queue, key, role trust) and their
 * conditions (TLS, source account and ARN, `s3:prefix`, `kms:ViaService`).
 *
 * The function's calls are not listed by hand: the handler is bundled (esbuild, as CDK does),
 * every source file of the bundle is scanned for `new XxxCommand(` and `new Upload(`, and each
 * call is mapped to its IAM actions by the table below. A call without a mapping fails the test
 * (add it, and the permission), and so does a mapped call the role cannot make.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runSimulation, type Simulation } from '@cloud-copilot/iam-simulate';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { build } from 'esbuild';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../infra/app.ts';
import { RemoteRestore } from '../../infra/constructs/remote-restore.ts';
import { verifyReportKeyFor } from '../../engine/restore/drill.ts';
import { buildCheckProbeKey, buildDumpKey, buildGlobalsKey, manifestKeyFor } from '../../engine/store/backup-key.ts';
import { REPO_ROOT } from '../../layers/pg-dump/paths.ts';

const ACCOUNT = '123456789012';
const OTHER_ACCOUNT = '210987654321';
const REGION = 'eu-west-3';
const SECRET = `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:prod/db-AbCdEf`;
const SECRET_KEY = `arn:aws:kms:${REGION}:${ACCOUNT}:key/0b7f2f4e-1111-2222-3333-444455556666`;
const FIXTURES = fileURLToPath(new URL('fixtures/', import.meta.url));
const TLS = { 'aws:SecureTransport': 'true' };

// ---------------------------------------------------------------------------------------------
// The function's AWS calls, from its code.

type Target = 'bucket' | 'object' | 'bucketKey' | 'secret' | 'secretKey' | 'topic' | 'topicKey';
interface Permission {
  readonly action: string;
  readonly on: Target;
  /** Only for the check's probe objects (the function's code uses it on nothing else). */
  readonly probesOnly?: true;
}

/**
 * SDK call → the IAM actions it needs (S3 calls KMS on the caller's behalf for SSE-KMS objects,
 * SNS for an encrypted topic, Secrets Manager for a secret under a customer key).
 */
const CALLS: Record<string, readonly Permission[]> = {
  ListObjectsV2Command: [{ action: 's3:ListBucket', on: 'bucket' }],
  GetObjectCommand: [
    { action: 's3:GetObject', on: 'object' },
    { action: 'kms:Decrypt', on: 'bucketKey' },
  ],
  // Pruning reads an object's Object Lock (retention, legal hold) with HeadObject: S3 reports them
  // only to a caller with these two actions.
  HeadObjectCommand: [
    { action: 's3:GetObject', on: 'object' },
    { action: 's3:GetObjectRetention', on: 'object' },
    { action: 's3:GetObjectLegalHold', on: 'object' },
  ],
  GetObjectLockConfigurationCommand: [{ action: 's3:GetBucketObjectLockConfiguration', on: 'bucket' }],
  PutObjectCommand: [
    { action: 's3:PutObject', on: 'object' },
    { action: 'kms:GenerateDataKey', on: 'bucketKey' },
  ],
  DeleteObjectCommand: [{ action: 's3:DeleteObject', on: 'object' }],
  // Check mode removes every version of its probe: a versioned bucket keeps no trace of it.
  'DeleteObjectCommand(VersionId)': [{ action: 's3:DeleteObjectVersion', on: 'object', probesOnly: true }],
  CreateMultipartUploadCommand: [
    { action: 's3:PutObject', on: 'object' },
    { action: 'kms:GenerateDataKey', on: 'bucketKey' },
  ],
  AbortMultipartUploadCommand: [{ action: 's3:AbortMultipartUpload', on: 'object' }],
  // Each run aborts the uploads a killed run left (engine/store/stale-uploads.ts).
  ListMultipartUploadsCommand: [{ action: 's3:ListBucketMultipartUploads', on: 'bucket' }],
  DeleteObjectsCommand: [{ action: 's3:DeleteObject', on: 'object' }],
  // The engine's own multipart upload: each part and the completion are s3:PutObject; under SSE-KMS
  // a part needs the data key (GenerateDataKey) and the completion decrypts it (Decrypt).
  UploadPartCommand: [
    { action: 's3:PutObject', on: 'object' },
    { action: 'kms:GenerateDataKey', on: 'bucketKey' },
  ],
  CompleteMultipartUploadCommand: [
    { action: 's3:PutObject', on: 'object' },
    { action: 'kms:GenerateDataKey', on: 'bucketKey' },
    { action: 'kms:Decrypt', on: 'bucketKey' },
  ],
  // @aws-sdk/lib-storage, should a bundle use it again: CreateMultipartUpload, UploadPart,
  // CompleteMultipartUpload (s3:PutObject), AbortMultipartUpload on failure.
  Upload: [
    { action: 's3:PutObject', on: 'object' },
    { action: 's3:AbortMultipartUpload', on: 'object' },
    { action: 'kms:GenerateDataKey', on: 'bucketKey' },
    { action: 'kms:Decrypt', on: 'bucketKey' },
  ],
  GetSecretValueCommand: [
    { action: 'secretsmanager:GetSecretValue', on: 'secret' },
    { action: 'kms:Decrypt', on: 'secretKey' },
  ],
  PublishCommand: [
    { action: 'sns:Publish', on: 'topic' },
    { action: 'kms:GenerateDataKey', on: 'topicKey' },
    { action: 'kms:Decrypt', on: 'topicKey' },
  ],
};

/**
 * Calls in the drill's bundle that the deployed drill never makes, and the variable that would
 * make it: an encrypted backup's age identity comes from AGE_IDENTITY_SECRET_ARN, which the stack
 * never sets (no drill function with encryptRecipients): the role has no secret, as the denial
 * test below proves.
 */
const DRILL_NEVER_CALLED: Record<string, string> = { GetSecretValueCommand: 'AGE_IDENTITY_SECRET_ARN' };

/** Every Lambda entry point (lambda/*.ts) and the function that runs it, by its description in the template. */
const ENTRY_FUNCTIONS: Record<string, RegExp> = {
  'handler.ts': /^pg-s3-backup: pg_dump of each database/,
  'drill-handler.ts': /^pg-s3-backup restore drill/,
};

/** lambda/'s entry points: the files that export a `handler` (powertools.ts, the handlers' presentation, is none). */
function lambdaEntries(): string[] {
  return readdirSync(join(REPO_ROOT, 'lambda')).filter((f) => f.endsWith('.ts') && /^export const handler = /m.test(readFileSync(join(REPO_ROOT, 'lambda', f), 'utf8')));
}

/**
 * The AWS calls one entry point's bundle makes, each with the source files it is made in. The
 * entry is bundled alone (esbuild, as CDK does) and only the code that survives tree shaking is
 * read, module by module (esbuild's `// path` markers), dependencies left out: a function is
 * asked only for the calls its own bundle holds, not every call some module it imports could make.
 */
async function entryCalls(entry: string): Promise<Map<string, string[]>> {
  const result = await build({
    entryPoints: [join(REPO_ROOT, 'lambda', entry)],
    absWorkingDir: REPO_ROOT,
    bundle: true,
    write: false,
    platform: 'node',
    format: 'esm',
    outdir: '/nonexistent',
    external: ['pg-native'],
    logLevel: 'silent',
  });
  const segments = result.outputFiles[0]!.text.split(/^\/\/ (\S+\.[cm]?[jt]s)$/m);
  const calls = new Map<string, string[]>();
  for (let i = 1; i < segments.length; i += 2) {
    const file = segments[i]!;
    if (file.includes('node_modules')) continue;
    const text = segments[i + 1]!;
    // Bundled code names an import through its module: `new import_client_s3.GetObjectCommand(`.
    const found = [
      // A call that names a version acts on versions: its own IAM action (s3:DeleteObjectVersion…).
      ...[...text.matchAll(/new\s+(?:[\w$]+\.)?([A-Z]\w*?Command|Upload)\d*\s*\(/g)].map((m) => {
        const args = text.slice(m.index + m[0].length, text.indexOf('})', m.index));
        return /\bVersionId\b/.test(args) ? `${m[1]!}(VersionId)` : m[1]!;
      }),
      // Paginators send the command they are named after.
      ...[...text.matchAll(/\bpaginate([A-Z]\w*?)\d*\)?\s*\(/g)].map((m) => `${m[1]!}Command`),
      // Aggregated clients (`new S3(…).putObject(…)`) hide their calls from this scan: refuse them.
      ...[...text.matchAll(/new\s+(?:[\w$]+\.)?(S3|SNS|SecretsManager|KMS|SQS|Lambda)\d*\s*\(/g)].map((m) => `aggregated client ${m[1]!} (use XxxCommand)`),
    ];
    for (const call of found) calls.set(call, [...new Set([...(calls.get(call) ?? []), file])]);
  }
  return calls;
}

// ---------------------------------------------------------------------------------------------
// The template, resolved to concrete ARNs.

interface CfnResource {
  Type: string;
  Properties: Record<string, unknown>;
}

function uuidOf(id: string): string {
  const h = createHash('sha256').update(id).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

class Resolved {
  constructor(readonly resources: Record<string, CfnResource>) {}

  private resource(id: string): CfnResource {
    const r = this.resources[id];
    if (!r) throw new Error(`no resource ${id} in the template`);
    return r;
  }

  ref(id: string): string {
    const pseudo: Record<string, string> = { 'AWS::AccountId': ACCOUNT, 'AWS::Region': REGION, 'AWS::Partition': 'aws', 'AWS::URLSuffix': 'amazonaws.com', 'AWS::StackName': 'PgS3Backup' };
    if (id in pseudo) return pseudo[id]!;
    const type = this.resource(id).Type;
    switch (type) {
      case 'AWS::S3::Bucket':
        return id.toLowerCase();
      case 'AWS::SNS::Topic':
        return `arn:aws:sns:${REGION}:${ACCOUNT}:${id}`;
      case 'AWS::SQS::Queue':
        return `https://sqs.${REGION}.amazonaws.com/${ACCOUNT}/${id}`;
      case 'AWS::KMS::Key':
        return uuidOf(id);
      case 'AWS::StepFunctions::StateMachine':
        return `arn:aws:states:${REGION}:${ACCOUNT}:stateMachine:${id}`;
      case 'AWS::ECS::TaskDefinition':
        return `arn:aws:ecs:${REGION}:${ACCOUNT}:task-definition/${String(this.resource(id).Properties.Family ?? id)}:1`;
      case 'AWS::ECS::Cluster':
      case 'AWS::Lambda::Function':
      case 'AWS::IAM::Role':
      case 'AWS::Logs::LogGroup':
      case 'AWS::CloudWatch::Alarm':
        return id;
      default:
        throw new Error(`Ref to a ${type} (${id}) is not modelled`);
    }
  }

  getAtt(id: string, attribute: string): string {
    const type = this.resource(id).Type;
    const key = `${type}.${attribute}`;
    switch (key) {
      case 'AWS::S3::Bucket.Arn':
        return `arn:aws:s3:::${this.ref(id)}`;
      case 'AWS::SQS::Queue.Arn':
        return `arn:aws:sqs:${REGION}:${ACCOUNT}:${id}`;
      case 'AWS::SQS::Queue.QueueName':
        return id;
      case 'AWS::KMS::Key.Arn':
        return `arn:aws:kms:${REGION}:${ACCOUNT}:key/${uuidOf(id)}`;
      case 'AWS::Lambda::Function.Arn':
        return `arn:aws:lambda:${REGION}:${ACCOUNT}:function:${id}`;
      case 'AWS::IAM::Role.Arn':
        return `arn:aws:iam::${ACCOUNT}:role/${id}`;
      case 'AWS::Logs::LogGroup.Arn':
        return `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:${id}:*`;
      case 'AWS::CloudWatch::Alarm.Arn':
        return `arn:aws:cloudwatch:${REGION}:${ACCOUNT}:alarm:${id}`;
      case 'AWS::ECS::Cluster.Arn':
        return `arn:aws:ecs:${REGION}:${ACCOUNT}:cluster/${id}`;
      default:
        throw new Error(`Fn::GetAtt ${key} is not modelled`);
    }
  }

  /** Any template value with its intrinsic functions replaced by concrete strings. */
  value(v: unknown): unknown {
    if (Array.isArray(v)) return v.map((x) => this.value(x));
    if (v === null || typeof v !== 'object') return v;
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o);
    if (keys.length === 1) {
      const [k] = keys as [string];
      const arg = o[k];
      if (k === 'Ref') return this.ref(arg as string);
      if (k === 'Fn::GetAtt') return this.getAtt(...(arg as [string, string]));
      if (k === 'Fn::Join') {
        const [sep, parts] = arg as [string, unknown[]];
        return parts.map((p) => String(this.value(p))).join(sep);
      }
      if (k === 'Fn::Sub') {
        const [text, vars] = typeof arg === 'string' ? [arg, {}] : (arg as [string, Record<string, unknown>]);
        return text.replace(/\$\{([^}]+)\}/g, (_m, name: string) => {
          if (name in vars) return String(this.value(vars[name]));
          const [id, att] = name.split('.');
          return att ? this.getAtt(id!, att) : this.ref(id!);
        });
      }
      if (k === 'Fn::Split') {
        const [sep, text] = arg as [string, unknown];
        return String(this.value(text)).split(sep);
      }
      if (k === 'Fn::Select') {
        const [index, list] = arg as [number | string, unknown];
        return (this.value(list) as unknown[])[Number(index)];
      }
      if (k.startsWith('Fn::')) throw new Error(`${k} is not modelled`);
    }
    return Object.fromEntries(Object.entries(o).map(([key, x]) => [key, this.value(x)]));
  }

  ofType(type: string): [string, CfnResource][] {
    return Object.entries(this.resources).filter(([, r]) => r.Type === type);
  }

  one(type: string, filter: (r: CfnResource) => boolean = () => true): string {
    const found = this.ofType(type).filter(([, r]) => filter(r));
    if (found.length !== 1) throw new Error(`expected one ${type}, found ${found.length}`);
    return found[0]![0];
  }

  /** Every identity policy of a role: its inline Policies and the AWS::IAM::Policy resources attached to it. */
  identityPolicies(roleId: string): Simulation['identityPolicies'] {
    const role = this.resource(roleId).Properties;
    expect(role.ManagedPolicyArns, `${roleId} has managed policies the evaluator cannot see`).toBeUndefined();
    const inline = ((role.Policies ?? []) as { PolicyName: string; PolicyDocument: unknown }[]).map((p) => ({ name: p.PolicyName, policy: this.value(p.PolicyDocument) }));
    const attached = this.ofType('AWS::IAM::Policy')
      .filter(([, p]) => JSON.stringify(p.Properties.Roles).includes(`{"Ref":"${roleId}"}`))
      .map(([id, p]) => ({ name: id, policy: this.value(p.Properties.PolicyDocument) }));
    return [...inline, ...attached];
  }

  /** The policy document of the policy resource of `type` attached (through `field`) to `targetRef`. */
  attachedPolicy(type: string, field: string, targetRef: unknown): unknown {
    const found = this.ofType(type).filter(([, p]) => JSON.stringify(p.Properties[field]).includes(JSON.stringify(targetRef)));
    if (found.length === 0) return undefined;
    expect(found, `one ${type} on ${JSON.stringify(targetRef)}`).toHaveLength(1);
    return this.value(found[0]![1].Properties.PolicyDocument);
  }
}

// ---------------------------------------------------------------------------------------------
// The evaluator.

type Decision = 'Allowed' | 'ImplicitlyDenied' | 'ExplicitlyDenied';

interface Case {
  readonly label: string;
  readonly principal: string;
  readonly action: string;
  readonly resource: string;
  readonly context?: Record<string, string | string[]>;
  readonly identityPolicies?: Simulation['identityPolicies'];
  readonly resourcePolicy?: unknown;
  readonly expected: Decision;
}

async function decide(c: Case): Promise<Decision> {
  const simulation: Simulation = {
    request: { principal: c.principal, action: c.action, resource: { resource: c.resource, accountId: ACCOUNT }, contextVariables: { ...TLS, ...c.context } },
    identityPolicies: c.identityPolicies ?? [],
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    ...(c.resourcePolicy ? { resourcePolicy: c.resourcePolicy } : {}),
  };
  const res = await runSimulation(simulation, {});
  if (res.resultType === 'error') throw new Error(`${c.label}: the simulator rejected the request: ${JSON.stringify(res.errors)}`);
  return res.overallResult as Decision;
}

/** Evaluates every case; the failures are reported together, each with its label. */
async function expectDecisions(cases: readonly Case[]): Promise<void> {
  const wrong: string[] = [];
  for (const c of cases) {
    const got = await decide(c);
    if (got !== c.expected) wrong.push(`${c.label}: ${c.principal} ${c.action} ${c.resource} → ${got}, expected ${c.expected}`);
  }
  expect(wrong).toEqual([]);
}

// ---------------------------------------------------------------------------------------------

interface Deployment {
  readonly r: Resolved;
  readonly prefix: string;
  readonly databases: readonly string[];
  readonly bucket: string;
  readonly bucketArn: string;
  readonly bucketKeyArn: string;
  readonly bucketPolicy: unknown;
  readonly bucketKeyPolicy: unknown;
  readonly topicArn: string;
  readonly topicPolicy: unknown;
  readonly topicKeyArn: string;
  readonly topicKeyPolicy: unknown;
  readonly queueArn: string;
  readonly queuePolicy: unknown;
  readonly functionArn: string;
  readonly functionRole: string;
  readonly scheduleRole: string;
  readonly drillFunctionArn: string;
  readonly drillRole: string;
  readonly drillScheduleRole: string;
}

/** The logical id of the function running `entry` (lambda/<entry>). */
function functionOf(r: Resolved, entry: string): string {
  const description = ENTRY_FUNCTIONS[entry];
  if (!description) throw new Error(`lambda/${entry} has no function in ENTRY_FUNCTIONS`);
  return r.one('AWS::Lambda::Function', (f) => description.test(String(f.Properties.Description)));
}

const roleOfFunction = (r: Resolved, fnId: string) => (r.resources[fnId]!.Properties.Role as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];
const roleOfSchedule = (r: Resolved, scheduleId: string) => (r.resources[scheduleId]!.Properties.Target as { RoleArn: { 'Fn::GetAtt': [string, string] } }).RoleArn['Fn::GetAtt'][0];

function deploy(context: Record<string, unknown>): Deployment {
  const { stack } = buildApp({
    context: { dbSecretArn: SECRET, ...context },
    layerDir: resolve(FIXTURES, 'layer', 'arm64'),
    serverLayerDir: resolve(FIXTURES, 'server-layer', 'arm64'),
    entry: 'test/infra/fixtures/handler.ts',
    drillEntry: 'test/infra/fixtures/handler.ts',
    now: new Date('2026-01-01T00:00:00Z'),
  });
  const r = new Resolved((Template.fromStack(stack).toJSON() as { Resources: Record<string, CfnResource> }).Resources);
  const bucketId = r.one('AWS::S3::Bucket', (b) => 'VersioningConfiguration' in b.Properties);
  const keyId = (purpose: string) => r.one('AWS::KMS::Key', (k) => String(k.Properties.Description).includes(purpose));
  const topicId = r.one('AWS::SNS::Topic');
  const queueId = r.one('AWS::SQS::Queue');
  const fnId = functionOf(r, 'handler.ts');
  const drillId = functionOf(r, 'drill-handler.ts');
  const fn = r.resources[fnId]!.Properties;
  const env = (fn.Environment as { Variables: Record<string, unknown> }).Variables;
  const keyPolicy = (id: string) => r.value(r.resources[id]!.Properties.KeyPolicy);
  return {
    r,
    prefix: env.BACKUP_PREFIX as string,
    databases: String(env.DATABASES ?? 'app').split(','),
    bucket: r.ref(bucketId),
    bucketArn: r.getAtt(bucketId, 'Arn'),
    bucketKeyArn: r.getAtt(keyId('backups'), 'Arn'),
    bucketKeyPolicy: keyPolicy(keyId('backups')),
    bucketPolicy: r.attachedPolicy('AWS::S3::BucketPolicy', 'Bucket', { Ref: bucketId }),
    topicArn: r.ref(topicId),
    topicPolicy: r.attachedPolicy('AWS::SNS::TopicPolicy', 'Topics', { Ref: topicId }),
    topicKeyArn: r.getAtt(keyId('alert'), 'Arn'),
    topicKeyPolicy: keyPolicy(keyId('alert')),
    queueArn: r.getAtt(queueId, 'Arn'),
    queuePolicy: r.attachedPolicy('AWS::SQS::QueuePolicy', 'Queues', { Ref: queueId }),
    functionArn: r.getAtt(fnId, 'Arn'),
    functionRole: roleOfFunction(r, fnId),
    scheduleRole: roleOfSchedule(r, r.one('AWS::Scheduler::Schedule', (sc) => !String(sc.Properties.Description).includes('drill'))),
    drillFunctionArn: r.getAtt(drillId, 'Arn'),
    drillRole: roleOfFunction(r, drillId),
    drillScheduleRole: roleOfSchedule(r, r.one('AWS::Scheduler::Schedule', (sc) => String(sc.Properties.Description).includes('drill'))),
  };
}

/** The function's session: what its code runs as. */
const sessionOf = (roleId: string) => `arn:aws:sts::${ACCOUNT}:assumed-role/${roleId}/BackupFunction`;

describe('every permission the system uses, evaluated by an IAM policy simulator', () => {
  let d: Deployment;
  let calls: Map<string, string[]>;
  let drillCalls: Map<string, string[]>;
  beforeAll(async () => {
    d = deploy({ databases: ['app', 'my db'], dbSecretKmsKeyArn: SECRET_KEY, alertEmails: ['ops@example.com'] });
    calls = await entryCalls('handler.ts');
    drillCalls = await entryCalls('drill-handler.ts');
  });

  /** The request of one permission of a function call, for one object key (by the backup function, or the role given). */
  function functionRequest(p: Permission, key: string, label: string, role: string = d.functionRole): Omit<Case, 'expected'> {
    const who = { principal: sessionOf(role), identityPolicies: d.r.identityPolicies(role) };
    const viaS3 = { 'kms:ViaService': `s3.${REGION}.amazonaws.com` };
    switch (p.on) {
      case 'bucket':
        // The engine lists `<prefix>`, `<prefix><database>/` and `<prefix>_globals/`: the narrowest is the key's folder.
        return { ...who, label, action: p.action, resource: d.bucketArn, context: { 's3:prefix': key.slice(0, key.lastIndexOf('/') + 1) }, resourcePolicy: d.bucketPolicy };
      case 'object':
        return { ...who, label, action: p.action, resource: `${d.bucketArn}/${key}`, resourcePolicy: d.bucketPolicy };
      case 'bucketKey':
        return { ...who, label, action: p.action, resource: d.bucketKeyArn, context: viaS3, resourcePolicy: d.bucketKeyPolicy };
      case 'secret':
        return { ...who, label, action: p.action, resource: SECRET };
      case 'secretKey':
        // A customer-managed key in the operator's account: its policy is theirs; the usual default delegates to IAM.
        return { ...who, label, action: p.action, resource: SECRET_KEY, context: { 'kms:ViaService': `secretsmanager.${REGION}.amazonaws.com` }, resourcePolicy: rootKeyPolicy() };
      case 'topic':
        return { ...who, label, action: p.action, resource: d.topicArn, resourcePolicy: d.topicPolicy };
      case 'topicKey':
        return { ...who, label, action: p.action, resource: d.topicKeyArn, context: { 'kms:ViaService': `sns.${REGION}.amazonaws.com` }, resourcePolicy: d.topicKeyPolicy };
    }
  }

  it('knows the function of every Lambda entry point', () => {
    expect(lambdaEntries().sort(), 'a new lambda/*.ts entry: add its function to ENTRY_FUNCTIONS and its calls to a test below').toEqual(Object.keys(ENTRY_FUNCTIONS).sort());
    for (const entry of lambdaEntries()) expect(() => functionOf(d.r, entry), entry).not.toThrow();
  });

  it('finds the function\'s AWS calls in its bundle, and knows the IAM actions of each', () => {
    const unmapped = [...calls.keys()].filter((c) => !(c in CALLS)).map((c) => `${c} (${calls.get(c)!.join(', ')})`);
    expect(unmapped, 'new AWS calls: add their IAM actions to CALLS in this test, and the permissions to the function role').toEqual([]);
    // The scan sees the calls it must see (a broken scan would prove nothing).
    for (const c of ['CreateMultipartUploadCommand', 'UploadPartCommand', 'CompleteMultipartUploadCommand', 'AbortMultipartUploadCommand', 'ListObjectsV2Command', 'GetObjectCommand', 'DeleteObjectsCommand', 'GetSecretValueCommand', 'PublishCommand', 'DeleteObjectCommand(VersionId)']) expect(calls.has(c), c).toBe(true);
  });

  it('lets the function make every call of its code, for every object it writes (each database, the globals, the check probes)', async () => {
    const at = new Date('2026-12-02T02:00:00.123Z');
    const backups = d.databases.flatMap((db) => {
      const dump = buildDumpKey(d.prefix, db, at);
      return [dump, manifestKeyFor(dump)];
    });
    backups.push(buildGlobalsKey(d.prefix, at));
    const probe = buildCheckProbeKey(d.prefix, at, 'a1b2c3');
    const probes = [probe, `${probe}-multipart`];
    const cases: Case[] = [];
    for (const call of calls.keys()) {
      for (const p of CALLS[call] ?? []) {
        const keys = p.probesOnly ? probes : p.on === 'bucket' || p.on === 'object' ? [...backups, ...probes] : [backups[0]!];
        for (const key of keys) cases.push({ ...functionRequest(p, key, `${call} → ${p.action} ${key}`), expected: 'Allowed' });
      }
    }
    // Listing the whole prefix (the databases under it).
    cases.push({ ...functionRequest({ action: 's3:ListBucket', on: 'bucket' }, d.prefix, 'list the prefix'), expected: 'Allowed' });
    // Lambda's on-failure destination sends with the function's role; its logs go to its log group.
    const who = { principal: sessionOf(d.functionRole), identityPolicies: d.r.identityPolicies(d.functionRole) };
    cases.push({ ...who, label: 'on-failure destination', action: 'sqs:SendMessage', resource: d.queueArn, resourcePolicy: d.queuePolicy, expected: 'Allowed' });
    const ownLogGroup = (d.r.resources[functionOf(d.r, 'handler.ts')]!.Properties.LoggingConfig as { LogGroup: { Ref: string } }).LogGroup.Ref;
    const logGroup = d.r.getAtt(ownLogGroup, 'Arn').replace(/:\*$/, '');
    cases.push({ ...who, label: 'logs', action: 'logs:PutLogEvents', resource: `${logGroup}:log-stream:2026/12/02/[$LATEST]abc`, expected: 'Allowed' });
    expect(cases.length).toBeGreaterThan(20);
    await expectDecisions(cases);
  });

  it('denies the function everything outside its prefix, other secrets, topics and keys, plain HTTP, and destroying versions', async () => {
    const who = { principal: sessionOf(d.functionRole), identityPolicies: d.r.identityPolicies(d.functionRole) };
    const inPrefix = buildDumpKey(d.prefix, 'app', new Date('2026-12-02T02:00:00Z'));
    const bucket = { resourcePolicy: d.bucketPolicy };
    await expectDecisions([
      { ...who, ...bucket, label: 'write outside the prefix', action: 's3:PutObject', resource: `${d.bucketArn}/elsewhere/app.dump`, expected: 'ImplicitlyDenied' },
      { ...who, ...bucket, label: 'write beside the prefix', action: 's3:PutObject', resource: `${d.bucketArn}/${d.prefix.slice(0, -1)}-other/app.dump`, expected: 'ImplicitlyDenied' },
      { ...who, ...bucket, label: 'delete outside the prefix', action: 's3:DeleteObject', resource: `${d.bucketArn}/elsewhere/app.dump`, expected: 'ImplicitlyDenied' },
      { ...who, ...bucket, label: 'read outside the prefix', action: 's3:GetObject', resource: `${d.bucketArn}/elsewhere/app.dump`, expected: 'ImplicitlyDenied' },
      { ...who, ...bucket, label: 'list outside the prefix', action: 's3:ListBucket', resource: d.bucketArn, context: { 's3:prefix': 'elsewhere/' }, expected: 'ImplicitlyDenied' },
      { ...who, ...bucket, label: 'list the whole bucket', action: 's3:ListBucket', resource: d.bucketArn, context: { 's3:prefix': '' }, expected: 'ImplicitlyDenied' },
      // Pruning leaves versions behind; the function can never remove them, nor the protections.
      { ...who, ...bucket, label: 'destroy a backup version', action: 's3:DeleteObjectVersion', resource: `${d.bucketArn}/${inPrefix}`, expected: 'ImplicitlyDenied' },
      { ...who, ...bucket, label: 'destroy a manifest version', action: 's3:DeleteObjectVersion', resource: `${d.bucketArn}/${manifestKeyFor(inPrefix)}`, expected: 'ImplicitlyDenied' },
      { ...who, ...bucket, label: 'destroy a globals version', action: 's3:DeleteObjectVersion', resource: `${d.bucketArn}/${buildGlobalsKey(d.prefix, new Date())}`, expected: 'ImplicitlyDenied' },
      // A database named `_check` keeps its dumps under `_check/<YYYY>/…`, never `_check/probe-…`.
      { ...who, ...bucket, label: 'destroy a version of database _check', action: 's3:DeleteObjectVersion', resource: `${d.bucketArn}/${buildDumpKey(d.prefix, '_check', new Date())}`, expected: 'ImplicitlyDenied' },
      { ...who, ...bucket, label: 'change the lifecycle', action: 's3:PutLifecycleConfiguration', resource: d.bucketArn, expected: 'ImplicitlyDenied' },
      { ...who, ...bucket, label: 'suspend versioning', action: 's3:PutBucketVersioning', resource: d.bucketArn, expected: 'ImplicitlyDenied' },
      { ...who, ...bucket, label: 'write over plain HTTP', action: 's3:PutObject', resource: `${d.bucketArn}/${inPrefix}`, context: { 'aws:SecureTransport': 'false' }, expected: 'ExplicitlyDenied' },
      { ...who, label: 'another secret', action: 'secretsmanager:GetSecretValue', resource: `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:prod/other-XyZ123`, expected: 'ImplicitlyDenied' },
      { ...who, label: 'the secret key, not through Secrets Manager', action: 'kms:Decrypt', resource: SECRET_KEY, resourcePolicy: rootKeyPolicy(), expected: 'ImplicitlyDenied' },
      { ...who, label: 'another topic', action: 'sns:Publish', resource: `arn:aws:sns:${REGION}:${ACCOUNT}:other`, expected: 'ImplicitlyDenied' },
      { ...who, label: 'publish over plain HTTP', action: 'sns:Publish', resource: d.topicArn, resourcePolicy: d.topicPolicy, context: { 'aws:SecureTransport': 'false' }, expected: 'ExplicitlyDenied' },
      { ...who, label: 'another key', action: 'kms:Decrypt', resource: `arn:aws:kms:${REGION}:${ACCOUNT}:key/${uuidOf('other')}`, expected: 'ImplicitlyDenied' },
      { ...who, label: 'manage the backup key', action: 'kms:ScheduleKeyDeletion', resource: d.bucketKeyArn, resourcePolicy: d.bucketKeyPolicy, expected: 'ImplicitlyDenied' },
      { ...who, label: 'invoke itself', action: 'lambda:InvokeFunction', resource: d.functionArn, expected: 'ImplicitlyDenied' },
    ]);
  });

  it('finds the drill function\'s AWS calls in its own bundle: it reads, lists, writes its reports and alerts, nothing more', () => {
    const unmapped = [...drillCalls.keys()].filter((c) => !(c in CALLS)).map((c) => `${c} (${drillCalls.get(c)!.join(', ')})`);
    expect(unmapped, 'new AWS calls: add their IAM actions to CALLS in this test, and the permissions to the drill role').toEqual([]);
    expect([...drillCalls.keys()].filter((c) => !(c in DRILL_NEVER_CALLED)).sort()).toEqual(['GetObjectCommand', 'ListObjectsV2Command', 'PublishCommand', 'PutObjectCommand']);
    // The calls it can never make as deployed: the environment that would trigger them is absent.
    const env = (d.r.resources[functionOf(d.r, 'drill-handler.ts')]!.Properties.Environment as { Variables: Record<string, unknown> }).Variables;
    for (const [call, variable] of Object.entries(DRILL_NEVER_CALLED)) if (drillCalls.has(call)) expect(env[variable], `${call} needs ${variable}`).toBeUndefined();
    // The tree-shaken bundle is what is read: the backup's calls (in modules the drill imports) are not in it.
    expect(calls.has('DeleteObjectsCommand') && !drillCalls.has('DeleteObjectsCommand')).toBe(true);
  });

  it('lets the drill function make every call of its code: read each backup, write its .verify.json report, list, alert', async () => {
    const at = new Date('2026-12-02T02:00:00.123Z');
    const dumps = d.databases.map((db) => buildDumpKey(d.prefix, db, at));
    const reads = dumps.flatMap((dump) => [dump, manifestKeyFor(dump)]);
    const reports = dumps.map(verifyReportKeyFor);
    const cases: Case[] = [];
    for (const call of drillCalls.keys()) {
      if (call in DRILL_NEVER_CALLED) continue;
      for (const p of CALLS[call] ?? []) {
        // The drill writes its reports only; it reads dumps and manifests.
        const keys = p.on === 'bucket' || p.on === 'object' ? (p.action === 's3:PutObject' ? reports : reads) : [dumps[0]!];
        for (const key of keys) cases.push({ ...functionRequest(p, key, `drill ${call} → ${p.action} ${key}`, d.drillRole), expected: 'Allowed' });
      }
    }
    cases.push({ ...functionRequest({ action: 's3:ListBucket', on: 'bucket' }, d.prefix, 'drill lists the prefix', d.drillRole), expected: 'Allowed' });
    const who = { principal: sessionOf(d.drillRole), identityPolicies: d.r.identityPolicies(d.drillRole) };
    const drillLogGroup = (d.r.resources[functionOf(d.r, 'drill-handler.ts')]!.Properties.LoggingConfig as { LogGroup: { Ref: string } }).LogGroup.Ref;
    cases.push({ ...who, label: 'drill logs', action: 'logs:PutLogEvents', resource: `${d.r.getAtt(drillLogGroup, 'Arn').replace(/:\*$/, '')}:log-stream:2026/12/02/[$LATEST]abc`, expected: 'Allowed' });
    expect(cases.length).toBeGreaterThan(10);
    await expectDecisions(cases);
  });

  it('denies the drill function any write but its reports, anything outside the prefix, every secret, and other functions', async () => {
    const who = { principal: sessionOf(d.drillRole), identityPolicies: d.r.identityPolicies(d.drillRole) };
    const dump = buildDumpKey(d.prefix, 'app', new Date('2026-12-02T02:00:00Z'));
    const bucket = { resourcePolicy: d.bucketPolicy };
    await expectDecisions([
      { ...who, ...bucket, label: 'overwrite a dump', action: 's3:PutObject', resource: `${d.bucketArn}/${dump}`, expected: 'ImplicitlyDenied' },
      { ...who, ...bucket, label: 'overwrite a manifest', action: 's3:PutObject', resource: `${d.bucketArn}/${manifestKeyFor(dump)}`, expected: 'ImplicitlyDenied' },
      { ...who, ...bucket, label: 'delete a dump', action: 's3:DeleteObject', resource: `${d.bucketArn}/${dump}`, expected: 'ImplicitlyDenied' },
      { ...who, ...bucket, label: 'delete its report', action: 's3:DeleteObject', resource: `${d.bucketArn}/${verifyReportKeyFor(dump)}`, expected: 'ImplicitlyDenied' },
      { ...who, ...bucket, label: 'destroy a version', action: 's3:DeleteObjectVersion', resource: `${d.bucketArn}/${dump}`, expected: 'ImplicitlyDenied' },
      { ...who, ...bucket, label: 'a report outside the prefix', action: 's3:PutObject', resource: `${d.bucketArn}/elsewhere/${verifyReportKeyFor('app.dump')}`, expected: 'ImplicitlyDenied' },
      { ...who, ...bucket, label: 'read outside the prefix', action: 's3:GetObject', resource: `${d.bucketArn}/elsewhere/app.dump`, expected: 'ImplicitlyDenied' },
      { ...who, ...bucket, label: 'list outside the prefix', action: 's3:ListBucket', resource: d.bucketArn, context: { 's3:prefix': 'elsewhere/' }, expected: 'ImplicitlyDenied' },
      { ...who, ...bucket, label: 'list the whole bucket', action: 's3:ListBucket', resource: d.bucketArn, context: { 's3:prefix': '' }, expected: 'ImplicitlyDenied' },
      { ...who, ...bucket, label: 'read over plain HTTP', action: 's3:GetObject', resource: `${d.bucketArn}/${dump}`, context: { 'aws:SecureTransport': 'false' }, expected: 'ExplicitlyDenied' },
      { ...who, label: 'the database secret', action: 'secretsmanager:GetSecretValue', resource: SECRET, expected: 'ImplicitlyDenied' },
      { ...who, label: 'the secret key', action: 'kms:Decrypt', resource: SECRET_KEY, context: { 'kms:ViaService': `secretsmanager.${REGION}.amazonaws.com` }, resourcePolicy: rootKeyPolicy(), expected: 'ImplicitlyDenied' },
      { ...who, label: 'another topic', action: 'sns:Publish', resource: `arn:aws:sns:${REGION}:${ACCOUNT}:other`, expected: 'ImplicitlyDenied' },
      { ...who, label: 'invoke the backup', action: 'lambda:InvokeFunction', resource: d.functionArn, expected: 'ImplicitlyDenied' },
    ]);
  });

  it('lets the drill schedule assume its role and invoke the drill function only', async () => {
    const trust = d.r.value(d.r.resources[d.drillScheduleRole]!.Properties.AssumeRolePolicyDocument);
    const who = { principal: sessionOf(d.drillScheduleRole), identityPolicies: d.r.identityPolicies(d.drillScheduleRole) };
    await expectDecisions([
      { label: 'assume the role', principal: 'scheduler.amazonaws.com', action: 'sts:AssumeRole', resource: d.r.getAtt(d.drillScheduleRole, 'Arn'), context: { 'aws:SourceAccount': ACCOUNT }, resourcePolicy: trust, expected: 'Allowed' },
      { label: 'another account\'s schedule', principal: 'scheduler.amazonaws.com', action: 'sts:AssumeRole', resource: d.r.getAtt(d.drillScheduleRole, 'Arn'), context: { 'aws:SourceAccount': OTHER_ACCOUNT }, resourcePolicy: trust, expected: 'ImplicitlyDenied' },
      { ...who, label: 'invoke the drill', action: 'lambda:InvokeFunction', resource: d.drillFunctionArn, expected: 'Allowed' },
      { ...who, label: 'invoke the backup', action: 'lambda:InvokeFunction', resource: d.functionArn, expected: 'ImplicitlyDenied' },
      { ...who, label: 'read the backups', action: 's3:GetObject', resource: `${d.bucketArn}/${d.prefix}app/x.dump`, resourcePolicy: d.bucketPolicy, expected: 'ImplicitlyDenied' },
    ]);
  });

  it('lets every alarm publish to the encrypted topic (topic policy and key policy), and only this account\'s alarms over TLS', async () => {
    const alarms = d.r.ofType('AWS::CloudWatch::Alarm');
    expect(alarms.length).toBeGreaterThanOrEqual(4);
    const cases: Case[] = [];
    for (const [id, alarm] of alarms) {
      const actions = d.r.value([...(alarm.Properties.AlarmActions as unknown[]), ...(alarm.Properties.OKActions as unknown[])]) as string[];
      expect(new Set(actions), id).toEqual(new Set([d.topicArn]));
      const context = { 'aws:SourceAccount': ACCOUNT, 'aws:SourceArn': d.r.getAtt(id, 'Arn') };
      cases.push(
        { label: `${id} publishes`, principal: 'cloudwatch.amazonaws.com', action: 'sns:Publish', resource: d.topicArn, context, resourcePolicy: d.topicPolicy, expected: 'Allowed' },
        { label: `${id} encrypts`, principal: 'cloudwatch.amazonaws.com', action: 'kms:GenerateDataKey', resource: d.topicKeyArn, context, resourcePolicy: d.topicKeyPolicy, expected: 'Allowed' },
        { label: `${id} decrypts`, principal: 'cloudwatch.amazonaws.com', action: 'kms:Decrypt', resource: d.topicKeyArn, context, resourcePolicy: d.topicKeyPolicy, expected: 'Allowed' },
      );
    }
    const foreign = { 'aws:SourceAccount': OTHER_ACCOUNT, 'aws:SourceArn': `arn:aws:cloudwatch:${REGION}:${OTHER_ACCOUNT}:alarm:theirs` };
    cases.push(
      { label: 'another account\'s alarm', principal: 'cloudwatch.amazonaws.com', action: 'sns:Publish', resource: d.topicArn, context: foreign, resourcePolicy: d.topicPolicy, expected: 'ImplicitlyDenied' },
      { label: 'another account\'s alarm, key', principal: 'cloudwatch.amazonaws.com', action: 'kms:GenerateDataKey', resource: d.topicKeyArn, context: foreign, resourcePolicy: d.topicKeyPolicy, expected: 'ImplicitlyDenied' },
      {
        label: 'another region\'s alarm',
        principal: 'cloudwatch.amazonaws.com',
        action: 'sns:Publish',
        resource: d.topicArn,
        context: { 'aws:SourceAccount': ACCOUNT, 'aws:SourceArn': `arn:aws:cloudwatch:us-east-1:${ACCOUNT}:alarm:x` },
        resourcePolicy: d.topicPolicy,
        expected: 'ImplicitlyDenied',
      },
      {
        label: 'an alarm over plain HTTP',
        principal: 'cloudwatch.amazonaws.com',
        action: 'sns:Publish',
        resource: d.topicArn,
        context: { 'aws:SourceAccount': ACCOUNT, 'aws:SourceArn': `arn:aws:cloudwatch:${REGION}:${ACCOUNT}:alarm:x`, 'aws:SecureTransport': 'false' },
        resourcePolicy: d.topicPolicy,
        expected: 'ExplicitlyDenied',
      },
      { label: 'EventBridge', principal: 'events.amazonaws.com', action: 'sns:Publish', resource: d.topicArn, context: { 'aws:SourceAccount': ACCOUNT }, resourcePolicy: d.topicPolicy, expected: 'ImplicitlyDenied' },
    );
    await expectDecisions(cases);
  });

  it('lets the schedule assume its role, invoke the function and dead-letter to the queue; nothing else', async () => {
    const trust = d.r.value(d.r.resources[d.scheduleRole]!.Properties.AssumeRolePolicyDocument);
    const roleArn = d.r.getAtt(d.scheduleRole, 'Arn');
    const who = { principal: sessionOf(d.scheduleRole), identityPolicies: d.r.identityPolicies(d.scheduleRole) };
    await expectDecisions([
      { label: 'assume the role', principal: 'scheduler.amazonaws.com', action: 'sts:AssumeRole', resource: roleArn, context: { 'aws:SourceAccount': ACCOUNT }, resourcePolicy: trust, expected: 'Allowed' },
      { label: 'another account\'s schedule', principal: 'scheduler.amazonaws.com', action: 'sts:AssumeRole', resource: roleArn, context: { 'aws:SourceAccount': OTHER_ACCOUNT }, resourcePolicy: trust, expected: 'ImplicitlyDenied' },
      { ...who, label: 'invoke the function', action: 'lambda:InvokeFunction', resource: d.functionArn, expected: 'Allowed' },
      { ...who, label: 'dead-letter', action: 'sqs:SendMessage', resource: d.queueArn, resourcePolicy: d.queuePolicy, expected: 'Allowed' },
      { ...who, label: 'dead-letter over plain HTTP', action: 'sqs:SendMessage', resource: d.queueArn, resourcePolicy: d.queuePolicy, context: { 'aws:SecureTransport': 'false' }, expected: 'ExplicitlyDenied' },
      { ...who, label: 'another function', action: 'lambda:InvokeFunction', resource: `arn:aws:lambda:${REGION}:${ACCOUNT}:function:other`, expected: 'ImplicitlyDenied' },
      { ...who, label: 'read the backups', action: 's3:GetObject', resource: `${d.bucketArn}/${d.prefix}app/x.dump`, resourcePolicy: d.bucketPolicy, expected: 'ImplicitlyDenied' },
    ]);
  });

  it('lets Lambda assume the function role, and S3 deliver the access logs of the backup bucket only', async () => {
    const trust = d.r.value(d.r.resources[d.functionRole]!.Properties.AssumeRolePolicyDocument);
    const logsId = d.r.one('AWS::S3::Bucket', (b) => !('VersioningConfiguration' in b.Properties));
    const logsPolicy = d.r.attachedPolicy('AWS::S3::BucketPolicy', 'Bucket', { Ref: logsId });
    const logObject = `${d.r.getAtt(logsId, 'Arn')}/backups/2026-12-02-02-00-00-ABCDEF`;
    await expectDecisions([
      { label: 'Lambda assumes the function role', principal: 'lambda.amazonaws.com', action: 'sts:AssumeRole', resource: d.r.getAtt(d.functionRole, 'Arn'), resourcePolicy: trust, expected: 'Allowed' },
      { label: 'the schedule cannot assume the function role', principal: 'scheduler.amazonaws.com', action: 'sts:AssumeRole', resource: d.r.getAtt(d.functionRole, 'Arn'), resourcePolicy: trust, expected: 'ImplicitlyDenied' },
      {
        label: 'access logs of the backup bucket',
        principal: 'logging.s3.amazonaws.com',
        action: 's3:PutObject',
        resource: logObject,
        context: { 'aws:SourceAccount': ACCOUNT, 'aws:SourceArn': d.bucketArn },
        resourcePolicy: logsPolicy,
        expected: 'Allowed',
      },
      {
        label: 'access logs of another bucket',
        principal: 'logging.s3.amazonaws.com',
        action: 's3:PutObject',
        resource: logObject,
        context: { 'aws:SourceAccount': ACCOUNT, 'aws:SourceArn': 'arn:aws:s3:::someone-else' },
        resourcePolicy: logsPolicy,
        expected: 'ImplicitlyDenied',
      },
    ]);
  });
});

describe('encrypted backups drilled in the stack: the age identity secret', () => {
  const IDENTITY = `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:prod/age-identity-Q1w2E3`;
  const IDENTITY_KEY = `arn:aws:kms:${REGION}:${ACCOUNT}:key/7a1c2d3e-4444-5555-6666-777788889999`;
  const RECIPIENT = 'age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p';

  it('lets the drill read that one secret (and decrypt with its key through Secrets Manager only), nothing else; its ARN, never the identity, in the environment', async () => {
    const d = deploy({ databases: ['app'], encryptRecipients: RECIPIENT, drillIdentitySecretArn: IDENTITY, drillIdentitySecretKmsKeyArn: IDENTITY_KEY });
    const who = { principal: sessionOf(d.drillRole), identityPolicies: d.r.identityPolicies(d.drillRole) };
    const viaSecrets = { 'kms:ViaService': `secretsmanager.${REGION}.amazonaws.com` };
    await expectDecisions([
      { ...who, label: 'the identity secret', action: 'secretsmanager:GetSecretValue', resource: IDENTITY, expected: 'Allowed' },
      { ...who, label: 'its key, through Secrets Manager', action: 'kms:Decrypt', resource: IDENTITY_KEY, context: viaSecrets, resourcePolicy: rootKeyPolicy(), expected: 'Allowed' },
      { ...who, label: 'its key, not through Secrets Manager', action: 'kms:Decrypt', resource: IDENTITY_KEY, resourcePolicy: rootKeyPolicy(), expected: 'ImplicitlyDenied' },
      { ...who, label: 'its key, through S3', action: 'kms:Decrypt', resource: IDENTITY_KEY, context: { 'kms:ViaService': `s3.${REGION}.amazonaws.com` }, resourcePolicy: rootKeyPolicy(), expected: 'ImplicitlyDenied' },
      { ...who, label: 'the database secret\'s key', action: 'kms:Decrypt', resource: SECRET_KEY, context: viaSecrets, resourcePolicy: rootKeyPolicy(), expected: 'ImplicitlyDenied' },
      { ...who, label: 'the database secret', action: 'secretsmanager:GetSecretValue', resource: SECRET, expected: 'ImplicitlyDenied' },
      { ...who, label: 'another secret', action: 'secretsmanager:GetSecretValue', resource: `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:prod/other-AbCdEf`, expected: 'ImplicitlyDenied' },
      { ...who, label: 'change the identity', action: 'secretsmanager:PutSecretValue', resource: IDENTITY, expected: 'ImplicitlyDenied' },
      { ...who, label: 'encrypt with its key', action: 'kms:Encrypt', resource: IDENTITY_KEY, context: viaSecrets, resourcePolicy: rootKeyPolicy(), expected: 'ImplicitlyDenied' },
      // The backup function never needs the identity (it encrypts to the recipients).
      { principal: sessionOf(d.functionRole), identityPolicies: d.r.identityPolicies(d.functionRole), label: 'the backup function and the identity', action: 'secretsmanager:GetSecretValue', resource: IDENTITY, expected: 'ImplicitlyDenied' },
    ]);
    const env = (d.r.resources[functionOf(d.r, 'drill-handler.ts')]!.Properties.Environment as { Variables: Record<string, unknown> }).Variables;
    expect(env.AGE_IDENTITY_SECRET_ARN).toBe(IDENTITY);
    expect(JSON.stringify(d.r.resources)).not.toMatch(/AGE-SECRET-KEY/i);
  });
});

describe('an imported bucket and its key', () => {
  it('grants the function its calls on the imported bucket under the configured prefix, and nothing beside it', async () => {
    const keyArn = `arn:aws:kms:${REGION}:${ACCOUNT}:key/${uuidOf('imported')}`;
    const d = deployImported(keyArn);
    const who = { principal: sessionOf(d.role), identityPolicies: d.r.identityPolicies(d.role) };
    const drill = { principal: sessionOf(d.drillRole), identityPolicies: d.r.identityPolicies(d.drillRole) };
    const dump = buildDumpKey('db/nightly/', 'app', new Date('2026-12-02T02:00:00Z'));
    // The bucket's and the key's own policies belong to their owner: the usual defaults (no bucket
    // policy, a key policy delegating to IAM) are assumed.
    await expectDecisions([
      { ...who, label: 'write', action: 's3:PutObject', resource: `arn:aws:s3:::my-backups/${dump}`, expected: 'Allowed' },
      { ...who, label: 'abort', action: 's3:AbortMultipartUpload', resource: `arn:aws:s3:::my-backups/${dump}`, expected: 'Allowed' },
      { ...who, label: 'list', action: 's3:ListBucket', resource: 'arn:aws:s3:::my-backups', context: { 's3:prefix': 'db/nightly/app/' }, expected: 'Allowed' },
      { ...who, label: 'encrypt', action: 'kms:GenerateDataKey', resource: keyArn, resourcePolicy: rootKeyPolicy(), expected: 'Allowed' },
      { ...who, label: 'write elsewhere', action: 's3:PutObject', resource: 'arn:aws:s3:::my-backups/db/other/app.dump', expected: 'ImplicitlyDenied' },
      { ...who, label: 'list elsewhere', action: 's3:ListBucket', resource: 'arn:aws:s3:::my-backups', context: { 's3:prefix': 'db/' }, expected: 'ImplicitlyDenied' },
      { ...drill, label: 'drill reads a dump', action: 's3:GetObject', resource: `arn:aws:s3:::my-backups/${dump}`, expected: 'Allowed' },
      { ...drill, label: 'drill decrypts it', action: 'kms:Decrypt', resource: keyArn, resourcePolicy: rootKeyPolicy(), expected: 'Allowed' },
      { ...drill, label: 'drill writes its report', action: 's3:PutObject', resource: `arn:aws:s3:::my-backups/${verifyReportKeyFor(dump)}`, expected: 'Allowed' },
      { ...drill, label: 'drill overwrites no dump', action: 's3:PutObject', resource: `arn:aws:s3:::my-backups/${dump}`, expected: 'ImplicitlyDenied' },
      { ...drill, label: 'drill reads nothing elsewhere', action: 's3:GetObject', resource: 'arn:aws:s3:::my-backups/db/other/app.dump', expected: 'ImplicitlyDenied' },
    ]);
  });
});

function deployImported(keyArn: string): { r: Resolved; role: string; drillRole: string } {
  const { stack } = buildApp({
    context: { dbSecretArn: SECRET, bucketName: 'my-backups', bucketKmsKeyArn: keyArn, backupPrefix: 'db/nightly/' },
    layerDir: resolve(FIXTURES, 'layer', 'arm64'),
    serverLayerDir: resolve(FIXTURES, 'server-layer', 'arm64'),
    entry: 'test/infra/fixtures/handler.ts',
    drillEntry: 'test/infra/fixtures/handler.ts',
    now: new Date('2026-01-01T00:00:00Z'),
  });
  const r = new Resolved((Template.fromStack(stack).toJSON() as { Resources: Record<string, CfnResource> }).Resources);
  return { r, role: roleOfFunction(r, functionOf(r, 'handler.ts')), drillRole: roleOfFunction(r, functionOf(r, 'drill-handler.ts')) };
}

/** A KMS key policy as AWS creates it by default: the account (IAM policies) decides. */
function rootKeyPolicy(): unknown {
  return { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Principal: { AWS: `arn:aws:iam::${ACCOUNT}:root` }, Action: 'kms:*', Resource: '*' }] };
}

describe('the fan-out: the schedule, the state machine and the Fargate task', () => {
  it('lets the schedule start the state machine only, the state machine invoke the function and run the one task, and the task do the backup\'s calls only', async () => {
    const d = deploy({ vpcId: 'vpc-0123456789abcdef0', subnetIds: ['subnet-0123456789abcdef0'], runner: 'auto', databases: '*' });
    const { r } = d;
    const roleOf = (value: unknown) => (value as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];
    const smId = r.one('AWS::StepFunctions::StateMachine');
    const smRole = roleOf(r.resources[smId]!.Properties.RoleArn);
    // The backup runner's (the other one is restore --remote's, below).
    const taskDefId = r.one('AWS::ECS::TaskDefinition', (t) => JSON.stringify(t.Properties.TaskRoleArn).includes('FargateTaskRole'));
    const taskDef = r.resources[taskDefId]!.Properties;
    const taskRole = roleOf(taskDef.TaskRoleArn);
    const executionRole = roleOf(taskDef.ExecutionRoleArn);
    const scheduler = { principal: `arn:aws:sts::${ACCOUNT}:assumed-role/${d.scheduleRole}/scheduler`, identityPolicies: r.identityPolicies(d.scheduleRole) };
    const machine = { principal: `arn:aws:sts::${ACCOUNT}:assumed-role/${smRole}/states`, identityPolicies: r.identityPolicies(smRole) };
    const task = { principal: `arn:aws:sts::${ACCOUNT}:assumed-role/${taskRole}/task`, identityPolicies: r.identityPolicies(taskRole) };
    const dump = buildDumpKey(d.prefix, 'app', new Date('2026-12-02T02:00:00.123Z'));
    const roleArn = (id: string) => r.getAtt(id, 'Arn');
    await expectDecisions([
      { ...scheduler, label: 'schedule starts the fan-out', action: 'states:StartExecution', resource: r.ref(smId), expected: 'Allowed' },
      { ...scheduler, label: 'schedule no longer invokes the function', action: 'lambda:InvokeFunction', resource: d.functionArn, expected: 'ImplicitlyDenied' },
      { ...machine, label: 'plan, backup, summary', action: 'lambda:InvokeFunction', resource: d.functionArn, expected: 'Allowed' },
      { ...machine, label: 'RunTask.sync', action: 'ecs:RunTask', resource: r.ref(taskDefId), expected: 'Allowed' },
      { ...machine, label: 'passes the task role', action: 'iam:PassRole', resource: roleArn(taskRole), expected: 'Allowed' },
      { ...machine, label: 'passes the execution role', action: 'iam:PassRole', resource: roleArn(executionRole), expected: 'Allowed' },
      { ...machine, label: 'never the function role', action: 'iam:PassRole', resource: roleArn(d.functionRole), expected: 'ImplicitlyDenied' },
      { ...machine, label: 'never the bucket', action: 's3:GetObject', resource: `${d.bucketArn}/${dump}`, resourcePolicy: d.bucketPolicy, expected: 'ImplicitlyDenied' },
      { ...task, label: 'task writes a dump', action: 's3:PutObject', resource: `${d.bucketArn}/${dump}`, resourcePolicy: d.bucketPolicy, expected: 'Allowed' },
      { ...task, label: 'task uses the bucket key', action: 'kms:GenerateDataKey', resource: d.bucketKeyArn, context: { 'kms:ViaService': `s3.${REGION}.amazonaws.com` }, resourcePolicy: d.bucketKeyPolicy, expected: 'Allowed' },
      { ...task, label: 'task lists its prefix', action: 's3:ListBucket', resource: d.bucketArn, context: { 's3:prefix': d.prefix }, resourcePolicy: d.bucketPolicy, expected: 'Allowed' },
      { ...task, label: 'task reads the secret', action: 'secretsmanager:GetSecretValue', resource: SECRET, expected: 'Allowed' },
      { ...task, label: 'task alerts', action: 'sns:Publish', resource: d.topicArn, resourcePolicy: d.topicPolicy, expected: 'Allowed' },
      { ...task, label: 'task writes nothing outside the prefix', action: 's3:PutObject', resource: `${d.bucketArn}/elsewhere/x.dump`, resourcePolicy: d.bucketPolicy, expected: 'ImplicitlyDenied' },
      { ...task, label: 'task reads no other secret', action: 'secretsmanager:GetSecretValue', resource: `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:other-AbCdEf`, expected: 'ImplicitlyDenied' },
      { ...task, label: 'task destroys no version (no check probes)', action: 's3:DeleteObjectVersion', resource: `${d.bucketArn}/${buildCheckProbeKey(d.prefix, new Date('2026-12-02T02:00:00.123Z'), 'a1b2c3')}`, resourcePolicy: d.bucketPolicy, expected: 'ImplicitlyDenied' },
    ]);
  });
});


describe('restore --remote: the operator policy and the restore task', () => {
  let d: Deployment;
  beforeAll(() => {
    d = deploy({ vpcId: 'vpc-0123456789abcdef0', subnetIds: ['subnet-0123456789abcdef0'], runner: 'fargate', databases: 'app' });
  });

  it('lets an operator with OperatorPolicyArn run, follow and stop the restore task only, and pass its two roles to ECS only', async () => {
    const { r } = d;
    const roleOf = (value: unknown) => (value as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];
    const roleArn = (id: string) => r.getAtt(id, 'Arn');
    const taskDefs = (role: string) => r.one('AWS::ECS::TaskDefinition', (t) => JSON.stringify(t.Properties.TaskRoleArn).includes(role));
    const restoreDef = taskDefs('RemoteTaskRole');
    const backupDef = taskDefs('FargateTaskRole');
    const restore = r.resources[restoreDef]!.Properties;
    const [taskRole, executionRole] = [roleOf(restore.TaskRoleArn), roleOf(restore.ExecutionRoleArn)];
    const backupTaskRole = roleOf(r.resources[backupDef]!.Properties.TaskRoleArn);
    const cluster = r.getAtt(r.one('AWS::ECS::Cluster'), 'Arn');
    const clusterName = r.ref(r.one('AWS::ECS::Cluster'));
    const groupOf = (id: string) => `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:${r.ref(id)}`;
    const restoreLogs = groupOf(r.ofType('AWS::Logs::LogGroup').find(([id]) => id.startsWith('RemoteLogGroup'))![0]);
    const backupLogs = groupOf(r.ofType('AWS::Logs::LogGroup').find(([id]) => id.startsWith('FargateLogGroup'))![0]);
    const [policyId, policy] = r.ofType('AWS::IAM::ManagedPolicy').find(([id]) => id.startsWith('RemoteOperatorPolicy'))!;
    const operator = { principal: `arn:aws:iam::${ACCOUNT}:user/operator`, identityPolicies: [{ name: policyId, policy: r.value(policy.Properties.PolicyDocument) }] };
    const inCluster = { 'ecs:cluster': cluster };
    const toEcs = { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' };
    const task = (name: string) => `arn:aws:ecs:${REGION}:${ACCOUNT}:task/${name}/0123456789abcdef0123456789abcdef`;
    const stream = `restore/engine/0123456789abcdef0123456789abcdef`;
    const dump = buildDumpKey(d.prefix, 'app', new Date('2026-12-02T02:00:00.123Z'));
    await expectDecisions([
      { ...operator, label: 'reads the stack outputs', action: 'cloudformation:DescribeStacks', resource: `arn:aws:cloudformation:${REGION}:${ACCOUNT}:stack/PgS3Backup/4f2e1c00-1111-2222-3333-444455556666`, expected: 'Allowed' },
      { ...operator, label: 'runs the restore task in its cluster', action: 'ecs:RunTask', resource: r.ref(restoreDef), context: inCluster, expected: 'Allowed' },
      { ...operator, label: 'passes the restore task role to ECS tasks', action: 'iam:PassRole', resource: roleArn(taskRole), context: toEcs, expected: 'Allowed' },
      { ...operator, label: 'passes the restore execution role to ECS tasks', action: 'iam:PassRole', resource: roleArn(executionRole), context: toEcs, expected: 'Allowed' },
      { ...operator, label: 'follows the task', action: 'ecs:DescribeTasks', resource: task(clusterName), context: inCluster, expected: 'Allowed' },
      { ...operator, label: 'stops the task', action: 'ecs:StopTask', resource: task(clusterName), context: inCluster, expected: 'Allowed' },
      { ...operator, label: 'reads the task\'s log stream', action: 'logs:GetLogEvents', resource: `${restoreLogs}:log-stream:${stream}`, expected: 'Allowed' },
      { ...operator, label: 'searches the restore log group', action: 'logs:FilterLogEvents', resource: restoreLogs, expected: 'Allowed' },
      // Denied: every other task definition, cluster, role, service and log group; the data itself.
      { ...operator, label: 'not the backup runner\'s task', action: 'ecs:RunTask', resource: r.ref(backupDef), context: inCluster, expected: 'ImplicitlyDenied' },
      { ...operator, label: 'not in another cluster', action: 'ecs:RunTask', resource: r.ref(restoreDef), context: { 'ecs:cluster': `arn:aws:ecs:${REGION}:${ACCOUNT}:cluster/other` }, expected: 'ImplicitlyDenied' },
      { ...operator, label: 'not a new task definition', action: 'ecs:RegisterTaskDefinition', resource: '*', expected: 'ImplicitlyDenied' },
      { ...operator, label: 'no shell in the task', action: 'ecs:ExecuteCommand', resource: task(clusterName), context: inCluster, expected: 'ImplicitlyDenied' },
      { ...operator, label: 'the task role to another service', action: 'iam:PassRole', resource: roleArn(taskRole), context: { 'iam:PassedToService': 'lambda.amazonaws.com' }, expected: 'ImplicitlyDenied' },
      { ...operator, label: 'not the backup runner\'s role', action: 'iam:PassRole', resource: roleArn(backupTaskRole), context: toEcs, expected: 'ImplicitlyDenied' },
      { ...operator, label: 'not the function\'s role', action: 'iam:PassRole', resource: roleArn(d.functionRole), context: toEcs, expected: 'ImplicitlyDenied' },
      { ...operator, label: 'no task of another cluster', action: 'ecs:StopTask', resource: task('other'), context: { 'ecs:cluster': `arn:aws:ecs:${REGION}:${ACCOUNT}:cluster/other` }, expected: 'ImplicitlyDenied' },
      { ...operator, label: 'not the backup runner\'s logs', action: 'logs:GetLogEvents', resource: `${backupLogs}:log-stream:backup/engine/abc`, expected: 'ImplicitlyDenied' },
      { ...operator, label: 'never the database secret', action: 'secretsmanager:GetSecretValue', resource: SECRET, expected: 'ImplicitlyDenied' },
      { ...operator, label: 'never a restore secret (the task reads it, not the operator)', action: 'secretsmanager:GetSecretValue', resource: `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:PgS3Backup/restore/target-AbCdEf`, expected: 'ImplicitlyDenied' },
      { ...operator, label: 'never the backups', action: 's3:GetObject', resource: `${d.bucketArn}/${dump}`, resourcePolicy: d.bucketPolicy, expected: 'ImplicitlyDenied' },
    ]);
  });

  it('alerts the topic when a restore task fails with nobody following it: ECS\'s stop event for its family and cluster, published by a role of the rule\'s own', async () => {
    const { r } = d;
    const ruleId = r.one('AWS::Events::Rule', (x) => JSON.stringify(x.Properties.EventPattern).includes('ECS Task State Change'));
    const rule = r.value(r.resources[ruleId]!.Properties) as { EventPattern: unknown; Targets: { Arn: string; RoleArn: string; InputTransformer: { InputPathsMap: Record<string, string>; InputTemplate: string } }[] };
    const restoreDef = r.one('AWS::ECS::TaskDefinition', (t) => JSON.stringify(t.Properties.TaskRoleArn).includes('RemoteTaskRole'));
    const family = String(r.resources[restoreDef]!.Properties.Family);
    const topicId = r.one('AWS::SNS::Topic');
    // A task of this family in this cluster that stopped by itself with a non-zero exit code (the
    // deadline's 124 included); not one the operator stopped (UserInitiated), nor any exit 0.
    expect(rule.EventPattern).toEqual({
      source: ['aws.ecs'],
      'detail-type': ['ECS Task State Change'],
      detail: {
        clusterArn: [r.getAtt(r.one('AWS::ECS::Cluster'), 'Arn')],
        taskDefinitionArn: [{ prefix: `arn:aws:ecs:${REGION}:${ACCOUNT}:task-definition/${family}:` }],
        lastStatus: ['STOPPED'],
        stopCode: [{ 'anything-but': ['UserInitiated'] }],
        containers: { exitCode: [{ 'anything-but': [0] }] },
      },
    });
    expect(rule.Targets).toHaveLength(1);
    const [target] = rule.Targets as [(typeof rule.Targets)[number]];
    expect(target.Arn).toBe(r.ref(topicId));
    // What failed, where its log is and what to do, in the message itself.
    const { InputPathsMap: paths, InputTemplate: message } = target.InputTransformer;
    expect(Object.values(paths).sort()).toEqual(['$.detail.containers[0].exitCode', '$.detail.stoppedReason', '$.detail.taskArn']);
    for (const name of Object.keys(paths)) expect(message).toContain(`<${name}>`);
    expect(message).toContain(`log group ${r.ref(r.ofType('AWS::Logs::LogGroup').find(([id]) => id.startsWith('RemoteLogGroup'))![0])}`);
    expect(message).toContain('Restore from inside the VPC');
    const role = target.RoleArn.split('/').pop()!;
    const events = { principal: `arn:aws:sts::${ACCOUNT}:assumed-role/${role}/events`, identityPolicies: r.identityPolicies(role) };
    const keyId = r.one('AWS::KMS::Key', (k) => JSON.stringify(k.Properties.Description ?? '').includes('alert topic'));
    const key = { resourcePolicy: r.value(r.resources[keyId]!.Properties.KeyPolicy) };
    const restoreTaskRole = (r.resources[restoreDef]!.Properties.TaskRoleArn as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];
    await expectDecisions([
      { ...events, label: 'the rule publishes to the alert topic', action: 'sns:Publish', resource: r.ref(topicId), context: TLS, expected: 'Allowed' },
      { ...events, ...key, label: 'with the topic\'s key', action: 'kms:GenerateDataKey', resource: r.getAtt(keyId, 'Arn'), expected: 'Allowed' },
      { ...events, label: 'to no other topic', action: 'sns:Publish', resource: `arn:aws:sns:${REGION}:${ACCOUNT}:other`, context: TLS, expected: 'ImplicitlyDenied' },
      { ...events, label: 'and reads no backup', action: 's3:GetObject', resource: `${d.bucketArn}/${d.prefix}x`, resourcePolicy: d.bucketPolicy, expected: 'ImplicitlyDenied' },
      { principal: `arn:aws:sts::${ACCOUNT}:assumed-role/${restoreTaskRole}/task`, identityPolicies: r.identityPolicies(restoreTaskRole), label: 'the task itself still cannot publish', action: 'sns:Publish', resource: r.ref(topicId), context: TLS, expected: 'ImplicitlyDenied' },
    ]);
  });

  it('lets the restore task read the backups and the secrets named PgS3Backup/restore/*, write nothing and read no other secret', async () => {
    const { r } = d;
    const restoreDef = r.one('AWS::ECS::TaskDefinition', (t) => JSON.stringify(t.Properties.TaskRoleArn).includes('RemoteTaskRole'));
    const taskRole = (r.resources[restoreDef]!.Properties.TaskRoleArn as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];
    const task = { principal: `arn:aws:sts::${ACCOUNT}:assumed-role/${taskRole}/task`, identityPolicies: r.identityPolicies(taskRole) };
    const dump = buildDumpKey(d.prefix, 'app', new Date('2026-12-02T02:00:00.123Z'));
    const bucket = { resourcePolicy: d.bucketPolicy };
    const secret = (name: string) => `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:${name}-AbCdEf`;
    await expectDecisions([
      { ...task, ...bucket, label: 'reads a dump', action: 's3:GetObject', resource: `${d.bucketArn}/${dump}`, expected: 'Allowed' },
      { ...task, ...bucket, label: 'reads its manifest', action: 's3:GetObject', resource: `${d.bucketArn}/${manifestKeyFor(dump)}`, expected: 'Allowed' },
      { ...task, ...bucket, label: 'lists the prefix', action: 's3:ListBucket', resource: d.bucketArn, context: { 's3:prefix': `${d.prefix}app/` }, expected: 'Allowed' },
      { ...task, label: 'decrypts the dump', action: 'kms:Decrypt', resource: d.bucketKeyArn, context: { 'kms:ViaService': `s3.${REGION}.amazonaws.com` }, resourcePolicy: d.bucketKeyPolicy, expected: 'Allowed' },
      { ...task, label: 'reads a restore target secret', action: 'secretsmanager:GetSecretValue', resource: secret('PgS3Backup/restore/target'), expected: 'Allowed' },
      { ...task, label: 'reads an age identity under the prefix', action: 'secretsmanager:GetSecretValue', resource: secret('PgS3Backup/restore/age-identity'), expected: 'Allowed' },
      { ...task, label: 'not the database secret', action: 'secretsmanager:GetSecretValue', resource: SECRET, expected: 'ImplicitlyDenied' },
      { ...task, label: 'not a secret beside the prefix', action: 'secretsmanager:GetSecretValue', resource: secret('PgS3Backup/restored'), expected: 'ImplicitlyDenied' },
      { ...task, label: 'not another stack\'s restore secrets', action: 'secretsmanager:GetSecretValue', resource: secret('Other/restore/target'), expected: 'ImplicitlyDenied' },
      { ...task, ...bucket, label: 'writes no dump', action: 's3:PutObject', resource: `${d.bucketArn}/${dump}`, expected: 'ImplicitlyDenied' },
      { ...task, ...bucket, label: 'deletes no backup', action: 's3:DeleteObject', resource: `${d.bucketArn}/${dump}`, expected: 'ImplicitlyDenied' },
      { ...task, ...bucket, label: 'reads nothing outside the prefix', action: 's3:GetObject', resource: `${d.bucketArn}/elsewhere/x.dump`, expected: 'ImplicitlyDenied' },
      { ...task, label: 'publishes nothing', action: 'sns:Publish', resource: d.topicArn, resourcePolicy: d.topicPolicy, expected: 'ImplicitlyDenied' },
      { ...task, label: 'puts no metric', action: 'cloudwatch:PutMetricData', resource: '*', context: { 'cloudwatch:namespace': 'PgS3Backup' }, expected: 'ImplicitlyDenied' },
    ]);
    // Its container: the restore's settings only (no database secret, no topic), read-only root, uid 1000.
    const container = (r.resources[restoreDef]!.Properties.ContainerDefinitions as { Environment: { Name: string }[]; ReadonlyRootFilesystem: boolean; User: string }[])[0]!;
    expect(container.Environment.map((e) => e.Name).sort()).toEqual(['BACKUP_BUCKET', 'BACKUP_PREFIX', 'NODE_OPTIONS', 'RDS_CA_BUNDLE', 'STORAGE_PROFILE', 'TASK_TIMEOUT_SECONDS']);
    expect({ ro: container.ReadonlyRootFilesystem, user: container.User }).toEqual({ ro: true, user: '1000:1000' });
    // Without restoreSecretKmsKeyArns, a secret under a customer-managed key cannot be opened (only aws/secretsmanager's).
    await expectDecisions([
      { ...task, label: 'no customer key, even through Secrets Manager', action: 'kms:Decrypt', resource: SECRET_KEY, context: { 'kms:ViaService': `secretsmanager.${REGION}.amazonaws.com` }, resourcePolicy: rootKeyPolicy(), expected: 'ImplicitlyDenied' },
    ]);
  });
});


describe('restore --remote: secrets under customer-managed KMS keys (context restoreSecretKmsKeyArns)', () => {
  const TARGET_KEY = `arn:aws:kms:${REGION}:${ACCOUNT}:key/${uuidOf('target')}`;
  const REPLICA_REGION_KEY = `arn:aws:kms:${REGION}:${ACCOUNT}:key/mrk-${createHash('sha256').update('mrk').digest('hex').slice(0, 32)}`;
  const NETWORK = { vpcId: 'vpc-0123456789abcdef0', subnetIds: ['subnet-0123456789abcdef0'] };

  it('lets the restore task decrypt its secrets with a listed key through Secrets Manager in the stack\'s region, and only so', async () => {
    const d = deploy({ ...NETWORK, runner: 'fargate', databases: 'app', dbSecretKmsKeyArn: SECRET_KEY, restoreSecretKmsKeyArns: `${TARGET_KEY},${REPLICA_REGION_KEY}` });
    const { r } = d;
    const roleOf = (value: unknown) => (value as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];
    const taskRoleOf = (role: string) => roleOf(r.resources[r.one('AWS::ECS::TaskDefinition', (t) => JSON.stringify(t.Properties.TaskRoleArn).includes(role))]!.Properties.TaskRoleArn);
    const restoreTask = taskRoleOf('RemoteTaskRole');
    const backupTask = taskRoleOf('FargateTaskRole');
    const as = (role: string) => ({ principal: `arn:aws:sts::${ACCOUNT}:assumed-role/${role}/task`, identityPolicies: r.identityPolicies(role) });
    const task = as(restoreTask);
    const key = { resourcePolicy: rootKeyPolicy() };
    const via = (service: string, region = REGION) => ({ 'kms:ViaService': `${service}.${region}.amazonaws.com` });
    await expectDecisions([
      { ...task, ...key, label: 'a listed key, through Secrets Manager', action: 'kms:Decrypt', resource: TARGET_KEY, context: via('secretsmanager'), expected: 'Allowed' },
      { ...task, ...key, label: 'the other listed key (multi-Region), through Secrets Manager', action: 'kms:Decrypt', resource: REPLICA_REGION_KEY, context: via('secretsmanager'), expected: 'Allowed' },
      { ...task, label: 'still only the secrets under the restore prefix', action: 'secretsmanager:GetSecretValue', resource: `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:PgS3Backup/restore/target-AbCdEf`, expected: 'Allowed' },
      { ...task, ...key, label: 'a listed key, directly (not through Secrets Manager)', action: 'kms:Decrypt', resource: TARGET_KEY, expected: 'ImplicitlyDenied' },
      { ...task, ...key, label: 'a listed key, through S3', action: 'kms:Decrypt', resource: TARGET_KEY, context: via('s3'), expected: 'ImplicitlyDenied' },
      { ...task, ...key, label: 'a listed key, through Secrets Manager of another region', action: 'kms:Decrypt', resource: TARGET_KEY, context: via('secretsmanager', 'us-east-1'), expected: 'ImplicitlyDenied' },
      { ...task, ...key, label: 'another key, through Secrets Manager', action: 'kms:Decrypt', resource: `arn:aws:kms:${REGION}:${ACCOUNT}:key/${uuidOf('other')}`, context: via('secretsmanager'), expected: 'ImplicitlyDenied' },
      { ...task, ...key, label: 'the production secret\'s key (not listed)', action: 'kms:Decrypt', resource: SECRET_KEY, context: via('secretsmanager'), expected: 'ImplicitlyDenied' },
      { ...task, ...key, label: 'encrypt with a listed key', action: 'kms:Encrypt', resource: TARGET_KEY, context: via('secretsmanager'), expected: 'ImplicitlyDenied' },
      { ...task, label: 'still not the production secret', action: 'secretsmanager:GetSecretValue', resource: SECRET, expected: 'ImplicitlyDenied' },
      // The backup's own database secret under its customer key (dbSecretKmsKeyArn): the function
      // and the Fargate runner's task decrypt it through Secrets Manager, and not the restore keys.
      { ...as(d.functionRole), ...key, label: 'the function: the database secret\'s key, through Secrets Manager', action: 'kms:Decrypt', resource: SECRET_KEY, context: via('secretsmanager'), expected: 'Allowed' },
      { ...as(backupTask), ...key, label: 'the backup task: the database secret\'s key, through Secrets Manager', action: 'kms:Decrypt', resource: SECRET_KEY, context: via('secretsmanager'), expected: 'Allowed' },
      { ...as(backupTask), label: 'the backup task: the database secret', action: 'secretsmanager:GetSecretValue', resource: SECRET, expected: 'Allowed' },
      { ...as(backupTask), ...key, label: 'the backup task: the database secret\'s key, directly', action: 'kms:Decrypt', resource: SECRET_KEY, expected: 'ImplicitlyDenied' },
      { ...as(backupTask), ...key, label: 'the backup task: a restore key', action: 'kms:Decrypt', resource: TARGET_KEY, context: via('secretsmanager'), expected: 'ImplicitlyDenied' },
      { ...as(d.functionRole), ...key, label: 'the function: a restore key', action: 'kms:Decrypt', resource: TARGET_KEY, context: via('secretsmanager'), expected: 'ImplicitlyDenied' },
    ]);
  });

  it('refuses a key that is no key ARN or that Secrets Manager of the stack\'s region cannot use, naming the context key', () => {
    const alias = `arn:aws:kms:${REGION}:${ACCOUNT}:alias/restore-secrets`;
    expect(() => deploy({ ...NETWORK, runner: 'fargate', restoreSecretKmsKeyArns: [TARGET_KEY, alias] })).toThrow(`context "restoreSecretKmsKeyArns.1": expected a KMS key ARN, but ${alias} is an alias ARN, which an IAM policy cannot grant`);
    expect(() => deploy({ ...NETWORK, runner: 'fargate', restoreSecretKmsKeyArns: ['key/1234'] })).toThrow('context "restoreSecretKmsKeyArns.0": expected a KMS key ARN, but key/1234 is not a KMS key ARN');
    // Only the restore task uses them: without the Fargate runner there is none.
    expect(() => deploy({ restoreSecretKmsKeyArns: [TARGET_KEY] })).toThrow(/context "restoreSecretKmsKeyArns" is for the task of restore --remote, which comes with the Fargate runner/);
    // The construct checks its own props (another app may build it without the context's schema).
    const { app, stack } = buildApp({ context: { dbSecretArn: SECRET, ...NETWORK, runner: 'fargate', restoreSecretKmsKeyArns: [TARGET_KEY] }, layerDir: resolve(FIXTURES, 'layer', 'arm64'), serverLayerDir: resolve(FIXTURES, 'server-layer', 'arm64'), entry: 'test/infra/fixtures/handler.ts', drillEntry: 'test/infra/fixtures/handler.ts', now: new Date('2026-01-01T00:00:00Z') });
    // The grant names its keys: nothing for cdk-nag to acknowledge.
    expect(new AwsSolutionsChecks().validateScope(app).violations.map((v) => v.ruleName)).toEqual([]);
    const malformed = `arn:aws:kms:${REGION}:${ACCOUNT}:key/not-a-key-id`;
    const props = { stackName: 'PgS3Backup', runner: stack.fargate!, bucket: stack.bucket, environment: {}, cpu: 1024, memoryMiB: 2048, ephemeralStorageGiB: 21, logRetentionDays: 90 };
    expect(() => new RemoteRestore(stack, 'Direct', { ...props, secretKmsKeyArns: [TARGET_KEY, malformed] })).toThrow(`RemoteRestore: restoreSecretKmsKeyArns entry 2, ${malformed}, is not a KMS key ARN`);
    // A key of another region, for a stack pinned to its region: the constructor names the key and the setting.
    const elsewhere = `arn:aws:kms:us-east-1:${ACCOUNT}:key/${uuidOf('elsewhere')}`;
    expect(() => deploy({ ...NETWORK, runner: 'fargate', account: ACCOUNT, region: REGION, restoreSecretKmsKeyArns: [elsewhere] })).toThrow(
      `RemoteRestore: restoreSecretKmsKeyArns entry 1, ${elsewhere}, is in region us-east-1, not the stack's ${REGION}: Secrets Manager decrypts a secret only with a key of its own region`,
    );
  });
});

/**
 * The simulator cannot carry a `kms:EncryptionContext:<key>` condition key (it expands a key's
 * variable part only after a `/`, and `aws:s3:arn` has colons): the same condition — same
 * operator, same values — is evaluated under a key it can carry, in the policies and the request.
 */
const ENCRYPTION_CONTEXT = 'kms:EncryptionContext:aws:s3:arn';
const ENCRYPTION_CONTEXT_CARRIED = 'aws:RequestTag/kms-encryption-context-aws-s3-arn';
function carryEncryptionContext<T>(value: T): T {
  return JSON.parse(JSON.stringify(value).replaceAll(ENCRYPTION_CONTEXT, ENCRYPTION_CONTEXT_CARRIED)) as T;
}

describe('the second copy: the replication role S3 assumes', () => {
  const REPLICA_REGION = 'eu-central-1';
  const REPLICA_KEY = `arn:aws:kms:${REPLICA_REGION}:${ACCOUNT}:key/${uuidOf('replica')}`;
  const REPLICA = 'arn:aws:s3:::my-replica';

  function replicationRole(d: Deployment): string {
    return d.r.one('AWS::IAM::Role', (role) => JSON.stringify(role.Properties.AssumeRolePolicyDocument).includes('"s3.amazonaws.com"'));
  }

  it('may read the versions under the source prefix and replicate them under the destination prefix with the replica key, and nothing else', async () => {
    // Same account: the destination bucket's own policy (the owner's) is then not needed for the evaluation.
    const d = deploy({ replication: { destinationBucketArn: REPLICA, destinationKmsKeyArn: REPLICA_KEY } });
    const role = replicationRole(d);
    const policies = d.r.identityPolicies(role);
    expect(JSON.stringify(policies)).toContain(ENCRYPTION_CONTEXT);
    const who = { principal: `arn:aws:sts::${ACCOUNT}:assumed-role/${role}/s3-replication`, identityPolicies: carryEncryptionContext(policies) };
    const dump = buildDumpKey(d.prefix, 'app', new Date('2026-12-02T02:00:00.123Z'));
    const source = { ...who, resourcePolicy: d.bucketPolicy };
    const viaS3 = (region: string, arn: string) => ({ 'kms:ViaService': `s3.${region}.amazonaws.com`, [ENCRYPTION_CONTEXT_CARRIED]: arn });
    const trust = d.r.value(d.r.resources[role]!.Properties.AssumeRolePolicyDocument);
    const roleArn = d.r.getAtt(role, 'Arn');
    await expectDecisions([
      { label: 'S3 assumes the role', principal: 's3.amazonaws.com', action: 'sts:AssumeRole', resource: roleArn, context: { 'aws:SourceAccount': ACCOUNT }, resourcePolicy: trust, expected: 'Allowed' },
      { label: 'S3 for another account', principal: 's3.amazonaws.com', action: 'sts:AssumeRole', resource: roleArn, context: { 'aws:SourceAccount': OTHER_ACCOUNT }, resourcePolicy: trust, expected: 'ImplicitlyDenied' },
      { label: 'Lambda cannot assume it', principal: 'lambda.amazonaws.com', action: 'sts:AssumeRole', resource: roleArn, resourcePolicy: trust, expected: 'ImplicitlyDenied' },
      { ...source, label: 'read the replication configuration', action: 's3:GetReplicationConfiguration', resource: d.bucketArn, expected: 'Allowed' },
      { ...source, label: 'list the source', action: 's3:ListBucket', resource: d.bucketArn, expected: 'Allowed' },
      ...['s3:GetObjectVersionForReplication', 's3:GetObjectVersionAcl', 's3:GetObjectVersionTagging'].flatMap((action) => [
        { ...source, label: `${action} of a backup`, action, resource: `${d.bucketArn}/${dump}`, expected: 'Allowed' as const },
        { ...source, label: `${action} of a manifest`, action, resource: `${d.bucketArn}/${manifestKeyFor(dump)}`, expected: 'Allowed' as const },
        { ...source, label: `${action} outside the prefix`, action, resource: `${d.bucketArn}/elsewhere/x.dump`, expected: 'ImplicitlyDenied' as const },
      ]),
      { ...who, label: 'replicate a backup', action: 's3:ReplicateObject', resource: `${REPLICA}/${dump}`, expected: 'Allowed' },
      { ...who, label: 'replicate its tags', action: 's3:ReplicateTags', resource: `${REPLICA}/${dump}`, expected: 'Allowed' },
      { ...who, label: 'decrypt the source through S3', action: 'kms:Decrypt', resource: d.bucketKeyArn, context: viaS3(REGION, d.bucketArn), resourcePolicy: d.bucketKeyPolicy, expected: 'Allowed' },
      { ...who, label: 'encrypt the replica through S3 there', action: 'kms:Encrypt', resource: REPLICA_KEY, context: viaS3(REPLICA_REGION, REPLICA), resourcePolicy: rootKeyPolicy(), expected: 'Allowed' },
      { ...who, label: 'a data key for the replica', action: 'kms:GenerateDataKey', resource: REPLICA_KEY, context: viaS3(REPLICA_REGION, `${REPLICA}/${dump}`), resourcePolicy: rootKeyPolicy(), expected: 'Allowed' },
      // Nothing else.
      { ...source, label: 'read a backup', action: 's3:GetObject', resource: `${d.bucketArn}/${dump}`, expected: 'ImplicitlyDenied' },
      { ...source, label: 'write the source', action: 's3:PutObject', resource: `${d.bucketArn}/${dump}`, expected: 'ImplicitlyDenied' },
      { ...source, label: 'delete in the source', action: 's3:DeleteObject', resource: `${d.bucketArn}/${dump}`, expected: 'ImplicitlyDenied' },
      { ...source, label: 'destroy a source version', action: 's3:DeleteObjectVersion', resource: `${d.bucketArn}/${dump}`, expected: 'ImplicitlyDenied' },
      { ...source, label: 'change the replication', action: 's3:PutReplicationConfiguration', resource: d.bucketArn, expected: 'ImplicitlyDenied' },
      { ...who, label: 'replicate deletes', action: 's3:ReplicateDelete', resource: `${REPLICA}/${dump}`, expected: 'ImplicitlyDenied' },
      { ...who, label: 'replicate outside the prefix', action: 's3:ReplicateObject', resource: `${REPLICA}/elsewhere/x.dump`, expected: 'ImplicitlyDenied' },
      { ...who, label: 'replicate to another bucket', action: 's3:ReplicateObject', resource: `arn:aws:s3:::someone-else/${dump}`, expected: 'ImplicitlyDenied' },
      { ...who, label: 'take ownership (same account: not granted)', action: 's3:ObjectOwnerOverrideToBucketOwner', resource: `${REPLICA}/${dump}`, expected: 'ImplicitlyDenied' },
      { ...who, label: 'read the replica', action: 's3:GetObject', resource: `${REPLICA}/${dump}`, expected: 'ImplicitlyDenied' },
      { ...who, label: 'decrypt the source key directly', action: 'kms:Decrypt', resource: d.bucketKeyArn, resourcePolicy: d.bucketKeyPolicy, expected: 'ImplicitlyDenied' },
      { ...who, label: 'decrypt another bucket\'s objects with it', action: 'kms:Decrypt', resource: d.bucketKeyArn, context: viaS3(REGION, 'arn:aws:s3:::someone-else'), resourcePolicy: d.bucketKeyPolicy, expected: 'ImplicitlyDenied' },
      { ...who, label: 'the replica key from another region', action: 'kms:Encrypt', resource: REPLICA_KEY, context: viaS3(REGION, REPLICA), resourcePolicy: rootKeyPolicy(), expected: 'ImplicitlyDenied' },
      { ...who, label: 'decrypt with the replica key', action: 'kms:Decrypt', resource: REPLICA_KEY, context: viaS3(REPLICA_REGION, REPLICA), resourcePolicy: rootKeyPolicy(), expected: 'ImplicitlyDenied' },
      { ...who, label: 'the topic', action: 'sns:Publish', resource: d.topicArn, resourcePolicy: d.topicPolicy, expected: 'ImplicitlyDenied' },
    ]);
  });

  it('replicates Object Lock retention and legal holds when the source has Object Lock; cross-account, the destination owns the replicas', async () => {
    const d = deploy({ objectLockDays: 30, replication: { destinationBucketArn: REPLICA, destinationKmsKeyArn: REPLICA_KEY, destinationAccount: OTHER_ACCOUNT } });
    const role = replicationRole(d);
    const who = { principal: `arn:aws:sts::${ACCOUNT}:assumed-role/${role}/s3-replication`, identityPolicies: d.r.identityPolicies(role) };
    const dump = buildDumpKey(d.prefix, 'app', new Date('2026-12-02T02:00:00.123Z'));
    const source = { ...who, resourcePolicy: d.bucketPolicy };
    await expectDecisions([
      { ...source, label: 'read a version\'s retention', action: 's3:GetObjectRetention', resource: `${d.bucketArn}/${dump}`, expected: 'Allowed' },
      { ...source, label: 'read a version\'s legal hold', action: 's3:GetObjectLegalHold', resource: `${d.bucketArn}/${dump}`, expected: 'Allowed' },
      { ...source, label: 'never lift a retention', action: 's3:BypassGovernanceRetention', resource: `${d.bucketArn}/${dump}`, expected: 'ImplicitlyDenied' },
      { ...source, label: 'never change a legal hold', action: 's3:PutObjectLegalHold', resource: `${d.bucketArn}/${dump}`, expected: 'ImplicitlyDenied' },
    ]);
    // The grant to hand the replicas to the destination account is in the identity policy (the destination's bucket policy must allow it too).
    const statements = (d.r.identityPolicies(role) as { policy: { Statement: { Sid?: string; Action: string[] }[] } }[]).flatMap((p) => p.policy.Statement);
    expect(statements.find((st) => st.Sid === 'ReplicateToDestination')!.Action).toContain('s3:ObjectOwnerOverrideToBucketOwner');
  });
});
