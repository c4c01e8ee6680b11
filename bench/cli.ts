/**
 * `npm run bench:cli`: the CLI's figures of issue 25 item 1, each program a whole process timed
 * from outside (GNU time: wall, user + system CPU of it and its children, peak RSS), several
 * rounds, medians quoted with their spread and the load average beside them:
 *
 *  - `pg-s3-backup list` over a bucket of 100 complete backups (target ≤ 1 s);
 *  - a host-mode backup, `pg-s3-backup run` (the prebuilt CLI bundle, dist/cli/), against the
 *    Lambda function's own entry bundled as the function is (bench/handler-once.ts) doing the same
 *    backup of the same database to the same S3 API, A and B in turn (target: the CLI within
 *    0.2 CPU-s and 20 MiB of the function).
 *
 * Local services only: an embedded PostgreSQL 18 with the demo's shop database (scripts/
 * sample-shop.ts), moto for S3 and Secrets Manager (the credentials in a secret, as deployed).
 *
 *   npm run bench:cli [-- --rounds 5] [--backups 100] [--out bench/results]
 *
 * Writes <out>/<date>-cli.md and .json.
 */
import { NODE_HEAP_OPTIONS } from '../infra/node-options.ts';
import { CopyObjectCommand, CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { build } from 'esbuild';
import { randomBytes } from 'node:crypto';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { handlerBundling } from '../infra/constructs/backup-function.ts';
import { buildDumpKey, manifestKeyFor } from '../engine/store/backup-key.ts';
import { ensureCliBundle, CLI_BUNDLE_ENTRY } from '../scripts/cli-bundle.mjs';
import { ensureLayer, REPO_ROOT } from '../scripts/layer.ts';
import { startEmbeddedPostgres, startMotoServer } from '../scripts/local-services.ts';
import { createShop } from '../scripts/sample-shop.ts';
import { cpuDelta, processCpu, spawnTimed, spread, type Spread, type TimedResult } from './measure.ts';
import { benchWork, writeResults } from './services.ts';

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    backups: { type: 'string', default: '100' },
    out: { type: 'string', default: join(REPO_ROOT, 'bench', 'results') },
  },
});
const ROUNDS = Number(args.rounds);
const BACKUPS = Number(args.backups);
const BUCKET = 'pg-s3-backup-bench-cli';
const LIST_PREFIX = 'list-bench/';
const MiB = 1024 * 1024;

const load = () => loadavg().map((l) => l.toFixed(2)).join(' ');
const log = (s: string) => console.error(`bench:cli: ${s}  [load ${load()}]`);

interface Series {
  readonly label: string;
  readonly runs: TimedResult[];
  /** CPU time the S3 API server (moto) spent on each run, ms: the local stand-in for S3's latency. */
  readonly endpointCpuMs: number[];
  /** Load averages (1, 5, 15 min) before the first run and after the last. */
  readonly loadBefore: string;
  loadAfter: string;
}

function summary(s: Series): { wallS: Spread; cpuS: Spread; peakMiB: Spread; endpointCpuS: Spread } {
  return {
    endpointCpuS: spread(s.endpointCpuMs.map((ms) => ms / 1000)),
    wallS: spread(s.runs.map((r) => r.ms / 1000)),
    cpuS: spread(s.runs.map((r) => (r.cpuMs ?? Number.NaN) / 1000)),
    peakMiB: spread(s.runs.map((r) => (r.peakRssBytes ?? Number.NaN) / MiB)),
  };
}

/** Runs one program to its end; its figures go to `series` (when given), with the S3 API server's CPU time meanwhile. */
async function timed(series: Series | undefined, endpointPid: number | undefined, file: string, argv: readonly string[], env: NodeJS.ProcessEnv): Promise<TimedResult> {
  const before = processCpu(endpointPid);
  const r = await spawnTimed(file, argv, { env, stdio: ['ignore', 'ignore', 'pipe'], label: series?.label ?? file }).done;
  const endpoint = cpuDelta(before, processCpu(endpointPid));
  if (series) {
    series.runs.push(r);
    series.endpointCpuMs.push(endpoint ?? Number.NaN);
  }
  return r;
}

/** `n` complete backups under `prefix`: copies of one real backup, each with its own key and manifest, a second apart (no clock skew). */
async function seedBackups(s3: S3Client, source: { key: string; prefix: string }, prefix: string, n: number): Promise<void> {
  const manifest = JSON.parse(await (await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: manifestKeyFor(source.key) }))).Body!.transformToString()) as Record<string, unknown> & { startedAt: string; finishedAt: string; database: string };
  const duration = Date.parse(manifest.finishedAt) - Date.parse(manifest.startedAt);
  const now = Date.now();
  for (let i = 0; i < n; i += 10) {
    await Promise.all(Array.from({ length: Math.min(10, n - i) }, async (_, j) => {
      const startedAt = new Date(now - (n - i - j) * 1000 - duration);
      const key = buildDumpKey(prefix, manifest.database, startedAt);
      await s3.send(new CopyObjectCommand({ Bucket: BUCKET, Key: key, CopySource: `${BUCKET}/${source.key}` }));
      const copy = { ...manifest, key, startedAt: startedAt.toISOString(), finishedAt: new Date(startedAt.getTime() + duration).toISOString() };
      await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: manifestKeyFor(key), Body: JSON.stringify(copy), ContentType: 'application/json' }));
    }));
  }
}

