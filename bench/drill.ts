/**
 * `npm run bench -- --modes drill [--size demo,1GB] [--seed 42] [--out bench/results] [--note "…"]`:
 * what the nightly restore drill costs — wall time per step and peak memory — for the demo's
 * shop database and for generated databases (bench/generate.ts).
 *
 * Per size: the database is created, backed up by the engine (the pg_dump layer) into the null S3
 * endpoint (bench/null-s3.ts over plain HTTP; it keeps the keys under `drill/` on disk and serves
 * them back with ranges, so no moto), then drilled by `runDrillFromConfig` — the drill function's
 * own code path: download + SHA-256, pg_restore --list, restore into a throwaway PostgreSQL 18 from
 * the pg-server layer, row counts against the manifest, `<key>.verify.json`.
 *
 * Memory is sampled from /proc every 100 ms over the drill: the bench's node process (the drill's
 * "function") and its descendants (the throwaway server's processes, pg_restore and its workers),
 * not the processes it had started before (the source PostgreSQL, the endpoint, esbuild's service). Both the sum of RSS (counts shared_buffers once per
 * server process that touched it: an overestimate) and the sum of PSS (shared pages divided among
 * the processes sharing them: what the sandbox holds) are reported; Lambda's memory limit is closer
 * to the PSS sum. The temporary folder's size is sampled too (the ephemeral storage the drill needs).
 * The load average is recorded before and after each drill: on a shared machine it explains much.
 */
import { CreateBucketCommand, DeleteBucketCommand, DeleteObjectsCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { build } from 'esbuild';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, lstatSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { runBackup } from '../engine/backup/backup.ts';
import { loadConfig } from '../engine/config.ts';
import { createDeps } from '../engine/deps.ts';
import { ignoreEvents } from '../engine/events.ts';
import { runDrillFromConfig } from '../engine/restore/drill-run.ts';
import type { DrillDatabaseReport } from '../engine/restore/drill.ts';
import { TOOL_VERSION } from '../engine/version.ts';
import { createShop } from '../scripts/sample-shop.ts';
import { ensureLayer, ensureServerLayer, REPO_ROOT } from '../scripts/layer.ts';
import { startPostgres, type TestPostgres } from '../test/support/postgres.ts';
import { generateDatabase } from './generate.ts';
import { localS3Client } from './local-s3.ts';
import { parseSize } from './measure.ts';
import { cleanUpOnInterrupt, startEndpoint, writeResults, type Endpoint } from './services.ts';

const PREFIX = 'drill/';
const REGION = 'us-east-1';
const SAMPLE_MS = 100;
const DISK_SAMPLE_MS = 1000;
const PAGE = 4096;

export interface ProcSample {
  readonly pid: number;
  readonly ppid: number;
  readonly comm: string;
}

/** Every process's pid, parent and command name, from /proc/<pid>/stat. */
export function listProcesses(): ProcSample[] {
  const out: ProcSample[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // comm is in parentheses and may hold spaces or parentheses: the fields follow the last ')'.
      const close = stat.lastIndexOf(')');
      const comm = stat.slice(stat.indexOf('(') + 1, close);
      const ppid = Number(stat.slice(close + 2).split(' ')[1]);
      out.push({ pid: Number(name), ppid, comm });
    } catch {
      // the process ended between readdir and read
    }
  }
  return out;
}

/** `root` and its descendants, leaving out the subtrees of `exclude` (pure: tested). */
export function descendants(procs: readonly ProcSample[], root: number, exclude: ReadonlySet<number> = new Set()): ProcSample[] {
  const children = new Map<number, ProcSample[]>();
  for (const p of procs) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p]);
  const self = procs.find((p) => p.pid === root);
  const out: ProcSample[] = self ? [self] : [];
  const queue = [root];
  while (queue.length) {
    for (const c of children.get(queue.shift()!) ?? []) {
      if (exclude.has(c.pid)) continue;
      out.push(c);
      queue.push(c.pid);
    }
  }
  return out;
}

/** RSS and PSS in bytes from /proc/<pid>/smaps_rollup (RSS from statm when smaps_rollup is unreadable). */
function memoryOf(pid: number): { rss: number; pss: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024;
    return { rss: kb('Rss'), pss: kb('Pss') };
  } catch {
    try {
      const rss = Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]) * PAGE;
      return { rss, pss: rss };
    } catch {
      return undefined;
    }
  }
}

