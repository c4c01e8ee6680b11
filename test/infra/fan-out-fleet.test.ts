/**
 * The fan-out at fleet size: the synthesized state machine definition runs in a maintained ASL
 * interpreter (aws-local-stepfunctions) with 500 databases, 50 of which fail. The backups
 * themselves are emulated through the interpreter's task overrides (one database's backup is
 * test/engine/backup/fanout.test.ts's subject); the failure's description and the summary are the
 * real function entry point, the summary publishing to moto's SNS. Measured: every state's output
 * against the 256 KB state payload limit, the history events against the 25,000 limit, which errors
 * are retried (the documented transient ones) and which are not (an engine failure, a container
 * that exited 1), and that the summary names every failure.
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Template } from 'aws-cdk-lib/assertions';
import { StateMachine } from 'aws-local-stepfunctions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { noMetrics, silentLog } from '../../lambda/powertools.ts';
import { buildApp } from '../../infra/app.ts';
import { STATE_NAMES } from '../../infra/constructs/fan-out.ts';
import { createEntry } from '../../lambda/handler.ts';
import { awsEnv, createAlertInbox, createBucket, testClients, type AlertInbox, type TestClients } from '../support/aws.ts';
import { startMoto, type TestAws } from '../support/moto.ts';

const FIXTURES = fileURLToPath(new URL('fixtures/', import.meta.url));
const NETWORK = { vpcId: 'vpc-0123456789abcdef0', subnetIds: ['subnet-0123456789abcdef0', 'subnet-0fedcba9876543210'] };
const SECRET = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf';
/** Step Functions' limits for a Standard execution. */
const PAYLOAD_LIMIT = 256 * 1024;
const HISTORY_LIMIT = 25_000;
const FLEET = 500;
/** The Lambda errors Step Functions' documentation says to retry (Lambda's service, throttling). */
const TRANSIENT_LAMBDA_ERRORS = ['Lambda.ServiceException', 'Lambda.AWSLambdaException', 'Lambda.SdkClientException', 'Lambda.TooManyRequestsException'];
/** The waits before a task that failed to start is started again (backoff ×2), and each failure's bounded cause. */
const TASK_START_RETRY_SECONDS = [60, 120, 240];
const FAILURE_CAUSE_LIMIT = 300;
const context = { awsRequestId: 'req-fleet', getRemainingTimeInMillis: () => 300_000 };

/** A 63-byte database name (PostgreSQL's longest): the largest a result can get. */
const nameOf = (i: number) => `tenant_${String(i).padStart(4, '0')}_`.padEnd(63, 'x');

/**
 * How a database's backup goes. Transient errors fail the first attempt(s) only; `…Always` ones
 * fail every attempt (the retries run out, then it is a failure like any other).
 */
type Scenario =
  | 'ok'
  | 'engine' // the engine failed (and alerted): never retried
  | 'throttledAlways'
  | `lambda:${string}` // one transient Lambda error, then success
  | 'ecsUnknown' // RunTask's Failures field (no capacity): AmazonECS.Unknown, then success
  | 'resourceInit' // the task stopped before its container ran, then success
  | 'pullTwice' // the image pull failed twice, then success
  | 'pullAlways'
  | 'exit1'; // the container ran and exited 1: the engine's failure, never retried

