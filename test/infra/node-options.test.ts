// node runs with the same options wherever pg-s3-backup runs (infra/node-options.ts): both
// functions (their NODE_OPTIONS, through the exec wrapper that keeps Lambda's runtime from
// overriding them) and both Fargate tasks, the CLI started as an operator starts it (its
// launcher, through the kernel's shebang handling), the host script and the image run by hand. A
// launcher that drops them runs the restore's data path with node's default young generation: a
// third more CPU and 48 MiB more memory on the bench's restore.
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Template } from 'aws-cdk-lib/assertions';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildApp } from '../../infra/app.ts';
import { LAMBDA_EXEC_WRAPPER_FILE, LAMBDA_TASK_ROOT, NODE_HEAP_OPTIONS, RUNNER_NODE_OPTIONS } from '../../infra/node-options.ts';
import { REPO_ROOT } from '../support/layer.ts';

const run = promisify(execFile);
const FIXTURES = fileURLToPath(new URL('fixtures/', import.meta.url));
/** Prints the options node was started with (its argv's, not NODE_OPTIONS'), before the program runs. */
const PROBE = `--import=data:text/javascript,process.stderr.write('execArgv='+JSON.stringify(process.execArgv)+'\\n')`;
const execArgvOf = (stderr: string): string[] => JSON.parse(/^execArgv=(.*)$/m.exec(stderr)?.[1] ?? 'null') as string[];

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'pgs3b-node-options-'));
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