function dirBytes(dir: string): number {
  let total = 0;
  const walk = (d: string) => {
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      return;
    }
    for (const n of names) {
      const p = join(d, n);
      try {
        const s = lstatSync(p);
        if (s.isDirectory()) walk(p);
        else total += s.blocks * 512;
      } catch {
        // removed meanwhile
      }
    }
  };
  walk(dir);
  return total;
}

type Group = 'node' | 'server' | 'pg_restore' | 'other';

/**
 * The program a process runs, from its command line: the layer's binaries run through the layer's
 * own dynamic loader (`ld-linux… /opt/pg-server/bin/postgres …`), so comm says `ld-linux…`; server
 * backends rewrite their command line to `postgres: …`.
 */
export function programOf(cmdline: string, comm: string): string {
  const args = cmdline.split('\0').filter(Boolean);
  if (args[0]?.startsWith('postgres:')) return 'postgres';
  let i = 0;
  if (args[0] && /(^|\/)ld-linux[^/]*$|(^|\/)ld\.so/.test(args[0])) {
    // ld.so [--preload x] [--library-path y] [--argv0 z] … program args
    i = 1;
    while (args[i]?.startsWith('--')) i += ['--preload', '--library-path', '--argv0', '--audit', '--inhibit-rpath'].includes(args[i]!) ? 2 : 1;
  }
  const arg = args[i];
  return arg ? (arg.split('/').at(-1) ?? comm) : comm;
}

function groupOf(p: ProcSample, self: number): Group {
  if (p.pid === self) return 'node';
  let cmdline = '';
  try {
    cmdline = readFileSync(`/proc/${p.pid}/cmdline`, 'utf8');
  } catch {
    // ended meanwhile
  }
  const program = programOf(cmdline, p.comm);
  return program === 'postgres' ? 'server' : program === 'pg_restore' ? 'pg_restore' : 'other';
}

export interface MemoryPeaks {
  /** Peak of the sum over node + its descendants (sampled at the same instant). */
  readonly totalRssBytes: number;
  readonly totalPssBytes: number;
  /** Peak per group, each on its own (not necessarily at the same instant). */
  readonly byGroupPssBytes: Readonly<Record<Group, number>>;
  readonly byGroupRssBytes: Readonly<Record<Group, number>>;
  readonly maxProcesses: number;
  /** The processes at the instant of the total PSS peak: what the peak is made of. */
  readonly atPeak: readonly { readonly pid: number; readonly group: Group; readonly comm: string; readonly pssBytes: number }[];
  readonly peakTempBytes: number;
  readonly samples: number;
}

/** Samples memory of this process and its descendants (minus `exclude` subtrees) and `tempDir`'s size until stopped. */
function startSampler(exclude: ReadonlySet<number>, tempDir: string): { stop(): MemoryPeaks } {
  const self = process.pid;
  const zero = (): Record<Group, number> => ({ node: 0, server: 0, pg_restore: 0, other: 0 });
  const peaks = { totalRssBytes: 0, totalPssBytes: 0, byGroupPssBytes: zero(), byGroupRssBytes: zero(), maxProcesses: 0, atPeak: [] as MemoryPeaks['atPeak'], peakTempBytes: 0, samples: 0 };
  const sample = () => {
    const procs = descendants(listProcesses(), self, exclude);
    const rss = zero();
    const pss = zero();
    const seen: { pid: number; group: Group; comm: string; pssBytes: number }[] = [];
    for (const p of procs) {
      const m = memoryOf(p.pid);
      if (!m) continue;
      const g = groupOf(p, self);
      rss[g] += m.rss;
      pss[g] += m.pss;
      seen.push({ pid: p.pid, group: g, comm: p.comm, pssBytes: m.pss });
    }
    const sum = (r: Record<Group, number>) => r.node + r.server + r.pg_restore + r.other;
    peaks.totalRssBytes = Math.max(peaks.totalRssBytes, sum(rss));
    if (sum(pss) > peaks.totalPssBytes) {
      peaks.totalPssBytes = sum(pss);
      peaks.atPeak = seen;
    }
    for (const g of Object.keys(rss) as Group[]) {
      peaks.byGroupRssBytes[g] = Math.max(peaks.byGroupRssBytes[g], rss[g]);
      peaks.byGroupPssBytes[g] = Math.max(peaks.byGroupPssBytes[g], pss[g]);
    }
    peaks.maxProcesses = Math.max(peaks.maxProcesses, procs.length);
    peaks.samples++;
  };
  const disk = () => {
    peaks.peakTempBytes = Math.max(peaks.peakTempBytes, dirBytes(tempDir));
  };
  sample();
  const t1 = setInterval(sample, SAMPLE_MS);
  const t2 = setInterval(disk, DISK_SAMPLE_MS);
  return {
    stop() {
      clearInterval(t1);
      clearInterval(t2);
      sample();
      disk();
      return peaks;
    },
  };
}