/** 500 databases: 100 on Fargate, 50 failing, a handful recovering from transient errors. */
function fleet(): { database: string; runner: 'lambda' | 'fargate'; why: string; scenario: Scenario }[] {
  return Array.from({ length: FLEET }, (_, i) => {
    const runner = i % 5 === 4 ? 'fargate' : 'lambda';
    let scenario: Scenario = 'ok';
    if (runner === 'lambda') {
      if (i < 150 && i % 5 === 0) scenario = 'engine'; // 30
      else if (i >= 200 && i < 225 && i % 5 === 0) scenario = 'throttledAlways'; // 5
      else if (i >= 300 && i < 304) scenario = `lambda:${TRANSIENT_LAMBDA_ERRORS[i - 300]!}`;
      else if (i >= 310 && i < 314) scenario = `lambda:${TRANSIENT_LAMBDA_ERRORS[i - 310]!}`;
    } else {
      if (i < 50) scenario = 'exit1'; // 10 (i = 4, 9, …, 49)
      else if (i < 75) scenario = 'pullAlways'; // 5
      else if (i < 90) scenario = 'ecsUnknown'; // 3
      else if (i < 105) scenario = 'resourceInit'; // 3
      else if (i < 115) scenario = 'pullTwice'; // 2
    }
    const why = runner === 'fargate' ? 'auto: the last backup used 78 % of the Lambda timeout (> 60 %)' : 'auto: the last backup used 12 % of the Lambda timeout';
    return { database: nameOf(i), runner, why, scenario };
  });
}

/** A Lambda function error as Step Functions' Catch sees it: Lambda's JSON, with the stack. */
function lambdaErrorCause(database: string): string {
  const message = `1 of 1 database(s) failed: ${database}: connect: permission denied for database "${database}" — grant CONNECT to the backup role (runbook: "permission denied")`;
  const trace = [`BackupRunError: ${message}`, ...Array.from({ length: 14 }, (_, i) => `    at step${i} (file:///var/task/index.mjs:${1000 + i * 37}:${11 + i})`)];
  return JSON.stringify({ errorType: 'BackupRunError', errorMessage: message, trace });
}

/** A stopped Fargate task as RunTask.sync's cause carries it: the task's whole description. */
function stoppedTaskCause(database: string, stoppedReason: string, exitCode?: number): string {
  const id = 'a1b2c3d4e5f60718293a4b5c6d7e8f90';
  const arn = `arn:aws:ecs:us-east-1:123456789012:task/pg-s3-backup-FargateCluster1A2B3C4D-xYz/${id}`;
  const started = exitCode !== undefined;
  return JSON.stringify({
    Attachments: [
      {
        Details: [
          { Name: 'subnetId', Value: NETWORK.subnetIds[0] },
          { Name: 'networkInterfaceId', Value: 'eni-0123456789abcdef0' },
          { Name: 'macAddress', Value: '0a:1b:2c:3d:4e:5f' },
          { Name: 'privateDnsName', Value: 'ip-10-0-12-34.ec2.internal' },
          { Name: 'privateIPv4Address', Value: '10.0.12.34' },
        ],
        Id: 'f0e1d2c3-b4a5-6789-0abc-def012345678',
        Status: 'DELETED',
        Type: 'eni',
      },
    ],
    Attributes: [{ Name: 'ecs.cpu-architecture', Value: 'arm64' }],
    AvailabilityZone: 'us-east-1a',
    ClusterArn: 'arn:aws:ecs:us-east-1:123456789012:cluster/pg-s3-backup-FargateCluster1A2B3C4D-xYz',
    Connectivity: 'CONNECTED',
    Containers: [
      {
        ContainerArn: `arn:aws:ecs:us-east-1:123456789012:container/pg-s3-backup-FargateCluster1A2B3C4D-xYz/${id}/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b`,
        Cpu: '0',
        ...(started ? { ExitCode: exitCode, RuntimeId: `${id}-1234567890` } : { Reason: stoppedReason }),
        Image: '123456789012.dkr.ecr.us-east-1.amazonaws.com/cdk-hnb659fds-container-assets-123456789012-us-east-1:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
        LastStatus: 'STOPPED',
        Name: 'engine',
        NetworkInterfaces: [{ AttachmentId: 'f0e1d2c3-b4a5-6789-0abc-def012345678', PrivateIpv4Address: '10.0.12.34' }],
        TaskArn: arn,
      },
    ],
    Cpu: '1024',
    CreatedAt: 1764990000000,
    DesiredStatus: 'STOPPED',
    EnableExecuteCommand: false,
    EphemeralStorage: { SizeInGiB: 21 },
    Group: 'family:pgs3backupFargateTask1A2B3C4D',
    LastStatus: 'STOPPED',
    LaunchType: 'FARGATE',
    Memory: '2048',
    Overrides: { ContainerOverrides: [{ Command: ['run', '--database', database, '--reason', 'scheduled'], Name: 'engine' }], InferenceAcceleratorOverrides: [] },
    PlatformFamily: 'Linux',
    PlatformVersion: '1.4.0',
    StartedBy: 'AWS Step Functions',
    StopCode: started ? 'EssentialContainerExited' : 'TaskFailedToStart',
    StoppedAt: 1764990300000,
    StoppedReason: stoppedReason,
    StoppingAt: 1764990290000,
    Tags: [],
    TaskArn: arn,
    TaskDefinitionArn: 'arn:aws:ecs:us-east-1:123456789012:task-definition/pgs3backupFargateTask1A2B3C4D:7',
    Version: 5,
  });
}

