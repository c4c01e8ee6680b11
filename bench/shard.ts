/**
 * `npm run bench:shard`: sharded dumps streamed to S3 (DUMP_JOBS, issue 24 §1) against the
 * single-process floor and against bare `pg_dump -Fd -j N` to a local disk (the physical limit:
 * parallel, no upload), and the sharded streamed restore (§2) against bare `pg_restore -j N` from
 * a local file.
 *
 *   npm run bench:shard -- [--size 1GB] [--compressions gzip:6,zstd:1] [--jobs 1,2,4] [--dir-jobs 2] [--repeat 3]
 *                          [--restore-jobs 2] [--modes dump,restore] [--cpu-prof DIR] [--seed 42] [--out bench/results] [--note "…"]
 *   npm run bench:shard -- --merge a.json,b.json [--out bench/results]   (several runs' rounds as one file)
 *
 * The database: the bench's data (bench/generate.ts, seeded) at half the size, then two more
 * tables each holding half of `events`' rows: `events` is half the data (the skewed table), two
 * more large tables a quarter each, and the small ones (customers, orders, large objects).
 * Shared layout: every process on the machine's cores, the server too (as the issue's
 * calibration); the null S3 endpoint (bench/null-s3.ts, HTTPS) counts and discards the uploads,
 * except under the restore prefix, which it keeps for the restore.
 *
 * Per compression, round after round, the modes alternate (floor, -Fd -j N…, DUMP_JOBS=N…), so
 * that the machine's drifting load (it is shared) spreads over all of them; medians are kept,
 * with the CPU time of each side (the tool's processes, the engine's node, the server) and the
 * load average at each run's start. Results: `<out>/<date>-shard-<size>.md` and `.json`, written
 * again after each compression of each round (a 4 GB run takes an hour on a shared machine: the
 * rounds done are kept if it is stopped).
 */
