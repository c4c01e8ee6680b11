/**
 * The synthesized fan-out, executed: the state machine definition from the real stack runs in a
 * maintained ASL interpreter (aws-local-stepfunctions), its Lambda tasks mapped onto the real
 * function entry point and its ECS RunTask.sync task onto the real CLI run as a plain process with
 * exactly the task definition's environment (plus the local services' endpoints). PostgreSQL 18
 * and moto behind. Four databases on the server: discovery keeps three (include/exclude), one of
 * them cannot be backed up, one has a previous backup too long for Lambda (runner=auto → Fargate).
 */
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Template } from 'aws-cdk-lib/assertions';
import { StateMachine } from 'aws-local-stepfunctions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { manifestKeyFor } from '../../../engine/store/backup-key.ts';
import { parseManifest } from '../../../engine/store/manifest.ts';
import { noMetrics, silentLog } from '../../../lambda/powertools.ts';
import { buildApp } from '../../../infra/app.ts';
import { STATE_NAMES } from '../../../infra/constructs/fan-out.ts';
import { createEntry, createHandler } from '../../../lambda/handler.ts';
import { awsEnv, createAlertInbox, createBucket, createSecret, listKeys, testClients, type AlertInbox, type TestClients } from '../../support/aws.ts';
import { createDatabase } from '../../support/fixtures.ts';
import { ensureLayer, REPO_ROOT } from '../../support/layer.ts';
import { startMoto, type TestAws } from '../../support/moto.ts';
import { startPostgres, type TestPostgres } from '../../support/postgres.ts';

const FIXTURES = fileURLToPath(new URL('../../infra/fixtures/', import.meta.url));
const NETWORK = { vpcId: 'vpc-0123456789abcdef0', subnetIds: ['subnet-0123456789abcdef0'] };
const CLI = resolve(REPO_ROOT, 'bin', 'pg-s3-backup.mjs');
const PASSWORD = 'fleet-pw-Zq7';
const context = { awsRequestId: 'req-fan-out', getRemainingTimeInMillis: () => 600_000 };

type Env = Record<string, string>;
type CfnValue = string | Record<string, unknown>;

/** A template's environment with its deploy-time values (bucket, topic) replaced by the test's. */
function resolveEnv(vars: Record<string, CfnValue>, deployTime: Env): Env {
  return Object.fromEntries(
    Object.entries(vars).map(([name, value]) => {
      if (typeof value === 'string') return [name, value];
      const replacement = deployTime[name];
      if (replacement === undefined) throw new Error(`${name} is a deploy-time value the test does not provide`);
      return [name, replacement];
    }),
  );
}