it('the functions and the Fargate tasks run node with the runners\' options; the functions ship the exec wrapper', () => {
  const { app, stack } = buildApp({
    context: { dbSecretArn: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf', vpcId: 'vpc-0123456789abcdef0', subnetIds: ['subnet-0123456789abcdef0'], runner: 'fargate', databases: 'app' },
    layerDir: resolve(FIXTURES, 'layer', 'arm64'),
    serverLayerDir: resolve(FIXTURES, 'server-layer', 'arm64'),
    entry: 'test/infra/fixtures/handler.ts',
    drillEntry: 'test/infra/fixtures/handler.ts',
    now: new Date('2026-01-01T00:00:00Z'),
    outdir: join(dir, 'cdk.out'),
  });
  const resources = Object.values((Template.fromStack(stack).toJSON() as { Resources: Record<string, { Type: string; Properties: Record<string, unknown> }> }).Resources);
  // Ours: the functions that carry the backup's settings (CDK's own helper functions do not).
  const functions = resources
    .filter((r) => r.Type === 'AWS::Lambda::Function')
    .map((r) => (r.Properties.Environment as { Variables?: Record<string, unknown> } | undefined)?.Variables ?? {})
    .filter((v) => 'BACKUP_BUCKET' in v);
  expect(functions.length).toBe(2); // the backup function and the drill
  for (const v of functions) {
    expect(v.NODE_OPTIONS).toBe(RUNNER_NODE_OPTIONS);
    expect(v.AWS_LAMBDA_EXEC_WRAPPER).toBe(`${LAMBDA_TASK_ROOT}/${LAMBDA_EXEC_WRAPPER_FILE}`);
  }
  // Beside each handler, executable (Lambda runs it as a program).
  const assembly = app.synth();
  const handlers = readdirSync(assembly.directory).map((d) => join(assembly.directory, d)).filter((d) => existsSync(join(d, 'index.mjs')));
  expect(handlers.length).toBe(2);
  for (const d of handlers) {
    expect(readFileSync(join(d, LAMBDA_EXEC_WRAPPER_FILE), 'utf8')).toBe(readFileSync(join(REPO_ROOT, 'infra', 'lambda-exec-wrapper.sh'), 'utf8'));
    expect(statSync(join(d, LAMBDA_EXEC_WRAPPER_FILE)).mode & 0o111).toBe(0o111);
  }
  const containers = resources
    .filter((r) => r.Type === 'AWS::ECS::TaskDefinition')
    .flatMap((r) => r.Properties.ContainerDefinitions as { Environment: { Name: string; Value: unknown }[] }[]);
  expect(containers.length).toBe(2); // the Fargate runner's backup task and restore --remote's task
  for (const c of containers) expect(c.Environment.find((e) => e.Name === 'NODE_OPTIONS')?.Value).toBe(RUNNER_NODE_OPTIONS);
  expect(RUNNER_NODE_OPTIONS.split(' ')).toContain(NODE_HEAP_OPTIONS);
});

it('the CLI, started by its launcher as an operator starts it, runs node with the heap options', async () => {
  // Executed as a program: the kernel reads the launcher's first line (npm's bin link does the same).
  const { stdout, stderr } = await run(join(REPO_ROOT, 'bin', 'pg-s3-backup.mjs'), ['--version'], {
    env: { PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}`, NODE_OPTIONS: PROBE, HOME: dir },
    timeout: 60_000,
  });
  expect(stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  expect(execArgvOf(stderr)).toEqual(NODE_HEAP_OPTIONS.split(' '));
});

it('the host script (scripts/backup.sh) runs the CLI with the heap options, its alert too', async () => {
  // A node that records how it was started, then fails as a crashed CLI would: the script then
  // alerts through the CLI (ALERT_TOPIC_ARN set), a second start of node to check.
  const calls = join(dir, 'calls');
  const fakeNode = join(dir, 'node');
  writeFileSync(fakeNode, `#!/bin/sh\nprintf '%s\\n' "$*" >> '${calls}'\ncase "$*" in *" backup "*) exit 3 ;; esac\nexit 0\n`);
  chmodSync(fakeNode, 0o755);
  const result = await run('bash', [join(REPO_ROOT, 'scripts', 'backup.sh')], {
    env: { PATH: process.env.PATH ?? '', NODE: fakeNode, ALERT_TOPIC_ARN: 'arn:aws:sns:us-east-1:123456789012:alerts', PG_S3_BACKUP_LOCK_FILE: join(dir, 'lock'), PG_S3_BACKUP_SYSLOG: 'false' },
    timeout: 60_000,
  }).then(() => ({ code: 0 }), (err: { code: number }) => ({ code: err.code }));
  expect(result.code).toBe(3);
  const started = readFileSync(calls, 'utf8').trim().split('\n');
  expect(started.map((c) => c.split(' ').slice(2)[0])).toEqual(['backup', 'alert']);
  for (const c of started) expect(c.startsWith(`${NODE_HEAP_OPTIONS} ${join(REPO_ROOT, 'bin', 'pg-s3-backup.mjs')} `)).toBe(true);
});

it('the image, run by hand without a task definition, has the heap options in its environment', () => {
  const dockerfile = readFileSync(join(REPO_ROOT, 'infra', 'container', 'Dockerfile'), 'utf8');
  expect([...dockerfile.matchAll(/^ENV\s+NODE_OPTIONS="([^"]*)"$/gm)].map((m) => m[1])).toEqual([NODE_HEAP_OPTIONS]);
});

it('on Lambda, the runtime\'s own young-generation size gives way to NODE_OPTIONS through the exec wrapper', async () => {
  // How Lambda's Node.js runtime starts node (a 2,048 MB function: a semi-space of 102 MiB), and a
  // program that churns objects and reports how large V8 let its young generation grow.
  const probe = join(dir, 'probe.mjs');
  writeFileSync(probe, [
    "import v8 from 'node:v8';",
    'const ring = new Array(50000);',
    'for (let i = 0; i < 3_000_000; i++) ring[i % 50000] = { a: i, b: [i, i + 1] };',
    "const n = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');",
    'process.stdout.write(JSON.stringify({ execArgv: process.execArgv, newSpaceMiB: n.space_size / 1048576 }));',
  ].join('\n'));
  const runtimeCommand = [process.execPath, '--expose-gc', '--max-http-header-size', '81920', '--max-semi-space-size=102', '--max-old-space-size=1843', probe];
  const env = { PATH: process.env.PATH ?? '', NODE_OPTIONS: RUNNER_NODE_OPTIONS };
  const started = async (file: string, args: readonly string[]) => JSON.parse((await run(file, args, { env, timeout: 60_000 })).stdout) as { execArgv: string[]; newSpaceMiB: number };
  // Without the wrapper, the runtime's option wins: the young generation grows past 100 MiB.
  expect((await started(runtimeCommand[0]!, runtimeCommand.slice(1))).newSpaceMiB).toBeGreaterThan(64);
  // Through the wrapper (Lambda runs it with the runtime's command as its arguments): NODE_OPTIONS' 1 MiB semi-spaces.
  const wrapped = await started(join(REPO_ROOT, 'infra', 'lambda-exec-wrapper.sh'), runtimeCommand);
  // A few MiB (2 on a quiet machine, 4.25 seen under load: V8 sizes the space with its pages), never the runtime's 100+.
  expect(wrapped.newSpaceMiB).toBeLessThanOrEqual(8);
  expect(wrapped.execArgv).toEqual(['--expose-gc', '--max-http-header-size', '81920', '--max-old-space-size=1843']);
});
