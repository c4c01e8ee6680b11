/**
 * `restore --remote` and `verify --remote` (issue 21 item 4), with ECS emulated through the CLI's
 * deps: the fake ECS client's RunTask runs the task for real, as the restore task definition of
 * the synthesized stack says (the image's file tree, read-only root, uid 1000, exactly the
 * container's environment plus the overrides), against an embedded PostgreSQL (TLS) and moto, whose
 * Secrets Manager holds the target's credentials under the stack's restore prefix; the fake logs
 * client serves the lines the task wrote, as the awslogs driver would. The operator's side never
 * sees the credentials: they are in no request, no override and no output.
 */
import type { GetLogEventsCommand } from '@aws-sdk/client-cloudwatch-logs';
import { DescribeTasksCommand, RunTaskCommand, StopTaskCommand, type RunTaskCommandInput, type Task } from '@aws-sdk/client-ecs';
import { Template } from 'aws-cdk-lib/assertions';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../infra/app.ts';
import { imageFiles } from '../../infra/container/image.ts';
import { main } from '../../cli/main.ts';
import { InterruptedError } from '../../engine/errors.ts';
import { hostArchitecture } from '../../layers/pg-dump/paths.ts';
import { awsEnv, createBucket, createSecret, testClients, TEST_REGION } from '../support/aws.ts';
import { baseEnv, jsonLines, runCli } from '../support/cli.ts';
import { createFidelityDatabase, createFidelityRoles } from '../support/fidelity-fixtures.ts';
import { assembleImageTree, BASE_IMAGE_PATH, entrypoint, runInImage, taskEnvironment, type ContainerDefinition, type ImageTree } from '../support/image-tree.ts';
import { ensureLayer } from '../support/layer.ts';
import { startMoto, type TestAws } from '../support/moto.ts';
import { startPostgres, type TestPostgres } from '../support/postgres.ts';
import { makeTestCertificates, type TestCertificates } from '../support/tls.ts';
import { compareDatabases } from '../support/whole-database.ts';

const ARCH = hostArchitecture();
const NETWORK = { vpcId: 'vpc-0123456789abcdef0', subnetIds: ['subnet-0123456789abcdef0', 'subnet-0fedcba9876543210'] };

/** A deploy-time value of an output, made a plain string naming what it stands for. */
function plain(value: unknown): string {
  if (typeof value === 'string') return value;
  const v = value as Record<string, unknown>;
  if (Array.isArray(v['Fn::Join'])) {
    const [sep, parts] = v['Fn::Join'] as [string, unknown[]];
    return parts.map(plain).join(sep);
  }
  if (typeof v.Ref === 'string') return `ref-${v.Ref}`;
  if (Array.isArray(v['Fn::GetAtt'])) return `arn:aws:ecs:${TEST_REGION}:123456789012:cluster/${(v['Fn::GetAtt'] as string[]).join('-')}`;
  throw new Error(`not modelled: ${JSON.stringify(value)}`);
}

/** The stack as deployed with the Fargate runner: the restore task's container and the outputs the CLI reads. */
function synth() {
  const { stack } = buildApp({
    context: { dbSecretArn: 'arn:aws:secretsmanager:eu-west-3:123456789012:secret:prod/db-AbCdEf', drillSchedule: 'off', ...NETWORK, runner: 'fargate', databases: 'fidelity', architecture: ARCH },
    now: new Date('2026-01-01T00:00:00Z'),
    entry: 'test/infra/fixtures/handler.ts',
  });
  const json = Template.fromStack(stack).toJSON() as { Resources: Record<string, { Type: string; Properties: { ContainerDefinitions?: ContainerDefinition[] } }>; Outputs: Record<string, { Value: unknown }> };
  const [, task] = Object.entries(json.Resources).find(([id, r]) => r.Type === 'AWS::ECS::TaskDefinition' && id.startsWith('RemoteTask'))!;
  const output = JSON.parse(plain(json.Outputs.RemoteRestore!.Value)) as { cluster: string; taskDefinition: string; container: string; subnets: string[]; securityGroups: string[]; logGroup: string; logStreamPrefix: string; secretPrefix: string };
  return { container: task.Properties.ContainerDefinitions![0]!, outputs: json.Outputs, output };
}