function render(r: { date: string; machine: string; node: string; rounds: number; backups: number; list: Series; cli: Series; handler: Series; pairs: { cpuS: Spread; peakMiB: Spread } }): string {
  const row = (s: Series) => {
    const m = summary(s);
    const f = (x: Spread, d: number) => `${x.median.toFixed(d)} (${x.min.toFixed(d)}–${x.max.toFixed(d)})`;
    return `| ${s.label} | ${f(m.wallS, 2)} | ${f(m.cpuS, 2)} | ${f(m.peakMiB, 0)} | ${f(m.endpointCpuS, 2)} | ${s.loadBefore} → ${s.loadAfter} |`;
  };
  const listWall = summary(r.list).wallS.median;
  return `# CLI figures, ${r.date} (npm run bench:cli)

${r.machine}; ${r.node}; ${r.rounds} rounds of each (after one warm-up run), each program a whole
process timed from outside by GNU time: wall, CPU (user + system of it and its children: pg_dump
for the backups) and peak RSS (the largest process). Median (min–max). The machine is shared:
the load average (1, 5, 15 min) is given before the first and after the last run of each series;
read the CPU figures, wall time grows with the load.

| command | wall s | CPU s | peak RSS MiB | moto's CPU s meanwhile | load before → after |
|---|---|---|---|---|---|
${row(r.list)}
${row(r.cli)}
${row(r.handler)}

- **\`list\` of ${r.backups} backups**: ${listWall.toFixed(2)} s median wall — target ≤ 1 s: ${listWall <= 1 ? 'met' : 'missed'} at this load.
  Its own CPU is ${summary(r.list).cpuS.median.toFixed(2)} s; the local S3 API (moto, Python) spends
  ${summary(r.list).endpointCpuS.median.toFixed(2)} s of CPU answering the listing and the ${r.backups} manifest GETs (eight at a time),
  on the same two shared cores.
- **host-mode backup vs the bundled function**, pair by pair (CLI − function, same round): CPU
  ${r.pairs.cpuS.median.toFixed(2)} s (${r.pairs.cpuS.min.toFixed(2)} to ${r.pairs.cpuS.max.toFixed(2)}), peak RSS
  ${r.pairs.peakMiB.median.toFixed(0)} MiB (${r.pairs.peakMiB.min.toFixed(0)} to ${r.pairs.peakMiB.max.toFixed(0)}) — target within 0.2 CPU-s and 20 MiB:
  ${Math.abs(r.pairs.cpuS.median) <= 0.2 ? 'CPU met' : 'CPU missed'}, ${r.pairs.peakMiB.median <= 20 ? 'memory met' : 'memory missed'}.

The backup: the demo's shop database (scripts/sample-shop.ts, ≈ 39 MiB on disk) from an embedded
PostgreSQL 18, pg_dump 18 from the layer, \`zstd:1\`, to moto (S3 and Secrets Manager, the
credentials in a secret as deployed), RETENTION_COUNT=1000 (nothing to prune). The CLI is
\`node dist/cli/pg-s3-backup.mjs run\` (the prebuilt bundle); the function is lambda/handler.ts's
\`handler\` bundled with the function's own esbuild options (bench/handler-once.ts), run by the
same node. \`list\` lists ${r.backups} complete backups (copies of one, each with its own key and
manifest) under their own prefix.
`;
}