describe('the fan-out state machine, executed locally on the real handler and CLI', () => {
  let pgsrv: TestPostgres;
  let aws: TestAws;
  let c: TestClients;
  let bucket: string;
  let inbox: AlertInbox;
  let secretArn: string;
  let pgDumpBin: string;

  beforeAll(async () => {
    let layer: string;
    [pgsrv, aws, layer] = await Promise.all([startPostgres(), startMoto(), ensureLayer()]);
    pgDumpBin = resolve(layer, 'bin', 'pg_dump');
    c = testClients(aws.endpoint);
    bucket = await createBucket(c);
    inbox = await createAlertInbox(c);
    await pgsrv.query(`create role fleet_backup login password '${PASSWORD}'; grant pg_read_all_data to fleet_backup`);
    for (const db of ['app_one', 'app_two', 'app_locked', 'scratch_tmp']) {
      await createDatabase(pgsrv, db);
      await pgsrv.query('create table t (id int primary key, v text); insert into t select g, md5(g::text) from generate_series(1, 200) g', [], db);
    }
    // The backup role may not connect to this one: its backup fails at the connect stage.
    await pgsrv.query('revoke connect on database app_locked from public');
    // The test server has no TLS, so the secret says so (as an operator's would): the task's own
    // default, verify-full against the image's RDS bundle, is proven in test/infra/container-image.test.ts.
    secretArn = await createSecret(c, { engine: 'postgres', host: pgsrv.host, port: pgsrv.port, username: 'fleet_backup', password: PASSWORD, dbname: 'postgres', sslmode: 'prefer' });
    Object.assign(process.env, awsEnv(aws.endpoint));
  });
  afterAll(async () => {
    await Promise.all([pgsrv?.stop(), aws?.stop()]);
  });

  it('plans (discovery, include/exclude, auto runner), backs up in parallel within MaxConcurrency, retries, catches the failure, summarizes, and ends failed', async () => {
    const { stack } = buildApp({
      context: { dbSecretArn: secretArn, drillSchedule: 'off', ...NETWORK, databases: '*', databaseInclude: 'app_*,scratch_*', databaseExclude: 'scratch_*', runner: 'auto', maxConcurrency: 2 },
      layerDir: resolve(FIXTURES, 'layer', 'arm64'),
      entry: 'test/infra/fixtures/handler.ts',
      now: new Date('2026-01-01T00:00:00Z'),
    });
    const template = Template.fromStack(stack).toJSON() as { Resources: Record<string, { Type: string; Properties: Record<string, unknown> }> };
    const of = (type: string) => Object.values(template.Resources).filter((r) => r.Type === type);
    const sm = of('AWS::StepFunctions::StateMachine')[0]!.Properties.DefinitionString as { 'Fn::Join': [string, CfnValue[]] };
    const definition = JSON.parse(sm['Fn::Join'][1].map((p) => (typeof p === 'string' ? p : 'arn:aws:lambda:us-east-1:123456789012:function:backup')).join('')) as ConstructorParameters<typeof StateMachine>[0];

    const deployTime = { BACKUP_BUCKET: bucket, ALERT_TOPIC_ARN: inbox.topicArn };
    const functionEnv = {
      ...resolveEnv((of('AWS::Lambda::Function')[0]!.Properties.Environment as { Variables: Record<string, CfnValue> }).Variables, deployTime),
      ...awsEnv(aws.endpoint),
      // Off Lambda the layer is not at /opt: the function's pg_dump is the built layer's.
      PG_DUMP_BIN: pgDumpBin,
    };
    const container = (of('AWS::ECS::TaskDefinition')[0]!.Properties.ContainerDefinitions as { Environment: { Name: string; Value: CfnValue }[] }[])[0]!;
    const containerEnv = {
      ...resolveEnv(Object.fromEntries(container.Environment.map((e) => [e.Name, e.Value])), deployTime),
      ...awsEnv(aws.endpoint),
      // What ECS sets in every task; the engine reads it to know it runs on Fargate.
      ECS_CONTAINER_METADATA_URI_V4: 'http://169.254.170.2/v4/test',
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/tmp',
    };
    expect(functionEnv).toMatchObject({ DATABASES: '*', DATABASE_INCLUDE: 'app_*,scratch_*', DATABASE_EXCLUDE: 'scratch_*', RUNNER: 'auto' });

    // app_two's previous backup took 700 s: more than 60 % of the Lambda timeout, so auto sends it to Fargate.
    const first = await createHandler(functionEnv, { log: silentLog, metrics: noMetrics })({ databases: ['app_two'], reason: 'earlier' }, context);
    const previousKey = manifestKeyFor(first.backups[0]!.key);
    const previous = parseManifest(await (await c.s3.send(new GetObjectCommand({ Bucket: bucket, Key: previousKey }))).Body!.transformToString());
    await c.s3.send(new PutObjectCommand({ Bucket: bucket, Key: previousKey, Body: JSON.stringify({ ...previous, durationMs: 700_000 }) }));
    await inbox.receive(0, 0);

    const entry = createEntry(functionEnv, { log: silentLog, metrics: noMetrics });
    let running = 0;
    let maxRunning = 0;
    const calls: string[] = [];
    const counted = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
      calls.push(what);
      maxRunning = Math.max(maxRunning, ++running);
      try {
        return await fn();
      } finally {
        running--;
      }
    };
    let plan: unknown;
    let throttled = false;
    const machine = new StateMachine(definition, { validationOptions: { checkArn: false } });
    const execution = machine.run(
      { reason: 'scheduled' },
      {
        overrides: {
          retryIntervalOverrides: { [STATE_NAMES.lambda]: 0, [STATE_NAMES.fargate]: 0 },
          // The interpreter types handlers over JSON values; ours take and return plain objects.
          taskResourceLocalHandlers: {
            [STATE_NAMES.plan]: async (input: unknown) => (plan = await entry(input, context)),
            [STATE_NAMES.lambda]: async (input: { databases: string[] }) =>
              counted(`lambda ${input.databases.join()}`, async () => {
                if (input.databases[0] === 'app_one' && !throttled) {
                  // A transient Lambda error on the first attempt: the state's Retry must absorb it.
                  throttled = true;
                  throw Object.assign(new Error('Rate exceeded'), { name: 'Lambda.TooManyRequestsException' });
                }
                return entry(input, context);
              }),
            [STATE_NAMES.fargate]: async (input: { Overrides: { ContainerOverrides: { Command: string[] }[] } }) => {
              const command = input.Overrides.ContainerOverrides[0]!.Command;
              return counted(`fargate ${command.join(' ')}`, () => runContainer(command, containerEnv));
            },
            [STATE_NAMES.describe]: async (input: unknown) => entry(input, context),
            [STATE_NAMES.summarize]: async (input: unknown) => entry(input, context),
          } as never,
        },
      },
    );
    const outcome = await execution.result.then(
      () => 'succeeded',
      (err: Error) => `${err.name}: ${err.message}`,
    );

    expect(plan).toEqual({
      backups: [
        { database: 'app_locked', runner: 'lambda', why: 'auto: no previous backup, Lambda first' },
        { database: 'app_one', runner: 'lambda', why: 'auto: no previous backup, Lambda first' },
        { database: 'app_two', runner: 'fargate', why: expect.stringMatching(/auto: the last backup used 78 % of the Lambda timeout/) },
      ],
    });
    expect(outcome).toMatch(/One or more databases failed/);
    expect(maxRunning).toBeLessThanOrEqual(2);
    expect(calls.filter((x) => x === 'lambda app_one')).toHaveLength(2);
    expect(calls).toContain('fargate run --database app_two --reason scheduled');

    // Two new complete backups, each recording where it ran; none of app_locked or scratch_tmp.
    const manifests = (await listKeys(c, bucket)).filter((k) => k.endsWith('.dump.json') && k !== previousKey);
    const written = await Promise.all(manifests.map(async (k) => parseManifest(await (await c.s3.send(new GetObjectCommand({ Bucket: bucket, Key: k }))).Body!.transformToString())));
    expect(written.map((m) => [m.database, m.runner, m.reason]).sort()).toEqual([
      // The handler runs here without AWS_LAMBDA_FUNCTION_NAME (which would switch TLS and the layer
      // path to Lambda's), so it truthfully records a host; the task sets ECS's variable, as ECS does.
      ['app_one', 'host', 'scheduled'],
      ['app_two', 'fargate', 'scheduled'],
    ]);

    // The failing database's own alert, then one summary naming it.
    const alerts = await inbox.receive(2, 20_000);
    expect(alerts.map((a) => a.subject)).toEqual([expect.stringMatching(/app_locked/), expect.stringMatching(/FAILED 1 of 3 databases: app_locked/)]);
    expect(alerts[1]!.message).toMatch(/- app_one: backed up \(lambda\)/);
    expect(alerts[1]!.message).toMatch(/- app_two: backed up \(fargate\)/);
    expect(alerts[1]!.message).toMatch(/- app_locked: FAILED \(lambda\) BackupRunError: .*permission denied for database/);
  });
});

/** The container's command as a plain process: exactly the task's environment, the same CLI. */
function runContainer(command: string[], env: Env): Promise<Record<string, never>> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [CLI, ...command], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGTERM'), 120_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolvePromise({});
      else reject(Object.assign(new Error(`the task's container exited ${String(code)}: ${out.slice(-2000)}`), { name: 'States.TaskFailed' }));
    });
  });
}