import { build } from 'esbuild';
import { randomUUID } from 'node:crypto';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { closeSync, openSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { libpqEnv } from '../engine/pg/env.ts';
import { resolvePgTool } from '../engine/pg/tools.ts';
import { ensureLayer, REPO_ROOT } from '../scripts/layer.ts';
import { startPostgres } from '../test/support/postgres.ts';
import type { EngineJob, EngineRunResult } from './engine-run.ts';
import { generateDatabase } from './generate.ts';
import { localS3Client } from './local-s3.ts';
import { NODE_HEAP_OPTIONS } from '../infra/node-options.ts';
import { capture, cpuDelta, hasTaskset, median as medianOf, parseSize, pinProcessTree, processCpu, spawnTimed, spread, type Spread } from './measure.ts';
import { benchWork, startEndpoint, writeResults } from './services.ts';

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '1GB' },
    compressions: { type: 'string', default: 'gzip:6,zstd:1' },
    jobs: { type: 'string', default: '1,2,4' },
    /** `pg_dump -Fd -j N` for each N here (default: the N of the headline). */
    'dir-jobs': { type: 'string', default: '2' },
    'restore-jobs': { type: 'string', default: '2' },
    /** Which halves to run: `restore` alone skips every dump mode (the restore's backup is still made). */
    modes: { type: 'string', default: 'dump,restore' },
    /** A directory: the engine's restore runs write a V8 CPU profile there (node --cpu-prof). */
    'cpu-prof': { type: 'string' },
    /**
     * Where the processes run. `shared`: every process on every core, the server too (the issue's
     * calibration). `client`: the dumping or restoring host apart from the database server, as
     * against RDS: pg_dump, pg_restore and the engine pinned to CPU 0; PostgreSQL and the bench on
     * CPU 1. S3 costs neither side in production: its stand-in (the null endpoint) is kept off the
     * side that bounds the run, on CPU 1 for the dumps (the client bounds them, as in bench.ts's
     * Lambda layout) and on CPU 0 for the restores (the server bounds them).
     */
    layout: { type: 'string', default: 'shared' },
    /**
     * More engine modes, each with these NODE_OPTIONS instead of the runners' (infra/node-options.ts),
     * `;` between them, `none` for node's defaults: an A/B of node's own settings.
     */
    'compare-node-options': { type: 'string', default: '' },
    repeat: { type: 'string', default: '3' },
    seed: { type: 'string', default: '42' },
    out: { type: 'string', default: 'bench/results' },
    note: { type: 'string', multiple: true, default: [] },
    merge: { type: 'string' },
  },
});
const size = { label: values.size, bytes: parseSize(values.size) };
const compressions = values.compressions.split(',').map((c) => c.trim());
const jobsList = values.jobs.split(',').map(Number);
const dirJobs = values['dir-jobs'].split(',').map(Number);
const restoreJobs = Number(values['restore-jobs']);
const repeat = Number(values.repeat);
const modes = new Set(values.modes.split(',').map((m) => m.trim()));
const layout = values.layout;
if (layout !== 'shared' && layout !== 'client') throw new Error(`--layout: expected shared or client, got ${layout}`);
if (layout === 'client' && !(hasTaskset && cpus().length >= 2)) throw new Error('--layout client needs 2 CPUs or more and taskset (util-linux)');
/** The client layout's CPUs: the host that dumps or restores, and the rest (server, endpoint, bench). */
const CLIENT_CPU = '0';
const SERVER_CPU = '1';
/** The engine modes: the runners' node options first (the product), then those to compare with. */
const nodeOptionsVariants = [NODE_HEAP_OPTIONS, ...values['compare-node-options'].split(';').map((o) => o.trim()).filter(Boolean)];
const modeSuffix = (nodeOptions: string) => (nodeOptions === NODE_HEAP_OPTIONS ? '' : nodeOptions === 'none' ? " (node's default options)" : ` NODE_OPTIONS=${nodeOptions}`);
/** `file args`, pinned to the client CPU in the client layout (taskset execs: the same process). */
const onClient = (file: string, args: readonly string[]): [string, string[]] => (layout === 'client' ? ['taskset', ['-c', CLIENT_CPU, file, ...args]] : [file, [...args]]);
const PREFIX = 'bench/';
const KEEP_PREFIX = `${PREFIX}restore/`;
const REGION = 'us-east-1';
const log = (m: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${m}`);

/**
 * The figures a run has where its mode measures them: toolCpuMs, pg_dump's or pg_restore's
 * processes (every one: -j workers, shards); nodeCpuMs, the engine's node process; serverCpuMs,
 * the PostgreSQL server (postmaster and its reaped backends); endpointCpuMs, the null S3
 * endpoint's process (on the same cores here, remote in production); the peak RSS; the output's
 * bytes. A mode's summary has the median of each.
 */
const FIGURES = ['toolCpuMs', 'nodeCpuMs', 'serverCpuMs', 'endpointCpuMs', 'peakRssBytes', 'bytes'] as const;
type Figures = { readonly [F in (typeof FIGURES)[number]]?: number | undefined };

interface Run extends Figures {
  readonly mode: string;
  readonly compression: string;
  readonly round: number;
  readonly ms: number;
  /** Load average (1 min) when the run started. */
  readonly load1: number;
}

interface ModeSummary extends Figures, Pick<Run, 'mode' | 'compression'> {
  readonly ms: Spread;
  readonly load1: Spread;
}

/** measure.ts's median over the figures a run has (undefined when none has it). */
const median = (xs: readonly (number | undefined)[]): number | undefined => {
  const v = xs.filter((x): x is number => x !== undefined && Number.isFinite(x));
  return v.length === 0 ? undefined : medianOf(v);
};

async function main(): Promise<void> {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  const { dir: work, own, cleanup } = benchWork('pgs3b-bench-shard-');
  try {
    const bundle = join(work, 'engine-run.mjs');
    const nullScript = join(work, 'null-s3.mjs');
    await Promise.all(([['engine-run.ts', bundle], ['null-s3.ts', nullScript]] as const).map(([src, outfile]) => build({
      entryPoints: [join(REPO_ROOT, 'bench', src)], bundle: true, platform: 'node', target: 'node20', format: 'esm', outfile, logLevel: 'error',
      banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
    })));
    // The bench itself (sampling /proc, talking to PostgreSQL) stays off the client's CPU.
    if (layout === 'client') await pinProcessTree(process.pid, SERVER_CPU);
    const [layer, pg, ep] = await Promise.all([ensureLayer(), startPostgres().then(own), startEndpoint('null', { script: nullScript, keepPrefixes: [KEEP_PREFIX], protocol: 'https', cpu: layout === 'client' ? SERVER_CPU : undefined }).then(own)]);
    const pgDump = resolvePgTool('pg_dump', { pgDumpBin: join(layer, 'bin', 'pg_dump') }).file;
    const pgRestore = resolvePgTool('pg_restore', { pgDumpBin: join(layer, 'bin', 'pg_dump') }).file;
    const bucket = `pg-s3-backup-bench-${randomUUID().slice(0, 8)}`;
    const s3 = localS3Client(ep.url(), ep.ca);
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    const serverPid = Number(readFileSync(join((await pg.query<{ d: string }>("SELECT current_setting('data_directory') AS d"))[0]!.d, 'postmaster.pid'), 'utf8').split('\n')[0]);
    if (layout === 'client') await pinProcessTree(serverPid, SERVER_CPU);
    const load0 = loadavg();

    const database = `shard_${size.label.toLowerCase()}`;
    await pg.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await pg.query(`CREATE DATABASE ${database}`);
    log(`generating ${size.label} (seed ${values.seed}): the bench's data at half the size, then two tables of half of events' rows each`);
    await generateDatabase(pg.urlFor(database), { targetBytes: size.bytes / 2, seed: Number(values.seed), batchRows: Math.max(1000, Math.min(40_000, Math.floor(size.bytes / 2 / 1250 / 4))) });
    for (const [t, r] of [['events_b', 0], ['events_c', 1]] as const) {
      await pg.query(`CREATE TABLE ${t} (LIKE events INCLUDING ALL); INSERT INTO ${t} SELECT * FROM events WHERE id % 2 = ${r}`, [], database);
      await pg.query(`VACUUM ANALYZE ${t}`, [], database);
    }
    const sizes = await pg.query<{ t: string; b: string }>(`SELECT relname AS t, pg_table_size(oid)::text AS b FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace ORDER BY 2 DESC`, [], database);
    const databaseBytes = Number((await pg.query<{ s: string }>('SELECT pg_database_size($1)::text AS s', [database]))[0]!.s);
    log(`database: ${(databaseBytes / 1024 ** 2).toFixed(0)} MiB; tables ${sizes.map((s) => `${s.t} ${(Number(s.b) / 1024 ** 2).toFixed(0)} MiB`).join(', ')}`);

    const env = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({
      ...process.env,
      AWS_ENDPOINT_URL: ep.url(), AWS_REGION: REGION, AWS_ACCESS_KEY_ID: 'bench', AWS_SECRET_ACCESS_KEY: 'bench', S3_FORCE_PATH_STYLE: 'true',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...(ep.ca ? { NODE_EXTRA_CA_CERTS: ep.ca } : {}),
      BACKUP_BUCKET: bucket, PG_DUMP_BIN: join(layer, 'bin', 'pg_dump'), RETENTION_COUNT: '1000', ...extra,
    });
    const backendsGone = async () => {
      const deadline = Date.now() + 5000;
      while (Date.now() < deadline && (await pg.query<{ n: string }>('SELECT count(*)::text AS n FROM pg_stat_activity WHERE datname = $1', [database]))[0]!.n !== '0') await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 100));
    };
    const measured = async (mode: string, compression: string, round: number, f: () => Promise<Omit<Run, 'mode' | 'compression' | 'round' | 'load1' | 'serverCpuMs' | 'endpointCpuMs'>>): Promise<Run> => {
      const load1 = loadavg()[0]!;
      const s0 = processCpu(serverPid);
      const e0 = processCpu(ep.pid());
      const r = await f();
      await backendsGone();
      const run = { mode, compression, round, load1, ...r, serverCpuMs: cpuDelta(s0, processCpu(serverPid)), endpointCpuMs: cpuDelta(e0, processCpu(ep.pid())) };
      log(`  ${mode} ${compression}: ${(run.ms / 1000).toFixed(2)} s (load ${load1.toFixed(1)})`);
      return run;
    };
    /** The engine's process environment: the runners' node options (or those compared), as deployed. */
    const nodeEnv = (nodeOptions: string) => ({ NODE_OPTIONS: nodeOptions === 'none' ? '' : nodeOptions });
    const engine = async (compression: string, jobs: number, prefix: string, nodeOptions = NODE_HEAP_OPTIONS) => {
      const t0 = performance.now();
      const out = await capture(...onClient(process.execPath, [bundle, JSON.stringify({ mode: 'engine' } satisfies EngineJob)]), env({ DATABASE_URL: pg.urlFor(database), PG_DUMP_COMPRESSION: compression, DUMP_JOBS: String(jobs), BACKUP_PREFIX: prefix, ROW_COUNTS: 'estimate', ...nodeEnv(nodeOptions) }));
      const r = JSON.parse(out.trim().split('\n').pop()!) as EngineRunResult;
      return { ...r, processMs: performance.now() - t0 };
    };

    const restoreCompression = compressions.includes('zstd:1') ? 'zstd:1' : compressions[0]!;
    const write = async (runs: readonly Run[], restores: readonly Run[]) => {
      const { summary, restore: restoreSummary, headline } = figures(runs, restores, { compressions, jobsList, restoreJobs, restoreCompression });
      const results = {
        date: new Date().toISOString().slice(0, 10),
        size: size.label,
        databaseBytes,
        tables: sizes.map((s) => ({ table: s.t, bytes: Number(s.b) })),
        compressions,
        jobs: jobsList,
        restoreJobs,
        /** Rounds done (fewer than --repeat in a partial write). */
        repeat: Math.max(0, ...runs.map((r) => r.round), ...restores.map((r) => r.round)),
        layout: layout === 'shared' ? 'shared (every process on every core, the server too)' : `client (pg_dump, pg_restore and the engine on CPU ${CLIENT_CPU}; PostgreSQL and the bench on CPU ${SERVER_CPU}, as a host apart from its RDS server; the S3 endpoint on CPU ${SERVER_CPU} for the dumps, on CPU ${CLIENT_CPU} for the restores: off the side that bounds them)`,
        endpoint: 'null (HTTPS)',
        rowCounts: 'estimate',
        command: `npm run bench:shard -- ${process.argv.slice(2).join(' ')}`.trim(),
        machine: { cores: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown' },
        versions: { 'pg_dump (layer)': (await capture(pgDump, ['--version'])).trim(), node: process.version, commit: (await capture('git', ['-C', REPO_ROOT, 'rev-parse', '--short', 'HEAD'])).trim() },
        loadAverage: { start: load0, end: loadavg() },
        headline,
        summary,
        restore: restoreSummary,
        notes: values.note,
        runs,
        restoreRuns: restores,
      };
      log(`wrote ${writeResults(values.out, `${results.date}-shard${layout === 'client' ? '-client' : ''}-${size.label}`, results, render(results))}.md and .json`);
      return results;
    };
    const runs: Run[] = [];
    for (let round = 1; round <= (modes.has('dump') ? repeat : 0); round++) {
      for (const compression of compressions) {
        log(`round ${round}/${repeat}, ${compression}`);
        runs.push(await measured('floor (pg_dump -Fc > /dev/null)', compression, round, async () => {
          const devNull = openSync('/dev/null', 'w');
          try {
            const r = await spawnTimed(...onClient(pgDump, ['--format=custom', `--compress=${compression}`, '--no-sync']), { env: libpqEnv(pg.connection(database)), stdio: ['ignore', devNull, 'pipe'], label: 'floor' }).done;
            return { ms: r.ms, toolCpuMs: r.cpuMs, peakRssBytes: r.peakRssBytes };
          } finally {
            closeSync(devNull);
          }
        }));
        for (const jobs of dirJobs) {
          runs.push(await measured(`pg_dump -Fd -j ${jobs} (local disk)`, compression, round, async () => {
            const dir = join(work, 'fd');
            try {
              const r = await spawnTimed(...onClient(pgDump, ['--format=directory', `--jobs=${jobs}`, `--compress=${compression}`, '--no-sync', `--file=${dir}`]), { env: libpqEnv(pg.connection(database)), stdio: ['ignore', 'ignore', 'pipe'], label: '-Fd' }).done;
              const bytes = Number((await capture('du', ['-sb', dir])).split('\t')[0]);
              return { ms: r.ms, toolCpuMs: r.cpuMs, peakRssBytes: r.peakRssBytes, bytes };
            } finally {
              rmSync(dir, { recursive: true, force: true });
            }
          }));
        }
        for (const jobs of jobsList) {
          for (const nodeOptions of nodeOptionsVariants) {
            runs.push(await measured(`DUMP_JOBS=${jobs} (streamed to S3)${modeSuffix(nodeOptions)}`, compression, round, async () => {
              const r = await engine(compression, jobs, PREFIX, nodeOptions);
              return { ms: r.ms, bytes: r.bytes, toolCpuMs: r.childCpuMs, nodeCpuMs: r.cpuMs, peakRssBytes: r.peakRssBytes };
            }));
          }
        }
        await write(runs, []);
      }
    }

    if (!modes.has('restore')) {
      console.log(render(await write(runs, [])));
      return;
    }
    // Restore: one sharded backup (DUMP_JOBS = restore jobs) kept by the endpoint, restored by the
    // engine (streamed from S3, no temporary file); bare pg_restore -j N from a local -Fc file.
    log(`restore: a DUMP_JOBS=${restoreJobs} backup (${restoreCompression}), and a local -Fc file`);
    const backup = await engine(restoreCompression, restoreJobs, KEEP_PREFIX);
    // The restores are bound by the server: S3's stand-in goes to the client's CPU (see --layout).
    if (layout === 'client') await pinProcessTree(ep.pid()!, CLIENT_CPU);
    const file = join(work, 'local.dump');
    await spawnTimed(pgDump, ['--format=custom', `--compress=${restoreCompression}`, '--no-sync', `--file=${file}`], { env: libpqEnv(pg.connection(database)), stdio: ['ignore', 'ignore', 'pipe'], label: 'pg_dump file' }).done;
    const restores: Run[] = [];
    const target = `${database}_restored`;
    for (let round = 1; round <= (modes.has('restore') ? repeat : 0); round++) {
      await pg.query(`DROP DATABASE IF EXISTS ${target} WITH (FORCE)`);
      restores.push(await measured(`bare pg_restore -j ${restoreJobs} (local file)`, restoreCompression, round, async () => {
        // The engine's restore --create makes its database within its time: so does this side.
        const t0 = performance.now();
        await pg.query(`CREATE DATABASE ${target}`);
        const createMs = performance.now() - t0;
        const r = await spawnTimed(...onClient(pgRestore, ['--no-owner', '--exit-on-error', `--jobs=${restoreJobs}`, `--dbname=${target}`, file]), { env: libpqEnv(pg.connection(target)), stdio: ['ignore', 'ignore', 'pipe'], label: 'pg_restore' }).done;
        return { ms: createMs + r.ms, toolCpuMs: r.cpuMs };
      }));
      await pg.query(`DROP DATABASE IF EXISTS ${target} WITH (FORCE)`);
      for (const nodeOptions of nodeOptionsVariants) {
        await pg.query(`DROP DATABASE IF EXISTS ${target} WITH (FORCE)`);
        restores.push(await measured(`engine restore --jobs ${restoreJobs} (DUMP_JOBS=${restoreJobs} backup, streamed from S3)${modeSuffix(nodeOptions)}`, restoreCompression, round, async () => {
          const prof = values['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${values['cpu-prof']}`] : [];
          const out = await capture(...onClient(process.execPath, [...prof, bundle, JSON.stringify({ mode: 'restore', key: backup.key, jobs: restoreJobs } satisfies EngineJob)]), env({ BACKUP_PREFIX: KEEP_PREFIX, BENCH_TARGET_URL: pg.urlFor(target), ...nodeEnv(nodeOptions) }));
          const r = JSON.parse(out.trim().split('\n').pop()!) as EngineRunResult;
          return { ms: r.ms, nodeCpuMs: r.cpuMs, toolCpuMs: r.childCpuMs, peakRssBytes: r.peakRssBytes };
        }));
      }
    }
    await pg.query(`DROP DATABASE IF EXISTS ${target} WITH (FORCE)`);

    const results = await write(runs, restores);
    console.log(render(results));
  } finally {
    await cleanup();
  }
}