interface FakeTask {
  readonly arn: string;
  status: string;
  exitCode?: number | undefined;
  stopCode?: string;
  stoppedReason?: string;
  readonly lines: string[];
  started?: number;
  done?: Promise<unknown>;
}

/** `operator gone`: the task runs, but this side loses ECS after RunTask (a closed laptop, a lost network): nobody follows or stops it. */
type Behaviour = 'run' | 'never starts' | 'no capacity' | 'hangs' | 'operator gone';

describe('restore --remote / verify --remote (ECS and CloudWatch Logs emulated, the task run in the image)', () => {
  const { container, outputs, output } = synth();
  let certs: TestCertificates;
  let pg: TestPostgres;
  let aws: TestAws;
  let tree: ImageTree;
  let bucket: string;
  let secretName: string;
  const requests: unknown[] = [];
  const tasks = new Map<string, FakeTask>();

  beforeAll(async () => {
    certs = await makeTestCertificates();
    [pg, aws] = await Promise.all([startPostgres({ postgresFlags: certs.postgresFlags }), startMoto(), ensureLayer(ARCH)]);
    const clients = testClients(aws.endpoint);
    bucket = await createBucket(clients);
    await createFidelityRoles(pg);
    await createFidelityDatabase(pg);
    // The nightly backup, taken from here (the remote side only restores).
    const backup = await runCli(['run', '--reason', 'remote'], { ...baseEnv(), ...awsEnv(aws.endpoint), BACKUP_BUCKET: bucket, DATABASE_URL: pg.urlFor('fidelity') });
    expect(backup.code, backup.stderr).toBe(0);
    // The target's credentials, RDS format, named under the stack's restore prefix.
    secretName = `${output.secretPrefix}target-${randomUUID().slice(0, 8)}`;
    await createSecret(clients, { host: pg.host, port: pg.port, username: pg.user, password: pg.password, dbname: 'postgres', sslmode: 'require' }, secretName);
    tree = assembleImageTree(imageFiles(), ARCH);
  });

  afterAll(async () => {
    await Promise.all([...tasks.values()].map((t) => t.done));
    tree?.remove();
    certs?.remove();
    await Promise.all([pg?.stop(), aws?.stop()]);
  });

  /** What ECS and the task role give every task, beside the task definition's environment (moto standing in for AWS). */
  const platformEnv = () => ({ PATH: BASE_IMAGE_PATH, AWS_DEFAULT_REGION: TEST_REGION, ECS_CONTAINER_METADATA_URI_V4: 'http://169.254.170.2/v4/test', ...awsEnv(aws.endpoint) });

  function fakeEcs(behaviour: Behaviour) {
    return {
      send: async (cmd: RunTaskCommand | DescribeTasksCommand | StopTaskCommand): Promise<unknown> => {
        requests.push({ command: cmd.constructor.name, input: cmd.input });
        if (cmd instanceof RunTaskCommand) return runTask(cmd.input, behaviour);
        if (behaviour === 'operator gone' && !(cmd instanceof RunTaskCommand)) throw Object.assign(new Error('getaddrinfo EAI_AGAIN ecs.eu-west-3.amazonaws.com'), { name: 'Error', code: 'EAI_AGAIN' });
        if (cmd instanceof DescribeTasksCommand) {
          expect(cmd.input.cluster).toBe(output.cluster);
          const t = tasks.get(cmd.input.tasks![0]!)!;
          const described: Task = {
            taskArn: t.arn,
            lastStatus: t.status,
            ...(t.stopCode ? { stopCode: t.stopCode as Task['stopCode'], stoppedReason: t.stoppedReason } : {}),
            containers: [{ name: output.container, ...(t.exitCode !== undefined ? { exitCode: t.exitCode } : {}) }],
          };
          return { tasks: [described], failures: [] };
        }
        if (cmd instanceof StopTaskCommand) {
          const t = tasks.get(cmd.input.task!)!;
          Object.assign(t, { status: 'STOPPED', stopCode: 'UserInitiated', stoppedReason: cmd.input.reason, exitCode: 143 });
          return { task: { taskArn: t.arn } };
        }
        throw new Error(`ECS call not emulated: ${(cmd as object).constructor.name}`);
      },
    };
  }

  async function runTask(input: RunTaskCommandInput, behaviour: Behaviour): Promise<unknown> {
    expect(input).toMatchObject({ cluster: output.cluster, taskDefinition: output.taskDefinition, launchType: 'FARGATE', count: 1 });
    expect(input.networkConfiguration?.awsvpcConfiguration).toEqual({ subnets: NETWORK.subnetIds, securityGroups: output.securityGroups, assignPublicIp: 'DISABLED' });
    const overrides = input.overrides?.containerOverrides ?? [];
    expect(overrides.map((o) => o.name)).toEqual([output.container]);
    if (behaviour === 'no capacity') return { tasks: [], failures: [{ arn: output.taskDefinition, reason: 'Capacity is unavailable at this time. Please try again later or in a different availability zone' }] };
    const arn = `arn:aws:ecs:${TEST_REGION}:123456789012:task/remote/${randomUUID().replaceAll('-', '')}`;
    const task: FakeTask = { arn, status: 'PROVISIONING', lines: [] };
    tasks.set(arn, task);
    if (behaviour === 'never starts') {
      Object.assign(task, { status: 'STOPPED', stopCode: 'TaskFailedToStart', stoppedReason: 'ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: context deadline exceeded' });
    } else if (behaviour === 'hangs') {
      task.status = 'RUNNING';
    } else {
      // Exactly the task definition's environment, then the overrides' (none are sent), as ECS merges them.
      const env = { ...platformEnv(), ...taskEnvironment(container, { BACKUP_BUCKET: bucket }), ...Object.fromEntries((overrides[0]!.environment ?? []).map((e) => [e.name!, e.value!])) };
      task.status = 'RUNNING';
      task.started = Date.now();
      task.done = runInImage(tree, [...(container.EntryPoint ?? entrypoint()), ...(overrides[0]!.command ?? container.Command)], env, {
        user: container.User!,
        writableTmp: true,
        onLine: (line) => {
          if (line !== '') task.lines.push(line);
        },
      }).then((r) => Object.assign(task, { status: 'STOPPED', stopCode: 'EssentialContainerExited', stoppedReason: 'Essential container in task exited', exitCode: r.code ?? 137 }));
    }
    return { tasks: [{ taskArn: arn, lastStatus: task.status }], failures: [] };
  }

  /** CloudWatch Logs as the awslogs driver fills it: one event per line, at most 25 per call, a forward token. */
  const fakeLogs = {
    send: async (cmd: GetLogEventsCommand): Promise<unknown> => {
      requests.push({ command: cmd.constructor.name, input: cmd.input });
      expect(cmd.input.logGroupName).toBe(output.logGroup);
      const t = [...tasks.values()].find((x) => cmd.input.logStreamName === `${output.logStreamPrefix}/${output.container}/${x.arn.split('/').at(-1)}`);
      if (!t || t.lines.length === 0) throw Object.assign(new Error('The specified log stream does not exist.'), { name: 'ResourceNotFoundException' });
      const from = Number(cmd.input.nextToken?.slice(2) ?? 0);
      const events = t.lines.slice(from, from + 25).map((message, i) => ({ timestamp: Date.now(), message, ingestionTime: from + i }));
      return { events, nextForwardToken: `f/${from + events.length}`, nextBackwardToken: 'b/0' };
    },
  };

  const fakeCloudFormation = {
    send: async (cmd: { input: { StackName?: string } }): Promise<unknown> => {
      expect(cmd.input.StackName).toBe('PgS3Backup');
      return { Stacks: [{ StackName: 'PgS3Backup', StackStatus: 'UPDATE_COMPLETE', Outputs: Object.entries(outputs).map(([k, o]) => ({ OutputKey: k, OutputValue: k === 'RemoteRestore' ? JSON.stringify(output) : plain(o.Value) })) }] };
    },
  };

  /** The CLI in-process, as an operator's machine runs it: no AWS endpoint of its own, no database access. */
  async function cli(argv: string[], behaviour: Behaviour = 'run', signal?: AbortSignal) {
    let stdout = '';
    let stderr = '';
    const from = requests.length;
    const code = await main(argv, {
      stdout: { write: (s: string) => (stdout += s) },
      stderr: { write: (s: string) => (stderr += s) },
      env: { AWS_REGION: TEST_REGION },
      remote: { ecs: fakeEcs(behaviour) as never, logs: fakeLogs as never, cloudformation: fakeCloudFormation as never, pollMs: 100 },
      signal,
    });
    const sent = requests.slice(from) as { command: string; input: Record<string, unknown> }[];
    return { code, stdout, stderr, events: jsonLines(stdout), sent, runTask: sent.find((r) => r.command === 'RunTaskCommand')?.input as RunTaskCommandInput | undefined };
  }

  const expectNoCredentials = (...texts: string[]) => {
    for (const text of texts) {
      expect(text).not.toContain(pg.password);
      expect(text).not.toContain(encodeURIComponent(pg.password));
    }
  };

  it('restores in the task from the target named by a secret, streams its progress, and gives back the whole database', async () => {
    const r = await cli(['restore', '--remote', '--latest', '--database', 'fidelity', '--create', '--target-secret', secretName, '--target-database', 'fidelity_remote', '--timeout', '10m']);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(await compareDatabases({ pg, database: 'fidelity' }, { pg, database: 'fidelity_remote' })).toEqual([]);
    // The task's command: the operator's options minus --remote and --timeout, the secret by name only.
    expect(r.runTask!.overrides!.containerOverrides![0]!.command).toEqual(['restore', '--latest', '--database', 'fidelity', '--target-secret', secretName, '--target-database', 'fidelity_remote', '--create']);
    // Its own deadline, from --timeout: the task keeps it should this side go away.
    expect(r.runTask!.overrides!.containerOverrides![0]!.environment).toEqual([{ name: 'TASK_TIMEOUT_SECONDS', value: '600' }]);
    // Streamed: the task's status, then its own events (download, restore…), then its result as this command's.
    const names = r.events.map((e) => e.event);
    expect(r.events.filter((e) => e.event === 'remote.task').map((e) => e.status)).toEqual(['RUNNING', 'STOPPED']);
    expect(names).toEqual(expect.arrayContaining(['restore.manifest', 'restore.download.progress', 'restore.sha256-verified', 'restore.done']));
    expect(names.at(-1)).toBe('result');
    expect(r.events.at(-1)).toMatchObject({ event: 'result', created: true, sourceDatabase: 'fidelity' });
    // The password is in no request (RunTask, its overrides, the polls), no line of the task, no output here.
    const task = tasks.get(r.runTask ? (r.sent.find((s) => s.command === 'DescribeTasksCommand')!.input.tasks as string[])[0]! : '')!;
    expectNoCredentials(JSON.stringify(r.sent), task.lines.join('\n'), r.stdout, r.stderr);
  });

  it('exits 1 with the task\'s reason when the restore fails in the task', async () => {
    // fidelity_remote exists now: --create refuses it, in the task.
    const r = await cli(['restore', '--remote', '--latest', '--database', 'fidelity', '--create', '--target-secret', secretName, '--target-database', 'fidelity_remote']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/fidelity_remote.*exists[\s\S]*\(in task arn:aws:ecs:.*, exit 1\)/);
    // The output contract: the error line, then the failed command's result line, last.
    expect(r.events.slice(-2)).toMatchObject([{ event: 'error' }, { event: 'result', ok: false, exitCode: 1 }]);
    expectNoCredentials(JSON.stringify(r.sent), r.stdout, r.stderr);
  });

  it('exits with the task\'s own exit code: 2 for a usage error the task finds', async () => {
    const r = await cli(['restore', '--remote', '--key', 'pg-s3-backup/nosuch.dump', '--target-secret', secretName, '--target-database', 'x']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--key pg-s3-backup\/nosuch\.dump is not a backup key[\s\S]*exit 2\)/);
  });

  it('stops the task when the operator interrupts (Ctrl-C), and exits 130', async () => {
    const interrupt = new AbortController();
    setTimeout(() => interrupt.abort(new InterruptedError('SIGINT')), 300);
    const r = await cli(['restore', '--remote', '--latest', '--target-secret', secretName], 'hangs', interrupt.signal);
    expect(r.code).toBe(130);
    expect(r.sent.filter((s) => s.command === 'StopTaskCommand').map((s) => s.input.reason)).toEqual(['pg-s3-backup --remote: interrupted by the operator']);
    expect(r.stderr).toMatch(/interrupted: task arn:aws:ecs:\S+ was stopped/);
  });

  it('verifies in the task on the scratch server named by a secret', async () => {
    const r = await cli(['verify', '--remote', '--latest', '--database', 'fidelity', '--scratch-secret', secretName]);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.runTask!.overrides!.containerOverrides![0]!.command).toEqual(['verify', '--latest', '--database', 'fidelity', '--scratch-secret', secretName]);
    expect(r.events.at(-1)).toMatchObject({ event: 'result', status: 'ok', database: 'fidelity', problems: [] });
    expectNoCredentials(JSON.stringify(r.sent), r.stdout, r.stderr);
  });

  it('refuses, before any task, a URL or a local path (they would travel in clear text or mean nothing there) and a secret outside the restore prefix', async () => {
    const cases: [string[], RegExp][] = [
      [['restore', '--remote', '--latest', '--target-url', pg.urlFor('x')], /--target-url does not go with --remote/],
      [['restore', '--remote', '--latest', '--target-secret', secretName, '--temp-dir', '/big'], /--temp-dir does not go with --remote/],
      [['verify', '--remote', '--latest', '--local'], /--local does not go with --remote/],
      [['restore', '--remote', '--latest', '--target-secret', 'prod/db'], /secret prod\/db is not named under PgS3Backup\/restore\//],
      [['restore', '--remote', '--latest'], /restore needs --target-url or --target-secret/],
    ];
    for (const [argv, message] of cases) {
      const r = await cli(argv);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.stderr, argv.join(' ')).toMatch(message);
      expect(r.runTask, argv.join(' ')).toBeUndefined();
      expectNoCredentials(r.stderr, r.stdout);
    }
  });

  it('says why and what to do when the task never started, or ECS had no capacity', async () => {
    const never = await cli(['restore', '--remote', '--latest', '--target-secret', secretName], 'never starts');
    expect(never.code).toBe(1);
    expect(never.stderr).toMatch(/did not start: TaskFailedToStart: ResourceInitializationError[\s\S]*what to do: Nothing was restored\. The task's subnets need a route to ECR/);
    const full = await cli(['restore', '--remote', '--latest', '--target-secret', secretName], 'no capacity');
    expect(full.code).toBe(1);
    expect(full.stderr).toMatch(/ECS did not start the restore task: Capacity is unavailable[\s\S]*what to do: Fargate had no capacity/);
  });

  it('stops the task and fails when --timeout passes', async () => {
    const started = Date.now();
    const r = await cli(['restore', '--remote', '--latest', '--target-secret', secretName, '--timeout', '1s'], 'hangs');
    // 124, as when the task stops itself at the same deadline (below).
    expect(r.code).toBe(124);
    expect(r.events.at(-1)).toMatchObject({ event: 'result', ok: false, exitCode: 124 });
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(r.sent.filter((s) => s.command === 'StopTaskCommand').map((s) => s.input.reason)).toEqual(['pg-s3-backup --remote: --timeout of 1 s reached']);
    expect(r.stderr).toMatch(/did not finish within --timeout 1\.0 s: task arn:aws:ecs:\S+ was stopped/);
  });
  /**
   * A backup whose restore stalls on the server, as behind a lock or a server that stopped
   * answering: each row of the table calls a domain check that waits ten minutes anywhere but in
   * the source database. Made once, by the first test that needs it.
   */
  let stalling: Promise<void> | undefined;
  const stallingBackup = () =>
    (stalling ??= (async () => {
      await pg.query('CREATE DATABASE stallsrc');
      await pg.query(
        `CREATE FUNCTION stall_outside_source(v int) RETURNS boolean LANGUAGE plpgsql AS $$
         BEGIN
           IF current_database() <> 'stallsrc' THEN PERFORM pg_sleep(600); END IF;
           RETURN v IS NOT NULL;
         END $$;
         CREATE DOMAIN stalling_int AS int CHECK (stall_outside_source(VALUE));
         CREATE TABLE stalls (v stalling_int);
         INSERT INTO stalls SELECT generate_series(1, 10);`,
        undefined,
        'stallsrc',
      );
      const backup = await runCli(['run', '--reason', 'remote-deadline'], { ...baseEnv(), ...awsEnv(aws.endpoint), BACKUP_BUCKET: bucket, DATABASE_URL: pg.urlFor('stallsrc') });
      expect(backup.code, backup.stderr).toBe(0);
    })());

  /**
   * The task reaches the stall (a session matching `where` waiting in pg_sleep), then, nobody
   * polling it nor stopping it, ends by itself at its deadline and not much later, exit 124.
   */
  async function endsAtItsDeadline(task: FakeTask, deadlineSeconds: number, where: string): Promise<void> {
    const stalled = async () => (await pg.query(`SELECT 1 FROM pg_stat_activity WHERE ${where} AND wait_event = 'PgSleep'`)).length > 0;
    const seen = Date.now();
    while (!(await stalled()) && task.status !== 'STOPPED' && Date.now() - seen < deadlineSeconds * 1000) await new Promise((res) => setTimeout(res, 100));
    expect(await stalled(), `the restore did not reach its stall; the task's lines:\n${task.lines.join('\n')}`).toBe(true);
    const bound = (deadlineSeconds + 45) * 1000;
    const ended = await Promise.race([task.done!.then(() => true), new Promise<false>((res) => setTimeout(() => res(false), bound - (Date.now() - task.started!)))]);
    expect(ended, `the task did not stop by itself within ${bound / 1000} s of its start (deadline ${deadlineSeconds} s)`).toBe(true);
    expect(Date.now() - task.started!).toBeGreaterThanOrEqual(deadlineSeconds * 1000);
    expect(task.exitCode, task.lines.join('\n')).toBe(124);
  }

  it('stops itself at its deadline when nobody follows it any more (the operator\'s machine gone): pg_restore stopped, the --create\'d database dropped, exit 124', async () => {
    await stallingBackup();
    const deadlineSeconds = 15;
    const r = await cli(['restore', '--remote', '--latest', '--database', 'stallsrc', '--create', '--target-secret', secretName, '--target-database', 'stall_remote', '--timeout', `${deadlineSeconds}s`], 'operator gone');
    // This side lost ECS right after RunTask: it says so and leaves; it could not stop the task.
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot follow task/);
    expect(r.sent.filter((s) => s.command === 'StopTaskCommand')).toEqual([]);
    expect(r.runTask!.overrides!.containerOverrides![0]!.environment).toEqual([{ name: 'TASK_TIMEOUT_SECONDS', value: String(deadlineSeconds) }]);
    const task = [...tasks.values()].at(-1)!;

    // The restore reaches the stall: the database --create made, a COPY waiting on the server.
    await endsAtItsDeadline(task, deadlineSeconds, `datname = 'stall_remote'`);
    // Its log says what happened and what to do, then the failed command's result line.
    const events = task.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events.find((e) => e.event === 'error')).toMatchObject({ stage: 'timeout', message: expect.stringMatching(/stopped at its deadline, 15 s after it started \(TASK_TIMEOUT_SECONDS=15/), hint: expect.stringMatching(/--timeout/) });
    expect(events.at(-1)).toMatchObject({ event: 'result', ok: false, exitCode: 124 });
    // The half-restored database is gone, and no session of the restore is left on the server.
    expect(await pg.query(`SELECT datname FROM pg_database WHERE datname = 'stall_remote'`)).toEqual([]);
    expect(await pg.query(`SELECT pid FROM pg_stat_activity WHERE datname IN ('stall_remote') OR application_name = 'pg_restore'`)).toEqual([]);
    expectNoCredentials(task.lines.join('\n'), r.stdout, r.stderr);
  });

  it('verify --remote\'s task stops itself at its deadline too when nobody follows it: pg_restore stopped, the scratch database dropped, exit 124, saying what happened and what to do', async () => {
    await stallingBackup();
    const deadlineSeconds = 15;
    const r = await cli(['verify', '--remote', '--latest', '--database', 'stallsrc', '--scratch-secret', secretName, '--timeout', `${deadlineSeconds}s`], 'operator gone');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot follow task/);
    expect(r.sent.filter((s) => s.command === 'StopTaskCommand')).toEqual([]);
    expect(r.runTask!.overrides!.containerOverrides![0]!.command).toEqual(['verify', '--latest', '--database', 'stallsrc', '--scratch-secret', secretName]);
    expect(r.runTask!.overrides!.containerOverrides![0]!.environment).toEqual([{ name: 'TASK_TIMEOUT_SECONDS', value: String(deadlineSeconds) }]);
    const task = [...tasks.values()].at(-1)!;

    // The restore into verify's scratch database reaches the stall.
    await endsAtItsDeadline(task, deadlineSeconds, `datname LIKE 'pgs3b\\_verify\\_%'`);
    // Its log ends with its report: what happened and what to do; no table is said to fail (it was
    // "public.stalls: missing after the restore" though the restore had been stopped, not failed).
    const events = task.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
    const report = events.at(-1) as { event: string; status: string; problems: unknown[]; failingTables: string[]; warnings: string[] };
    expect(report).toMatchObject({ event: 'result', status: 'failed', failingTables: [], tableChecks: [] });
    expect(report.problems).toEqual([
      {
        stage: 'timeout',
        message: expect.stringMatching(/^stopped at its deadline, 15 s after it started \(TASK_TIMEOUT_SECONDS=15: restore --remote \/ verify --remote pass their --timeout\)$/),
        hint: expect.stringMatching(/verify's scratch database is dropped[\s\S]*Give it more time \(--timeout/),
      },
    ]);
    expect(report.warnings).toContain('stopped before the restore finished: the tables were not compared with the manifest\'s row counts');
    // The scratch database is gone, and no session of the restore is left on the server.
    expect(await pg.query(`SELECT datname FROM pg_database WHERE datname LIKE 'pgs3b\\_verify\\_%'`)).toEqual([]);
    expect(await pg.query(`SELECT pid FROM pg_stat_activity WHERE datname LIKE 'pgs3b\\_verify\\_%' OR application_name = 'pg_restore'`)).toEqual([]);
    expectNoCredentials(task.lines.join('\n'), r.stdout, r.stderr);
  });

  it('runs the CLI under a backstop that kills it TASK_TIMEOUT_SECONDS + 300 s after the start, should the CLI itself hang', async () => {
    // The entry as synthesized, in the image; the CLI hung before it can do anything (its event
    // loop blocked, SIGTERM ignored). TASK_TIMEOUT_SECONDS=-297 puts the backstop 3 s after the
    // start instead of 5 minutes after the deadline (the CLI ignores a value out of range).
    expect(container.EntryPoint).toBeDefined();
    const env = {
      ...platformEnv(),
      ...taskEnvironment(container, { BACKUP_BUCKET: bucket }),
      TASK_TIMEOUT_SECONDS: '-297',
      NODE_OPTIONS: "--import=data:text/javascript,process.on(`SIGTERM`,()=>{});for(;;){}",
    };
    const started = Date.now();
    const run = await runInImage(tree, [...(container.EntryPoint ?? entrypoint()), 'restore', '--latest', '--target-secret', secretName], env, { user: container.User!, writableTmp: true, timeoutMs: 30_000 });
    const took = Date.now() - started;
    expect(took, `the hung CLI was not killed by the entry (${run.stderr})`).toBeLessThan(20_000);
    expect(took, run.stderr).toBeGreaterThanOrEqual(3_000);
    // Killed (no exit code): here with its process group, `timeout` included; as the task's first
    // process `timeout` outlives the SIGKILL and ECS reports exit 137 (128 + 9).
    expect(run.code).toBeNull();
  });
});
