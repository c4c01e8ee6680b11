/**
 * The Fargate runner's image, run as its task definition says, without a Docker engine: the file
 * tree assembled from the list the Dockerfile copies (infra/container/image-files.json), a
 * read-only root with the task's /tmp volume, the task's user, and exactly the container's
 * environment from the synthesized template (its deploy-time tokens resolved to local services,
 * plus what ECS and the task role add, stood in for by moto). It prints its version, backs a
 * database up to S3 with its metrics through PutMetricData, refuses an unverifiable server by
 * default (verify-full against the image's RDS CA bundle, as the function), and restores.
 */
import { CloudWatchClient, GetMetricStatisticsCommand } from '@aws-sdk/client-cloudwatch';
import { runSimulation } from '@cloud-copilot/iam-simulate';
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { IgnoreStrategy } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../infra/app.ts';
import { ASSET_IGNORE_MODE, assetExclude, dockerCopyBlock, dockerfileCopyBlock, imageFiles, IMAGE_RDS_CA_BUNDLE } from '../../infra/container/image.ts';
import { ARCHITECTURES, hostArchitecture, REPO_ROOT } from '../../layers/pg-dump/paths.ts';
import { listFiles } from '../../scripts/cli-bundle.mjs';
import { awsEnv, createAlertInbox, createBucket, createSecret, listKeys, testClients, TEST_REGION, type TestClients } from '../support/aws.ts';
import { createDatabase, loadSampleData } from '../support/fixtures.ts';
import { assembleImageTree, BASE_IMAGE_PATH, entrypoint, runInImage, taskEnvironment, type ContainerDefinition, type ImageTree } from '../support/image-tree.ts';
import { ensureLayer } from '../support/layer.ts';
import { startMoto, type TestAws } from '../support/moto.ts';
import { startPostgres, type TestPostgres } from '../support/postgres.ts';
import { makeTestCertificates, type TestCertificates } from '../support/tls.ts';

const SECRET = 'arn:aws:secretsmanager:eu-west-3:123456789012:secret:prod/db-AbCdEf';
const NETWORK = { vpcId: 'vpc-0123456789abcdef0', subnetIds: ['subnet-0123456789abcdef0', 'subnet-0fedcba9876543210'] };
const ARCH = hostArchitecture();

function synth() {
  const { app, stack } = buildApp({
    context: { dbSecretArn: SECRET, drillSchedule: 'off', ...NETWORK, runner: 'fargate', databases: 'app', architecture: ARCH },
    now: new Date('2026-01-01T00:00:00Z'),
    entry: 'test/infra/fixtures/handler.ts',
  });
  const template = Template.fromStack(stack);
  // The backup runner's task (restore --remote has its own: test/cli/remote.test.ts).
  const task = Object.entries(template.findResources('AWS::ECS::TaskDefinition')).find(([id]) => id.startsWith('FargateTask'))![1] as { Properties: { ContainerDefinitions: ContainerDefinition[]; Volumes: unknown[] } };
  const taskRole = Object.keys(template.findResources('AWS::IAM::Role')).find((id) => id.startsWith('FargateTaskRole'))!;
  const policies = Object.entries(template.findResources('AWS::IAM::Policy'))
    .filter(([, p]) => JSON.stringify((p as { Properties: { Roles: unknown } }).Properties.Roles).includes(`{"Ref":"${taskRole}"}`))
    .map(([id, p]) => ({ name: id, policy: resolveTokens((p as { Properties: { PolicyDocument: unknown } }).Properties.PolicyDocument) }));
  return { app, task: task.Properties, container: task.Properties.ContainerDefinitions[0]!, taskPolicies: policies };
}

/** A policy document with its CloudFormation intrinsics made plain strings (ARNs of nothing the tests below ask about). */
function resolveTokens(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(resolveTokens);
  if (value && typeof value === 'object') {
    const entries = Object.entries(value);
    if (entries.length === 1 && entries[0]![0] === 'Fn::Join') {
      const [sep, parts] = entries[0]![1] as [string, unknown[]];
      return parts.map((p) => String(resolveTokens(p))).join(sep);
    }
    if (entries.length === 1 && /^(Ref|Fn::)/.test(entries[0]![0])) return 'arn:aws:s3:::resolved-token';
    return Object.fromEntries(entries.map(([k, v]) => [k, resolveTokens(v)]));
  }
  return value;
}