/** Medians per mode, and the headline ratios (medians of per-round ratios), from the raw runs. */
function figures(runs: readonly Run[], restores: readonly Run[], o: { compressions: readonly string[]; jobsList: readonly number[]; restoreJobs: number; restoreCompression: string }) {
  const { compressions, jobsList, restoreJobs, restoreCompression } = o;
  const summarize = (rs: readonly Run[]): ModeSummary[] => {
    const keys = [...new Set(rs.map((r) => `${r.mode}\u0000${r.compression}`))];
    return keys.map((k) => {
      const [mode, compression] = k.split('\u0000') as [string, string];
      const xs = rs.filter((r) => r.mode === mode && r.compression === compression);
      return {
        mode, compression, ms: spread(xs.map((r) => r.ms)), load1: spread(xs.map((r) => r.load1)),
        ...Object.fromEntries(FIGURES.map((f) => [f, median(xs.map((r) => r[f]))])),
      };
    });
  };
  const summary = summarize(runs);
  const restoreSummary = summarize(restores);
  /** Ratio of medians, and the median of the per-round ratios (alternated runs: each round's pair saw the same load). */
  const ratio = (a: string, b: string, c: string, rs: readonly Run[] = runs) => {
    const pairs = [...new Set(rs.map((r) => r.round))].map((round) => {
      const x = rs.find((r) => r.mode === a && r.compression === c && r.round === round)?.ms;
      const y = rs.find((r) => r.mode === b && r.compression === c && r.round === round)?.ms;
      return x !== undefined && y !== undefined ? x / y : undefined;
    });
    return median(pairs);
  };
  const j = restoreJobs;
  const sharded = `DUMP_JOBS=${j} (streamed to S3)`;
  const dir = `pg_dump -Fd -j ${j} (local disk)`;
  const floor = 'floor (pg_dump -Fc > /dev/null)';
  const overDir = compressions.map((c) => ({ compression: c, ratio: ratio(sharded, dir, c) }));
  const worst = overDir.reduce((a, b) => ((b.ratio ?? 0) > (a.ratio ?? 0) ? b : a));
  const headline = {
    shardedOverFloor: compressions.includes('gzip:6') ? ratio(sharded, floor, 'gzip:6') : undefined,
    shardedOverDirectoryFormat: worst.ratio,
    shardedOverDirectoryFormatCompression: worst.compression,
    shardedOverDirectoryFormatByCompression: Object.fromEntries(overDir.map((o) => [o.compression, o.ratio])),
    shardedOverFloorByCompression: Object.fromEntries(compressions.map((c) => [c, ratio(sharded, floor, c)])),
    restoreOverBarePgRestore: restoreSummary[1] && restoreSummary[0] ? ratio(restoreSummary[1].mode, restoreSummary[0].mode, restoreCompression, restores) : undefined,
    peakRssBytesByJobs: Object.fromEntries(jobsList.map((n) => [n, median(runs.filter((r) => r.mode === `DUMP_JOBS=${n} (streamed to S3)`).map((r) => r.peakRssBytes))])),
  };
  return { summary, restore: restoreSummary, headline };
}