export interface DrillBenchRun {
  readonly size: string;
  readonly databaseBytes: number;
  readonly dumpBytes: number;
  readonly backupMs: number;
  readonly drillWallMs: number;
  readonly status: DrillDatabaseReport['status'];
  readonly problems: readonly string[];
  /** The restore's own timings (engine/restore/verify.ts): server start, download + SHA-256, TOC, restore, row counts. */
  readonly stepsMs: Readonly<Record<string, number>>;
  readonly tables: number;
  readonly requiredTempBytes: number | undefined;
  readonly memory: MemoryPeaks;
  readonly loadBefore: readonly number[];
  readonly loadAfter: readonly number[];
}

export interface DrillBenchResults {
  readonly kind: 'pg-s3-backup drill bench';
  readonly date: string;
  readonly command: string;
  readonly notes: readonly string[];
  readonly machine: { readonly cores: number; readonly cpu: string; readonly memoryBytes: number };
  readonly version: string;
  readonly runs: readonly DrillBenchRun[];
}

const log = (msg: string) => console.log(`[bench drill ${new Date().toISOString().slice(11, 19)}] ${msg}`);
const mib = (b: number) => `${(b / 1024 ** 2).toFixed(0)} MiB`;
const sec = (ms: number | undefined) => (ms === undefined ? '–' : `${(ms / 1000).toFixed(1)} s`);
const load = (l: readonly number[]) => l.map((x) => x.toFixed(1)).join(' / ');

export function renderDrillMarkdown(r: DrillBenchResults): string {
  const steps = ['server', 'download', 'list', 'restore', 'inspect', 'total'] as const;
  const stepNames: Record<(typeof steps)[number], string> = { server: 'server start', download: 'download + SHA-256', list: 'pg_restore --list', restore: 'restore', inspect: 'row counts', total: 'verify total' };
  return [
    `# Restore drill bench (${r.date})`,
    '',
    `\`${r.command}\` — pg-s3-backup ${r.version}, ${r.machine.cores} cores (${r.machine.cpu}), ${mib(r.machine.memoryBytes)} RAM, shared with other work: read the load averages.`,
    ...r.notes.map((n) => `\n> ${n}`),
    '',
    '## Time per step',
    '',
    `| size | database | dump | backup | ${steps.map((s) => stepNames[s]).join(' | ')} | drill wall | status | load before → after (1/5/15 min) |`,
    `|---|---:|---:|---:|${steps.map(() => '---:').join('|')}|---:|---|---|`,
    ...r.runs.map((x) => `| ${x.size} | ${mib(x.databaseBytes)} | ${mib(x.dumpBytes)} | ${sec(x.backupMs)} | ${steps.map((s) => sec(x.stepsMs[s])).join(' | ')} | ${sec(x.drillWallMs)} | ${x.status} | ${load(x.loadBefore)} → ${load(x.loadAfter)} |`),
    '',
    '## Peak memory and temporary space',
    '',
    'Sums over the drill\'s process tree at one instant (node + throwaway server + pg_restore), sampled every 100 ms; PSS divides shared pages (shared_buffers) among the processes sharing them, RSS counts them in each.',
    '',
    '| size | total PSS | total RSS | node PSS | server PSS | pg_restore PSS | processes | temp space (peak) | temp needed (drill\'s estimate) |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...r.runs.map((x) => `| ${x.size} | ${mib(x.memory.totalPssBytes)} | ${mib(x.memory.totalRssBytes)} | ${mib(x.memory.byGroupPssBytes.node)} | ${mib(x.memory.byGroupPssBytes.server)} | ${mib(x.memory.byGroupPssBytes.pg_restore)} | ${x.memory.maxProcesses} | ${mib(x.memory.peakTempBytes)} | ${x.requiredTempBytes === undefined ? '–' : mib(x.requiredTempBytes)} |`),
    '',
    ...r.runs.flatMap((x) => (x.problems.length ? [`Problems (${x.size}): ${x.problems.join('; ')}`, ''] : [])),
  ].join('\n');
}