describe('the Fargate image', () => {
  const { app, task, container, taskPolicies } = synth();

  it('lets the task role put metrics into the PgS3Backup namespace only (IAM simulator)', async () => {
    const decide = async (namespace: string | undefined) => {
      const res = await runSimulation({
        request: {
          principal: 'arn:aws:sts::123456789012:assumed-role/FargateTaskRole/task',
          action: 'cloudwatch:PutMetricData',
          resource: { resource: '*', accountId: '123456789012' },
          contextVariables: namespace === undefined ? {} : { 'cloudwatch:namespace': namespace },
        },
        identityPolicies: taskPolicies,
        serviceControlPolicies: [],
        resourceControlPolicies: [],
      }, {});
      if (res.resultType === 'error') throw new Error(JSON.stringify(res.errors));
      return res.overallResult;
    };
    expect(taskPolicies.length).toBeGreaterThan(0);
    expect({ own: await decide('PgS3Backup'), other: await decide('AWS/ECS'), none: await decide(undefined) }).toEqual({ own: 'Allowed', other: 'ImplicitlyDenied', none: 'ImplicitlyDenied' });
  });

  it('copies exactly the files image-files.json lists: the Dockerfile\'s COPY lines are generated from it', () => {
    expect(dockerfileCopyBlock()).toBe(dockerCopyBlock());
    expect(imageFiles().map((c) => c.to)).toContain(IMAGE_RDS_CA_BUNDLE);
  });

  it('stages the listed files and the Dockerfile as the asset, nothing else (no sources, no node_modules)', () => {
    const outdir = app.synth().directory;
    const assetDir = readdirSync(outdir).map((d) => join(outdir, d)).find((d) => existsSync(join(d, 'infra', 'container', 'Dockerfile')));
    expect(assetDir, 'the image asset in the cloud assembly').toBeDefined();
    const expected = ['infra/container/Dockerfile'];
    for (const c of imageFiles()) {
      for (const arch of c.from.includes('${LAYER_ARCH}') ? ARCHITECTURES : [ARCH]) {
        const from = c.from.replaceAll('${LAYER_ARCH}', arch);
        if (!existsSync(join(REPO_ROOT, from))) continue;
        if (from.endsWith('/')) expected.push(...listFiles(join(REPO_ROOT, from)).map((f) => `${from}${f}`));
        else expected.push(from);
      }
    }
    expect(listFiles(assetDir!)).toEqual(expected.sort());
  });

  it('walks no folder outside the image\'s files when it hashes the asset (not node_modules, not a layer\'s build cache)', () => {
    // CDK's walker enters a folder unless its ignore strategy says the folder is completely left
    // out; a layer build deleting its work folder under a walked one failed a synth (ENOENT).
    const strategy = IgnoreStrategy.fromCopyOptions({ exclude: assetExclude(), ignoreMode: ASSET_IGNORE_MODE }, REPO_ROOT);
    // A layer build works in dist/.<arch>.tmp beside the built dist/<arch>, and renames it when done.
    for (const folder of ['node_modules', 'engine', 'layers/pg-server', 'layers/pg-dump/cache', 'layers/pg-dump/cache/work-arm64', 'layers/pg-dump/dist/.arm64.tmp', 'layers/pg-dump/dist/.x86_64.tmp', 'dist/other']) {
      expect(strategy.completelyIgnores(join(REPO_ROOT, folder)), folder).toBe(true);
    }
    for (const folder of ['dist/cli', 'dist/cli/chunks', 'layers/pg-dump/dist/arm64', 'layers/pg-dump/dist/x86_64', 'infra/container']) {
      expect(strategy.completelyIgnores(join(REPO_ROOT, folder)), folder).toBe(false);
    }
  });

  it('has the task run it as uid 1000 on a read-only root with a /tmp volume', () => {
    expect(container.ReadonlyRootFilesystem).toBe(true);
    expect(container.User).toBe('1000:1000');
    expect(container.MountPoints).toEqual([{ ContainerPath: '/tmp', SourceVolume: 'tmp', ReadOnly: false }]);
    expect(task.Volumes).toEqual([{ Name: 'tmp' }]);
  });

  describe('run as the task runs it', () => {
    let tree: ImageTree;
    let certs: TestCertificates;
    let pg: TestPostgres;
    let aws: TestAws;
    let clients: TestClients;
    let env: Record<string, string>;
    let base: { bucket: string; topicArn: string };

    beforeAll(async () => {
      certs = await makeTestCertificates();
      [pg, aws] = await Promise.all([startPostgres({ postgresFlags: certs.postgresFlags }), startMoto(), ensureLayer(ARCH)]);
      clients = testClients(aws.endpoint);
      await createDatabase(pg, 'app');
      await loadSampleData(pg, 'app', 500);
      const [bucket, inbox] = await Promise.all([createBucket(clients), createAlertInbox(clients)]);
      base = { bucket, topicArn: inbox.topicArn };
      tree = assembleImageTree(imageFiles(), ARCH);
      env = environmentFor(await secretFor({ sslmode: 'require' }));
    });

    afterAll(async () => {
      tree?.remove();
      certs?.remove();
      await Promise.all([pg?.stop(), aws?.stop()]);
    });

    /** The server's secret in RDS JSON format; TLS as `tls` says (nothing: the runner's default). */
    const secretFor = (tls: { sslmode?: string }) => createSecret(clients, { host: pg.host, port: pg.port, username: pg.user, password: pg.password, dbname: 'app', ...tls });

    /** The task definition's environment, with what ECS and the task role add (moto standing in for AWS). */
    function environmentFor(secretArn: string): Record<string, string> {
      return {
        PATH: BASE_IMAGE_PATH,
        ...taskEnvironment(container, { BACKUP_BUCKET: base.bucket, DB_SECRET_ID: secretArn, ALERT_TOPIC_ARN: base.topicArn }),
        // ECS adds these to every task.
        AWS_DEFAULT_REGION: TEST_REGION,
        ECS_CONTAINER_METADATA_URI_V4: 'http://169.254.170.2/v4/test',
        // The task role's credentials and AWS's endpoints: moto's.
        ...awsEnv(aws.endpoint),
      };
    }

    const run = (command: readonly string[], runEnv = env) => runInImage(tree, [...entrypoint(), ...command], runEnv, { user: container.User!, writableTmp: true });

    it('runs in a tree that holds what the task gives: a read-only root, a writable /tmp, uid 1000 without a passwd entry', async () => {
      const probe = "const fs = require('node:fs'); const w = (f) => { try { fs.writeFileSync(f, 'x'); fs.rmSync(f); return 'written'; } catch (e) { return e.code; } }; console.log(JSON.stringify({ uid: process.getuid(), app: w('/app/probe'), root: w('/probe'), tmp: w('/tmp/probe'), passwd: fs.existsSync('/etc/passwd') }))";
      const r = await runInImage(tree, ['node', '-e', probe], env, { user: container.User!, writableTmp: true });
      expect(JSON.parse(r.stdout)).toEqual({ uid: 1000, app: 'EROFS', root: 'EROFS', tmp: 'written', passwd: false });
    });

    it('prints its version', async () => {
      const r = await run(['--version']);
      expect(r.stderr).toBe('');
      expect(r).toMatchObject({ code: 0, stdout: `${(JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version}\n` });
    });

    it('backs a database up to S3 as the fan-out starts it, and puts BackupSucceeded through PutMetricData', async () => {
      const startedAt = new Date(Date.now() - 60_000);
      const r = await run([...container.Command, '--database', 'app', '--reason', 'scheduled']);
      expect(r.code, r.stderr + r.stdout).toBe(0);
      const result = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { status: string; backups: { key: string }[] };
      expect(result.status).toBe('succeeded');
      expect(await listKeys(clients, base.bucket)).toEqual(expect.arrayContaining([result.backups[0]!.key, `${result.backups[0]!.key}.json`]));
      const cw = new CloudWatchClient({ region: TEST_REGION, endpoint: aws.endpoint, credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' } });
      const stats = await cw.send(new GetMetricStatisticsCommand({
        Namespace: 'PgS3Backup', MetricName: 'BackupSucceeded', Dimensions: [{ Name: 'Database', Value: 'app' }],
        StartTime: startedAt, EndTime: new Date(Date.now() + 60_000), Period: 3600, Statistics: ['Sum'],
      }));
      expect(stats.Datapoints?.map((d) => d.Sum)).toEqual([1]);
    });

    it('connects with verify-full against the image\'s RDS CA bundle by default: a server the bundle did not sign is refused', async () => {
      const r = await run(['run', '--database', 'app'], environmentFor(await secretFor({})));
      expect(r.code).toBe(1);
      const events = r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(events.find((e) => e.event === 'backup.connecting')).toMatchObject({ sslmode: 'verify-full' });
      expect(events.find((e) => e.event === 'backup.failed')).toMatchObject({ stage: 'connect', error: expect.stringMatching(/certificate/i) });
    });

    it('restores the backup into a new database', async () => {
      const target = `${pg.urlFor('restored')}?sslmode=require`;
      const r = await run(['restore', '--database', 'app', '--latest', '--create', '--target-url', target]);
      expect(r.code, r.stderr + r.stdout).toBe(0);
      const count = async (db: string) => (await pg.query<{ n: string }>('select count(*) as n from pg_class where relkind = \'r\' and relnamespace not in (select oid from pg_namespace where nspname in (\'pg_catalog\', \'information_schema\'))', [], db))[0]!.n;
      expect(await count('restored')).toBe(await count('app'));
    });
  });
});