/**
 * `--merge a.json,b.json`: the runs of several results files of the same command (each its own
 * alternated rounds, renumbered) as one results file, figures recomputed: more rounds without
 * one long run on a shared machine.
 */
function merge(files: readonly string[]): void {
  interface Results {
    readonly date: string; readonly size: string; readonly databaseBytes: number; readonly tables: { table: string; bytes: number }[];
    readonly runs: Run[]; readonly restoreRuns: Run[]; readonly compressions: string[]; readonly jobs: number[]; readonly restoreJobs: number;
    readonly loadAverage: { start: number[]; end: number[] }; readonly command: string; readonly notes: string[]; readonly versions: Record<string, string>;
    readonly machine: { cores: number; cpuModel: string };
  }
  const all = files.map((f) => JSON.parse(readFileSync(f, 'utf8')) as Results);
  let offset = 0;
  const runs: Run[] = [];
  const restores: Run[] = [];
  for (const r of all) {
    const rounds = Math.max(...r.runs.map((x) => x.round), ...r.restoreRuns.map((x) => x.round));
    runs.push(...r.runs.map((x) => ({ ...x, round: x.round + offset })));
    restores.push(...r.restoreRuns.map((x) => ({ ...x, round: x.round + offset })));
    offset += rounds;
  }
  const first = all[0]!;
  const restoreCompression = first.compressions.includes('zstd:1') ? 'zstd:1' : first.compressions[0]!;
  const results = {
    ...first,
    repeat: offset,
    command: all.map((r) => r.command).join(' ; then '),
    versions: { ...first.versions, commit: all.map((r) => r.versions.commit).join(', ') },
    loadAverage: { start: first.loadAverage.start, end: all[all.length - 1]!.loadAverage.end, byFile: all.map((r) => r.loadAverage) },
    notes: [...new Set(all.flatMap((r) => r.notes)), `Merged from ${files.length} results files (npm run bench:shard -- --merge …): rounds renumbered in file order.`],
    ...figures(runs, restores, { compressions: first.compressions, jobsList: first.jobs, restoreJobs: first.restoreJobs, restoreCompression }),
    runs,
    restoreRuns: restores,
  };
  log(`wrote ${writeResults(values.out, `${results.date}-shard-${first.size}`, results, render(results))}.md and .json`);
}