const fail = (name: string, message: string) => Object.assign(new Error(message), { name });
const PULL = 'CannotPullContainerError: pull image manifest has been retried 1 time(s): failed to resolve ref 123456789012.dkr.ecr.us-east-1.amazonaws.com/cdk-hnb659fds-container-assets: i/o timeout';
const INIT = 'ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: unable to retrieve ecr registry auth: service call has been retried 3 time(s): RequestError: send request failed';

function definitionOf(): ConstructorParameters<typeof StateMachine>[0] {
  const { stack } = buildApp({
    context: { dbSecretArn: SECRET, drillSchedule: 'off', ...NETWORK, runner: 'auto', databases: '*', maxConcurrency: 40 },
    layerDir: resolve(FIXTURES, 'layer', 'arm64'),
    now: new Date('2026-01-01T00:00:00Z'),
    entry: 'test/infra/fixtures/handler.ts',
  });
  const sm = Object.values(Template.fromStack(stack).findResources('AWS::StepFunctions::StateMachine'))[0] as { Properties: { DefinitionString: { 'Fn::Join': [string, unknown[]] } } };
  const text = sm.Properties.DefinitionString['Fn::Join'][1].map((p) => (typeof p === 'string' ? p : 'arn:aws:lambda:us-east-1:123456789012:function:backup')).join('');
  return JSON.parse(text) as ConstructorParameters<typeof StateMachine>[0];
}

/** The interpreter's event log entries (its type is not exported). */
type EventLog = ReturnType<StateMachine['run']>['eventLogs'] extends AsyncGenerator<infer E> ? E : never;

const bytes = (value: unknown) => Buffer.byteLength(JSON.stringify(value ?? null));