async function main(): Promise<void> {
  const { dir: work, own, cleanup } = benchWork('pgs3b-bench-cli-');
  try {
    log('building the CLI bundle and the function bundle, the layer if missing; starting PostgreSQL and moto');
    const handlerBundle = join(work, 'handler-once.mjs');
    const b = handlerBundling();
    const password = randomBytes(12).toString('base64url');
    const [layer, postgres, moto] = await Promise.all([
      ensureLayer(),
      startEmbeddedPostgres({ password, tempPrefix: 'pgs3b-bench-cli-pg-' }).then(own),
      startMotoServer().then(own),
      ensureCliBundle(),
      build({
        entryPoints: [join(REPO_ROOT, 'bench', 'handler-once.ts')],
        outfile: handlerBundle,
        bundle: true,
        platform: 'node',
        format: 'esm',
        target: b.target ?? 'node24',
        mainFields: b.mainFields ?? ['module', 'main'],
        banner: { js: b.banner ?? '' },
        minify: b.minify ?? true,
        sourcemap: b.sourceMap ?? false,
        sourcesContent: b.sourcesContent ?? false,
        external: b.externalModules ?? [],
        define: b.define ?? {},
        logLevel: 'error',
      }),
    ]);
    const awsEnv = { AWS_ENDPOINT_URL: moto.endpoint, AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'bench', AWS_SECRET_ACCESS_KEY: 'bench', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' };
    Object.assign(process.env, awsEnv);
    const s3 = new S3Client({ forcePathStyle: true });
    await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
    const admin = { host: postgres.host, port: postgres.port, user: postgres.user, password };
    await createShop({ ...admin, database: 'postgres' }, 'shop');
    const secret = await new SecretsManagerClient({}).send(new CreateSecretCommand({
      Name: 'bench/shop-db',
      SecretString: JSON.stringify({ engine: 'postgres', host: postgres.host, port: postgres.port, username: postgres.user, password, dbname: 'shop' }),
    }));
    // Only what the process needs (no inherited secrets), the same for both: configuration from the environment, as deployed.
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH, HOME: process.env.HOME, ...awsEnv,
      DB_SECRET_ID: secret.ARN!, DATABASES: 'shop', BACKUP_BUCKET: BUCKET, RETENTION_COUNT: '1000',
      PG_DUMP_BIN: join(layer, 'bin', 'pg_dump'), S3_FORCE_PATH_STYLE: 'true',
      // The runners' node options, as deployed (infra/node-options.ts) and as the CLI's launcher starts node.
      NODE_OPTIONS: NODE_HEAP_OPTIONS,
    };
    const node = process.execPath;
    const cli: Series = { label: 'CLI: `pg-s3-backup run` (host mode)', runs: [], endpointCpuMs: [], loadBefore: load(), loadAfter: '' };
    const handler: Series = { label: 'function: bundled `handler`, one invocation', runs: [], endpointCpuMs: [], loadBefore: load(), loadAfter: '' };
    log(`backup: CLI and function in turn, 1 warm-up + ${ROUNDS} rounds`);
    const motoPid = moto.child.pid;
    for (let round = 0; round <= ROUNDS; round++) {
      // Round 0 warms up (file cache, moto's first requests): not counted.
      const a = await timed(round > 0 ? cli : undefined, motoPid, node, [CLI_BUNDLE_ENTRY, 'run'], env);
      const h = await timed(round > 0 ? handler : undefined, motoPid, node, [handlerBundle], env);
      if (round === 0) continue;
      log(`round ${round}: CLI ${(a.cpuMs! / 1000).toFixed(2)} CPU-s ${(a.peakRssBytes! / MiB).toFixed(0)} MiB; function ${(h.cpuMs! / 1000).toFixed(2)} CPU-s ${(h.peakRssBytes! / MiB).toFixed(0)} MiB`);
    }
    cli.loadAfter = handler.loadAfter = load();

    log(`seeding ${BACKUPS} backups under ${LIST_PREFIX}`);
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'pg-s3-backup/shop/' }));
    const sourceKey = listed.Contents?.map((o) => o.Key!).find((k) => k.endsWith('.dump'));
    if (!sourceKey) throw new Error('no backup to copy');
    await seedBackups(s3, { key: sourceKey, prefix: 'pg-s3-backup/' }, LIST_PREFIX, BACKUPS);
    const listEnv = { ...env, BACKUP_PREFIX: LIST_PREFIX };
    const list: Series = { label: `CLI: \`pg-s3-backup list\`, ${BACKUPS} backups`, runs: [], endpointCpuMs: [], loadBefore: load(), loadAfter: '' };
    log(`list: 1 warm-up + ${ROUNDS} runs`);
    for (let round = 0; round <= ROUNDS; round++) await timed(round > 0 ? list : undefined, motoPid, node, [CLI_BUNDLE_ENTRY, 'list'], listEnv);
    list.loadAfter = load();

    const date = new Date().toISOString().slice(0, 10);
    const pairs = {
      cpuS: spread(cli.runs.map((r, i) => (r.cpuMs! - handler.runs[i]!.cpuMs!) / 1000)),
      peakMiB: spread(cli.runs.map((r, i) => (r.peakRssBytes! - handler.runs[i]!.peakRssBytes!) / MiB)),
    };
    const results = {
      date,
      machine: `${availableParallelism()} CPUs (${cpus()[0]?.model ?? '?'})`,
      node: `Node ${process.version}`,
      rounds: ROUNDS,
      backups: BACKUPS,
      list, cli, handler, pairs,
    };
    const base = writeResults(args.out, `${date}-cli`, { ...results, summary: { list: summary(list), cli: summary(cli), handler: summary(handler) } }, render(results));
    log(`wrote ${base}.md and .json`);
    console.log(render(results));
  } finally {
    await cleanup();
  }
}

await main();