const sec = (ms: number | undefined) => (ms === undefined ? '—' : (ms / 1000).toFixed(2));
const x = (r: number | undefined) => (r === undefined ? '—' : `${r.toFixed(2)}×`);

function render(r: {
  date: string; size: string; databaseBytes: number; tables: { table: string; bytes: number }[]; command: string; machine: { cores: number; cpuModel: string };
  versions: Record<string, string>; loadAverage: { start: number[]; end: number[] }; headline: Record<string, unknown>; summary: ModeSummary[]; restore: ModeSummary[]; notes: string[]; repeat: number; layout?: string;
}): string {
  const h = r.headline as { shardedOverFloor?: number; shardedOverDirectoryFormat?: number; shardedOverDirectoryFormatCompression: string; shardedOverDirectoryFormatByCompression: Record<string, number | undefined>; shardedOverFloorByCompression: Record<string, number | undefined>; restoreOverBarePgRestore?: number; peakRssBytesByJobs: Record<string, number | undefined> };
  const row = (s: ModeSummary) => `| ${s.mode} | ${s.compression} | ${sec(s.ms.median)} (${sec(s.ms.min)}–${sec(s.ms.max)}) | ${sec(s.toolCpuMs)} | ${sec(s.nodeCpuMs)} | ${sec(s.serverCpuMs)} | ${sec(s.endpointCpuMs)} | ${s.peakRssBytes === undefined ? '—' : (s.peakRssBytes / 1024 ** 2).toFixed(0)} | ${s.bytes === undefined ? '—' : (s.bytes / 1024 ** 2).toFixed(0)} | ${s.load1.median.toFixed(1)} |`;
  const head = '| mode | compression | wall s, median (min–max) | pg_dump / pg_restore CPU s | engine node CPU s | server CPU s | S3 endpoint CPU s | peak RSS MiB | output MiB | load (1 min) |\n|---|---|---|---|---|---|---|---|---|---|';
  return `# Sharded dumps and restores — ${r.size} (${r.date})

\`${r.command}\` · database ${(r.databaseBytes / 1024 ** 2).toFixed(0)} MiB: ${r.tables.map((t) => `${t.table} ${(t.bytes / 1024 ** 2).toFixed(0)} MiB`).join(', ')} · ${r.machine.cores} cores (${r.machine.cpuModel}), shared by other work: load average ${r.loadAverage.start.map((v) => v.toFixed(2)).join(', ')} at the start, ${r.loadAverage.end.map((v) => v.toFixed(2)).join(', ')} at the end · ${r.repeat} alternated rounds · layout: ${r.layout ?? 'shared'} · ${Object.entries(r.versions).map(([k, v]) => `${k} ${v}`).join(' · ')}

## Headline (medians of per-round ratios)

| figure | value |
|---|---|
| shardedOverFloor (gzip:6): DUMP_JOBS=2 ÷ \`pg_dump -Fc\` to /dev/null | ${x(h.shardedOverFloor)} |
| shardedOverDirectoryFormat (worst compression, ${h.shardedOverDirectoryFormatCompression}): DUMP_JOBS=2 ÷ \`pg_dump -Fd -j 2\` to local disk | ${x(h.shardedOverDirectoryFormat)} |
| restoreOverBarePgRestore: engine restore of a DUMP_JOBS=2 backup (streamed from S3) ÷ bare \`pg_restore -j 2\` from a local file | ${x(h.restoreOverBarePgRestore)} |
${Object.entries(h.shardedOverDirectoryFormatByCompression).map(([c, v]) => `| DUMP_JOBS=2 ÷ -Fd -j 2 at ${c} | ${x(v)} |`).join('\n')}
${Object.entries(h.shardedOverFloorByCompression).map(([c, v]) => `| DUMP_JOBS=2 ÷ floor at ${c} | ${x(v)} |`).join('\n')}
${Object.entries(h.peakRssBytesByJobs).map(([n, v]) => `| engine peak RSS, DUMP_JOBS=${n} | ${v === undefined ? '—' : `${(v / 1024 ** 2).toFixed(0)} MiB`} |`).join('\n')}

## Dumps

${head}
${r.summary.map(row).join('\n')}

## Restores

${head}
${r.restore.map(row).join('\n')}

${r.notes.map((n) => `- ${n}`).join('\n')}
`;
}

(values.merge ? Promise.resolve().then(() => merge(values.merge!.split(','))) : main()).catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exitCode = 1;
});