interface DrillOptions {
  readonly sizes: readonly string[];
  readonly seed: number;
  readonly out: string;
  readonly notes: readonly string[];
}

function parseDrillOptions(argv: string[]): DrillOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      modes: { type: 'string' },
      size: { type: 'string', default: 'demo' },
      seed: { type: 'string', default: '42' },
      out: { type: 'string', default: join(REPO_ROOT, 'bench', 'results') },
      note: { type: 'string', multiple: true, default: [] },
    },
    strict: true,
  });
  const sizes = values.size.split(',').map((s) => s.trim()).filter(Boolean).map((s) => (s.toLowerCase() === 'demo' ? 'demo' : s.toUpperCase()));
  for (const s of sizes) if (s !== 'demo') parseSize(s); // throws on a bad size, before anything starts
  return { sizes, seed: Number(values.seed), out: values.out, notes: values.note };
}

export async function drillBench(argv: string[]): Promise<void> {
  const opts = parseDrillOptions(argv);
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  const command = `npm run bench -- ${argv.map((a) => (/^[\w.,:/=-]+$/.test(a) ? a : JSON.stringify(a))).join(' ')}`.trim();
  const work = mkdtempSync(join(tmpdir(), 'pgs3b-bench-drill-'));
  // As root the throwaway server runs as nobody: it must be able to reach its folder.
  chmodSync(work, 0o711);
  let pgsrv: TestPostgres | undefined;
  let endpoint: Endpoint | undefined;
  let s3: S3Client | undefined;
  const bucket = `pg-s3-backup-drill-${process.pid}`;
  const cleanup = async () => {
    if (s3) {
      await emptyBucket(s3, bucket).catch(() => {});
      await s3.send(new DeleteBucketCommand({ Bucket: bucket })).catch(() => {});
    }
    await Promise.all([pgsrv?.stop().catch(() => {}), endpoint?.stop().catch(() => {})]);
    rmSync(work, { recursive: true, force: true });
  };
  cleanUpOnInterrupt(cleanup);
  const runs: DrillBenchRun[] = [];
  try {
    log('building the null endpoint, the layers (if missing), starting PostgreSQL and the endpoint');
    const nullScript = join(work, 'null-s3.mjs');
    await build({ entryPoints: [join(REPO_ROOT, 'bench', 'null-s3.ts')], bundle: true, platform: 'node', target: 'node20', format: 'esm', outfile: nullScript, logLevel: 'error', banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" } });
    let dumpLayer: string;
    let serverLayer: string;
    [dumpLayer, serverLayer, pgsrv, endpoint] = await Promise.all([
      ensureLayer(),
      ensureServerLayer(),
      startPostgres(),
      // Plain HTTP: the drill's own client needs no trust of the self-signed certificate.
      startEndpoint('null', { script: nullScript, keepPrefixes: [PREFIX], protocol: 'http' }),
    ]);
    const url = endpoint.url();
    s3 = localS3Client(url);
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    // The source server, the endpoint and esbuild's service are children of this process too, all
    // started before any drill: whatever descends from this process now is left out of the drill's memory.
    const exclude = new Set(descendants(listProcesses(), process.pid).map((p) => p.pid).filter((pid) => pid !== process.pid));

    for (const size of opts.sizes) {
      const database = size === 'demo' ? 'shop' : `drill_${size.toLowerCase()}`;
      log(`${size}: creating "${database}"`);
      if (size === 'demo') {
        await createShop({ host: pgsrv.host, port: pgsrv.port, user: pgsrv.user, password: pgsrv.password, database: 'postgres' }, database);
      } else {
        await pgsrv.query(`CREATE DATABASE ${database}`);
        await generateDatabase(pgsrv.urlFor(database), { targetBytes: parseSize(size), seed: opts.seed });
      }
      const [{ bytes } = { bytes: 0 }] = await pgsrv.query<{ bytes: string }>('SELECT pg_database_size($1) AS bytes', [database]);
      const env: Record<string, string> = {
        AWS_ENDPOINT_URL: url,
        AWS_REGION: REGION,
        AWS_ACCESS_KEY_ID: 'bench',
        AWS_SECRET_ACCESS_KEY: 'bench',
        S3_FORCE_PATH_STYLE: 'true',
        DATABASE_URL: pgsrv.urlFor(database),
        DATABASES: database,
        BACKUP_BUCKET: bucket,
        BACKUP_PREFIX: PREFIX,
        ALERT_TOPIC_ARN: `arn:aws:sns:${REGION}:000000000000:bench-drill`,
        PG_DUMP_BIN: join(dumpLayer, 'bin', 'pg_dump'),
      };
      // The SDK clients read region, endpoint and credentials from the process environment, as in Lambda.
      Object.assign(process.env, env);
      const config = loadConfig(env);
      const deps = createDeps(config, { events: ignoreEvents });
      log(`${size}: backup (${mib(Number(bytes))})`);
      const b0 = Date.now();
      const backup = await runBackup({ reason: 'drill bench' }, config, deps);
      const backupMs = Date.now() - b0;
      if (backup.status !== 'succeeded') throw new Error(`the backup of ${database} did not succeed: ${JSON.stringify(backup).slice(0, 2000)}`);
      const dumpBytes = backup.backups[0]?.bytes ?? 0;
      const tempDir = join(work, `drill-${database}`);
      mkdirSync(tempDir);
      chmodSync(tempDir, 0o711);
      log(`${size}: drill (dump ${mib(dumpBytes)}), load ${load(loadavg())}`);
      const loadBefore = loadavg();
      const sampler = startSampler(exclude, tempDir);
      const d0 = Date.now();
      let reports: readonly DrillDatabaseReport[];
      let memory: MemoryPeaks;
      try {
        ({ reports } = await runDrillFromConfig(config, deps, { serverLayerRoot: serverLayer, tempDir }));
      } finally {
        memory = sampler.stop();
      }
      const drillWallMs = Date.now() - d0;
      const loadAfter = loadavg();
      const report = reports[0];
      if (!report) throw new Error('the drill returned no report');
      const run: DrillBenchRun = {
        size,
        databaseBytes: Number(bytes),
        dumpBytes,
        backupMs,
        drillWallMs,
        status: report.status,
        problems: [...report.problems.map((p) => `(${p.stage}) ${p.message}`), ...report.warnings],
        stepsMs: { ...(report.verify?.timingsMs ?? {}) },
        tables: report.tables.length,
        requiredTempBytes: report.requiredTempBytes,
        memory,
        loadBefore,
        loadAfter,
      };
      runs.push(run);
      log(`${size}: drill ${report.status} in ${sec(drillWallMs)}, peak PSS ${mib(memory.totalPssBytes)} (RSS ${mib(memory.totalRssBytes)}), temp ${mib(memory.peakTempBytes)}`);
      rmSync(tempDir, { recursive: true, force: true });
      await emptyBucket(s3, bucket);
      await pgsrv.query(`DROP DATABASE ${database}`);
    }
  } finally {
    await cleanup();
  }
  const date = new Date().toISOString().slice(0, 10);
  const results: DrillBenchResults = {
    kind: 'pg-s3-backup drill bench',
    date,
    command,
    notes: opts.notes,
    machine: { cores: availableParallelism(), cpu: cpus()[0]?.model ?? 'unknown', memoryBytes: totalmem() },
    version: TOOL_VERSION,
    runs,
  };
  const md = renderDrillMarkdown(results);
  log(`wrote ${writeResults(opts.out, `${date}-drill`, results, `${md}\n`)}.md and .json`);
  console.log(md);
  const failed = runs.filter((r) => r.status !== 'ok');
  if (failed.length) throw new Error(`drill not ok for ${failed.map((r) => r.size).join(', ')}`);
}

async function emptyBucket(s3: S3Client, bucket: string): Promise<void> {
  for (;;) {
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket }));
    const keys = (listed.Contents ?? []).flatMap((o) => (o.Key ? [{ Key: o.Key }] : []));
    if (!keys.length) return;
    await s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys } }));
  }
}