describe('the fan-out with 500 databases, 50 failing', () => {
  let aws: TestAws;
  let c: TestClients;
  let inbox: AlertInbox;
  let bucket: string;

  beforeAll(async () => {
    aws = await startMoto();
    c = testClients(aws.endpoint);
    [inbox, bucket] = await Promise.all([createAlertInbox(c), createBucket(c)]);
  });
  afterAll(async () => {
    await aws?.stop();
  });

  it('retries the transient errors only, keeps every state under 256 KB and the history under 25,000 events, and the summary names all 50 failures', async () => {
    const databases = fleet();
    const byName = new Map(databases.map((d) => [d.database, d]));
    const attempts = new Map<string, number>();
    const attempt = (database: string) => {
      const n = (attempts.get(database) ?? 0) + 1;
      attempts.set(database, n);
      return n;
    };
    // The real entry point for the failure's description and the summary (the plan is the list above).
    const entry = createEntry({ DB_SECRET_ID: SECRET, BACKUP_BUCKET: bucket, ALERT_TOPIC_ARN: inbox.topicArn, ...awsEnv(aws.endpoint) }, { sns: c.sns, log: silentLog, metrics: noMetrics });
    let taskCalls = 0;
    const handlers = {
      [STATE_NAMES.plan]: () => ({ backups: databases.map(({ database, runner, why }) => ({ database, runner, why })) }),
      [STATE_NAMES.lambda]: (input: { databases: string[] }) => {
        taskCalls++;
        const database = input.databases[0]!;
        const scenario = byName.get(database)!.scenario;
        const n = attempt(database);
        if (scenario === 'engine') throw fail('BackupRunError', lambdaErrorCause(database));
        if (scenario === 'throttledAlways') throw fail('Lambda.TooManyRequestsException', 'Rate Exceeded. (Service: Lambda, Status Code: 429, Request ID: 0f1e2d3c)');
        if (scenario.startsWith('lambda:') && n === 1) throw fail(scenario.slice('lambda:'.length), 'the Lambda service failed the invocation (Status Code: 500)');
        return { status: 'succeeded', backups: [{ database, key: `x/${database}.dump`, bytes: 1, sha256: 'ab', durationMs: 1 }], pruned: [] };
      },
      [STATE_NAMES.fargate]: (input: { Overrides: { ContainerOverrides: { Command: string[] }[] } }) => {
        taskCalls++;
        const database = input.Overrides.ContainerOverrides[0]!.Command[2]!;
        const scenario = byName.get(database)!.scenario;
        const n = attempt(database);
        if (scenario === 'exit1') throw fail('States.TaskFailed', stoppedTaskCause(database, 'Essential container in task exited', 1));
        if (scenario === 'pullAlways' || (scenario === 'pullTwice' && n <= 2)) throw fail('States.TaskFailed', stoppedTaskCause(database, PULL));
        if (scenario === 'resourceInit' && n === 1) throw fail('States.TaskFailed', stoppedTaskCause(database, INIT));
        if (scenario === 'ecsUnknown' && n === 1) throw fail('AmazonECS.Unknown', JSON.stringify({ Failures: [{ Arn: 'arn:aws:ecs:us-east-1:123456789012:cluster/c', Reason: 'Capacity is unavailable at this time. Please try again later or in a different availability zone' }], Tasks: [] }));
        return { LastStatus: 'STOPPED', Containers: [{ ExitCode: 0 }] };
      },
      [STATE_NAMES.describe]: (input: unknown) => entry(input, context),
      [STATE_NAMES.summarize]: (input: unknown) => entry(input, context),
    };

    const machine = new StateMachine(definitionOf(), { validationOptions: { checkArn: false } });
    const execution = machine.run(
      { reason: 'scheduled' },
      {
        overrides: {
          taskResourceLocalHandlers: handlers as never,
          retryIntervalOverrides: { [STATE_NAMES.lambda]: 0, [STATE_NAMES.fargate]: 0, [STATE_NAMES.describe]: 0, [STATE_NAMES.plan]: 0, [STATE_NAMES.summarize]: 0 },
          waitTimeOverrides: { [STATE_NAMES.waitStart]: 0 },
        },
      },
    );
    const events: EventLog[] = [];
    const collect = (async () => {
      for await (const e of execution.eventLogs) events.push(e);
    })();
    const outcome = await execution.result.then(
      () => 'succeeded',
      (err: Error) => `${err.name}: ${err.message}`,
    );
    await collect;

    // Every state's output, the Map's and the summary's included, under the payload limit.
    const outputs = events.flatMap((e) => (e.type === 'StateExited' ? [{ state: e.state.name, size: bytes(e.state.output) }] : []));
    const largest = outputs.reduce((a, b) => (b.size > a.size ? b : a));
    expect(largest.size, `largest state output: ${largest.state}`).toBeLessThan(PAYLOAD_LIMIT);
    const mapOutput = outputs.find((o) => o.state === STATE_NAMES.map)!;
    expect(mapOutput.size).toBeLessThan(PAYLOAD_LIMIT / 2);

    // The night ends failed, and its summary names each of the 50 failures (and nothing else).
    expect(outcome).toMatch(/BackupsFailed|One or more databases failed/);
    const failing = databases.filter((d) => ['engine', 'throttledAlways', 'pullAlways', 'exit1'].includes(d.scenario)).map((d) => d.database);
    expect(failing).toHaveLength(50);
    const summary = events.find((e): e is Extract<EventLog, { type: 'StateExited' }> => e.type === 'StateExited' && e.state.name === STATE_NAMES.summarize)!.state.output as {
      summary: { failed: { database: string; error: string }[]; succeeded: number; published: boolean };
    };
    expect(summary.summary.failed.map((f) => f.database).sort()).toEqual([...failing].sort());
    expect(summary.summary.succeeded).toBe(450);
    // Each failure keeps its message, bounded: the engine's, and the stopped task's reason with its exit code.
    const failed = new Map(summary.summary.failed.map((f) => [f.database, f.error]));
    expect(failed.get(nameOf(0))).toMatch(/^BackupRunError: 1 of 1 database\(s\) failed: .*permission denied/);
    expect(failed.get(nameOf(4))).toBe('States.TaskFailed: Essential container in task exited (exit code 1)');
    expect(failed.get(nameOf(54))).toMatch(/^States\.TaskFailed: CannotPullContainerError: /);
    expect(failed.get(nameOf(200))).toMatch(/^Lambda\.TooManyRequestsException: Rate Exceeded/);
    for (const error of failed.values()) expect(error.length).toBeLessThan(FAILURE_CAUSE_LIMIT + 60);
    const [alert] = await inbox.receive(1, 20_000);
    expect(alert!.subject).toMatch(/FAILED 50 of 500 databases/);
    for (const database of failing) expect(alert!.message).toContain(`- ${database}: FAILED`);

    // Retried: each documented transient error, until it passed or the attempts ran out.
    const tries = (scenario: Scenario) => databases.filter((d) => d.scenario === scenario).map((d) => attempts.get(d.database));
    for (const name of TRANSIENT_LAMBDA_ERRORS) expect(tries(`lambda:${name}`)).toEqual([2, 2]);
    expect(tries('throttledAlways')).toEqual([4, 4, 4, 4, 4]); // the first attempt and 3 retries
    expect(tries('ecsUnknown')).toEqual([2, 2, 2]);
    expect(tries('resourceInit')).toEqual([2, 2, 2]);
    expect(tries('pullTwice')).toEqual([3, 3]);
    expect(tries('pullAlways')).toEqual(Array(5).fill(1 + TASK_START_RETRY_SECONDS.length));
    // Not retried: the engine's own failures (it has alerted already; a retry would not help).
    expect(new Set(tries('engine'))).toEqual(new Set([1]));
    expect(new Set(tries('exit1'))).toEqual(new Set([1]));
    expect(new Set(tries('ok'))).toEqual(new Set([1]));
    // A task that failed to start waits longer each time before it is started again.
    const waits = events.flatMap((e) => (e.type === 'StateEntered' && e.state.name === STATE_NAMES.waitStart ? [(e.state.input as { waitSeconds: number }).waitSeconds] : []));
    expect(waits.filter((w) => w === TASK_START_RETRY_SECONDS[0])).toHaveLength(5 + 3 + 2);
    expect(waits.filter((w) => w === TASK_START_RETRY_SECONDS[2])).toHaveLength(5);

    // The history: what Step Functions records for these transitions (entered and exited per state,
    // scheduled/started/ended per task attempt and submitted per RunTask.sync attempt, started and
    // ended per Map iteration, the execution's start and end).
    const visits = events.filter((e) => e.type === 'StateEntered').length;
    const iterations = events.filter((e) => e.type === 'MapIterationStarted').length;
    const fargateAttempts = databases.filter((d) => d.runner === 'fargate').reduce((n, d) => n + (attempts.get(d.database) ?? 0), 0);
    const describeCalls = summary.summary.failed.length;
    const history = 2 + 2 * visits + 3 * (taskCalls + describeCalls + 2) + fargateAttempts + 2 * iterations + 2;
    expect(history).toBeLessThan(HISTORY_LIMIT);
    console.info(`fleet of ${FLEET}: largest state output ${largest.size} B (${largest.state}), Map output ${mapOutput.size} B, history ≈ ${history} events`);
  });
});
