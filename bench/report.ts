/**
 * The bench's results: raw runs → medians, headline ratios and targets (pure), and their
 * Markdown rendering. The JSON file holds the same object, every run included.
 */
import { DEFAULTS } from '../engine/config.ts';
import { spread, type SchedTimes, type Spread } from './measure.ts';

export const MODES = ['floor', 'engine', 'awscli', 'sink', 'engine-http'] as const;
export type Mode = (typeof MODES)[number];

export const COMPRESSIONS = ['gzip:6', 'gzip:1', 'lz4', 'zstd:1', 'zstd:3', 'none'] as const;

/** Lambda's hard limit, and the engine's default safety margin (TIME_MARGIN_SECONDS). */
const LAMBDA_LIMIT_S = 900;
const TIME_MARGIN_S = DEFAULTS.timeMarginSeconds;
/** Lambda gives one vCPU's worth of CPU per 1,769 MB of memory. */
const MB_PER_VCPU = 1769;
export const LAMBDA_MEMORIES_MB = [1024, 1769, 3008] as const;
const GiB = 1024 ** 3;

/** Where the CPU went during one run, ms (undefined: not measurable here). */
export interface CpuBreakdown {
  readonly pgDumpMs?: number | undefined;
  /** The PostgreSQL server (the postmaster and its reaped backends). */
  readonly serverMs?: number | undefined;
  /** node (engine, sink) or the AWS CLI. */
  readonly clientMs?: number | undefined;
  /** The local moto server. */
  readonly endpointMs?: number | undefined;
}

const CPU_PARTS = ['pgDumpMs', 'serverMs', 'clientMs', 'endpointMs'] as const;

export interface Run {
  readonly mode: Mode;
  readonly compression: string;
  readonly round: number;
  /** Wall time: the handler call (engine), streamToS3 (sink), the processes (floor, awscli). */
  readonly ms: number;
  /** Dump bytes (engine, sink). */
  readonly bytes?: number | undefined;
  /** Peak RSS of the measured process: node for engine/sink, pg_dump for floor, aws for awscli. */
  readonly peakRssBytes?: number | undefined;
  /** engine/sink: RSS before the run. */
  readonly idleRssBytes?: number | undefined;
  /** engine/sink: wall time of the whole node process, start-up included. */
  readonly processMs?: number | undefined;
  readonly cpu?: CpuBreakdown | undefined;
  /** floor, engine: how pg_dump spent its life (sampled from /proc/<pid>/schedstat). */
  readonly pgDumpSched?: SchedTimes | undefined;
  /** sink: node's own CPU, ms (clientMs adds `cat`, the sink's input). */
  readonly uploaderMs?: number | undefined;
  /** What the null endpoint received during the run. */
  readonly endpoint?: { readonly bytes: number; readonly checksumsVerified: number; readonly checksumMismatches: number; readonly requests: Readonly<Record<string, number>> } | undefined;
}

export interface RestoreFigures {
  readonly dumpBytes: number;
  /** GetObject into a local file (what a file restore needs first). */
  readonly downloadMs: Spread;
  /** GetObject streamed into `pg_restore` on stdin (one job: a pipe cannot be read in parallel). */
  readonly streamingMs: Spread;
  /** `pg_restore --jobs 2` from the local file. */
  readonly fileJobs2Ms: Spread;
  /**
   * The same database dumped to a pipe, as the engine streams it (no data offsets in the TOC),
   * restored as the engine does: pre-data, then data and post-data with --jobs 2.
   */
  readonly offsetlessPassesJobs2Ms?: Spread | undefined;
}

export interface LeverFigures {
  readonly name: string;
  readonly ms: Spread | undefined;
  /** node's CPU (the uploader; `cat` reading the file excluded), ms. */
  readonly cpuMs: Spread | undefined;
  readonly cpuPerDumpGiB: number | undefined;
  readonly peakRssBytes: Spread | undefined;
}

/** Medians of a lever's sink runs (the run's clientMs includes `cat`; its own figure is kept apart). */
export function leverFigures(name: string, runs: readonly Run[]): LeverFigures {
  const cpu = spreadOf(runs.map((r) => r.uploaderMs ?? r.cpu?.clientMs));
  const bytes = runs.find((r) => r.bytes)?.bytes;
  return { name, ms: spreadOf(runs.map((r) => r.ms)), cpuMs: cpu, cpuPerDumpGiB: cpu && bytes ? cpu.median / 1000 / (bytes / GiB) : undefined, peakRssBytes: spreadOf(runs.map((r) => r.peakRssBytes)) };
}

export interface ModeSummary {
  readonly ms: Spread;
  readonly peakRssBytes?: Spread | undefined;
  readonly idleRssBytes?: Spread | undefined;
  readonly processMs?: Spread | undefined;
  readonly bytes?: number | undefined;
  /** Median CPU time of each part, ms. */
  readonly cpu?: CpuBreakdown | undefined;
  /** Medians of pg_dump's life, time on CPU and time waiting for a CPU, ms. */
  readonly pgDumpSched?: SchedTimes | undefined;
}

export interface CompressionRow {
  readonly compression: string;
  readonly floorMs: Spread | undefined;
  readonly engineMs: Spread | undefined;
  readonly bytes: number | undefined;
}

export interface Target {
  readonly name: string;
  readonly target: string;
  readonly value: string;
  readonly met: boolean | undefined;
}

export interface Headline {
  readonly engineOverFloor: number | undefined;
  /** engine ÷ max(floor, sink): the target where the endpoint is the bottleneck. */
  readonly engineOverFloorOrSink: number | undefined;
  readonly engineOverAwsCli: number | undefined;
  readonly peakRssBytes: number | undefined;
  /** Peak RSS at this size ÷ at the other size (4 GB ÷ 1 GB), when both are known. */
  readonly rssLargeOverSmall: number | undefined;
  readonly rssComparedWith: string | undefined;
  /** Database bytes (pg_database_size) backed up per second by the engine. */
  readonly databaseBytesPerSecond: number | undefined;
  readonly dumpBytesPerSecond: number | undefined;
  /** The largest database one 15-minute invocation can back up at the measured throughput. */
  readonly max15MinDatabaseBytes: number | undefined;
  readonly awsCliOverFloor?: number | undefined;
  /**
   * max(floor on its own CPU, pg_dump + uploader CPU) ÷ floor on its own CPU: the one-CPU wall
   * ratio without the machine's other load (the floor's wait for a CPU removed).
   */
  readonly cpuBoundOverFloor?: { readonly engine: number | undefined; readonly awscli: number | undefined } | undefined;
  /** CPU seconds of the uploader process alone (node, or the AWS CLI) per GiB of dump. */
  readonly uploaderCpuPerDumpGiB?: { readonly engine: number | undefined; readonly awscli: number | undefined } | undefined;
  /** Uploader CPU ÷ pg_dump's CPU in the same runs. */
  readonly uploaderOverPgDump?: { readonly engine: number | undefined; readonly awscli: number | undefined } | undefined;
  readonly awsCliPeakRssBytes?: number | undefined;
  /** The largest database per 15-minute invocation at Lambda memory sizes (see `capacity`). */
  readonly capacity?: readonly Capacity[] | undefined;
}

export interface Capacity {
  readonly memoryMb: number;
  readonly vcpu: number;
  /** Seconds per GiB of database: max(floor, (pg_dump + uploader CPU) ÷ vCPU[, engine wall at ≤ 1 vCPU]). */
  readonly secondsPerDatabaseGiB: number;
  readonly maxDatabaseBytes: number;
}

export interface Results {
  readonly date: string;
  readonly size: string;
  readonly targetBytes: number;
  readonly databaseBytes: number;
  readonly compression: string;
  readonly partSizeBytes: number;
  readonly queueSize: number;
  readonly repeat: number;
  readonly endpoint: 'null' | 'moto' | 'external';
  /** `lambda`: pg_dump and the uploader pinned to one CPU, the rest on the other; absent in older files. */
  readonly layout?: 'lambda' | 'shared' | undefined;
  readonly protocol?: 'https' | 'http' | undefined;
  readonly command: string;
  readonly machine: { readonly cores: number; readonly cpuModel: string; readonly memoryBytes: number; readonly os: string };
  readonly versions: Readonly<Record<string, string>>;
  readonly summary: Partial<Record<Mode, ModeSummary>>;
  readonly compressionTable: readonly CompressionRow[];
  readonly restore: RestoreFigures | undefined;
  /** The uploader's levers, each the sink alone from the same dump (absent in older files). */
  readonly levers?: readonly LeverFigures[] | undefined;
  readonly headline: Headline;
  readonly targets: readonly Target[];
  readonly notes: readonly string[];
  readonly runs: readonly Run[];
}

function spreadOf(values: readonly (number | undefined)[]): Spread | undefined {
  const v = values.filter((x): x is number => x !== undefined);
  return v.length ? spread(v) : undefined;
}

export function summarize(runs: readonly Run[], compression: string): Partial<Record<Mode, ModeSummary>> {
  const out: Partial<Record<Mode, ModeSummary>> = {};
  for (const mode of MODES) {
    const rs = runs.filter((r) => r.mode === mode && r.compression === compression);
    if (!rs.length) continue;
    out[mode] = {
      ms: spread(rs.map((r) => r.ms)),
      peakRssBytes: spreadOf(rs.map((r) => r.peakRssBytes)),
      idleRssBytes: spreadOf(rs.map((r) => r.idleRssBytes)),
      processMs: spreadOf(rs.map((r) => r.processMs)),
      bytes: rs.find((r) => r.bytes !== undefined)?.bytes,
      cpu: Object.fromEntries(CPU_PARTS.map((p) => [p, spreadOf(rs.map((r) => r.cpu?.[p]))?.median])) as CpuBreakdown,
      pgDumpSched: rs.some((r) => r.pgDumpSched)
        ? {
            startMs: spreadOf(rs.map((r) => r.pgDumpSched?.startMs))!.median,
            endMs: spreadOf(rs.map((r) => r.pgDumpSched?.endMs))!.median,
            lifeMs: spreadOf(rs.map((r) => r.pgDumpSched?.lifeMs))!.median,
            runMs: spreadOf(rs.map((r) => r.pgDumpSched?.runMs))!.median,
            waitMs: spreadOf(rs.map((r) => r.pgDumpSched?.waitMs))!.median,
          }
        : undefined,
    };
  }
  return out;
}

export function compressionTable(runs: readonly Run[], compressions: readonly string[]): CompressionRow[] {
  return compressions.map((c) => {
    const of = (mode: Mode) => spreadOf(runs.filter((r) => r.mode === mode && r.compression === c).map((r) => r.ms));
    return { compression: c, floorMs: of('floor'), engineMs: of('engine'), bytes: runs.find((r) => r.compression === c && r.bytes !== undefined)?.bytes };
  });
}

const ratio = (a: number | undefined, b: number | undefined) => (a !== undefined && b !== undefined && b > 0 ? a / b : undefined);

export function headline(
  summary: Partial<Record<Mode, ModeSummary>>,
  databaseBytes: number,
  other: { size: string; targetBytes: number; peakRssBytes: number | undefined } | undefined,
  targetBytes: number,
): Headline {
  const engine = summary.engine?.ms.median;
  const floor = summary.floor?.ms.median;
  const sink = summary.sink?.ms.median;
  // Per-run peaks, summarised by their median like every other figure (the max is in the modes table).
  const peak = summary.engine?.peakRssBytes?.median;
  const dbps = engine ? databaseBytes / (engine / 1000) : undefined;
  let rssLargeOverSmall: number | undefined;
  if (other?.peakRssBytes !== undefined && peak !== undefined) {
    rssLargeOverSmall = targetBytes >= other.targetBytes ? peak / other.peakRssBytes : other.peakRssBytes / peak;
  }
  const e = summary.engine;
  const a = summary.awscli;
  const perDumpGiB = (m: ModeSummary | undefined) => (m?.cpu?.clientMs !== undefined && m.bytes ? m.cpu.clientMs / 1000 / (m.bytes / GiB) : undefined);
  const dbGiB = databaseBytes / GiB;
  // The floor without the time pg_dump spent waiting for a CPU that other processes of the
  // machine held (its life minus that wait): what pg_dump alone takes when it has its CPU.
  const fs = summary.floor?.pgDumpSched;
  const floorOwnMs = fs ? Math.max(0, fs.lifeMs - fs.waitMs) : floor;
  /** On one CPU of its own, a mode needs at least the floor and at least its processes' CPU. */
  const cpuBound = (m: ModeSummary | undefined) =>
    m?.cpu?.clientMs !== undefined && m.cpu.pgDumpMs !== undefined && floorOwnMs ? Math.max(floorOwnMs, m.cpu.clientMs + m.cpu.pgDumpMs) / floorOwnMs : undefined;
  let capacity: Capacity[] | undefined;
  if (floorOwnMs !== undefined && e?.cpu?.clientMs !== undefined && e.cpu.pgDumpMs !== undefined) {
    const floorS = floorOwnMs / 1000 / dbGiB;
    const cpuS = (e.cpu.clientMs + e.cpu.pgDumpMs) / 1000 / dbGiB;
    capacity = LAMBDA_MEMORIES_MB.map((memoryMb) => {
      const vcpu = memoryMb / MB_PER_VCPU;
      // pg_dump is one thread: never faster than alone; the function's CPU is shared by both processes.
      const secondsPerDatabaseGiB = Math.max(floorS, cpuS / vcpu);
      return { memoryMb, vcpu, secondsPerDatabaseGiB, maxDatabaseBytes: ((LAMBDA_LIMIT_S - TIME_MARGIN_S) / secondsPerDatabaseGiB) * GiB };
    });
  }
  return {
    cpuBoundOverFloor: { engine: cpuBound(e), awscli: cpuBound(a) },
    awsCliOverFloor: ratio(a?.ms.median, floor),
    uploaderCpuPerDumpGiB: { engine: perDumpGiB(e), awscli: perDumpGiB(a) },
    uploaderOverPgDump: { engine: ratio(e?.cpu?.clientMs, e?.cpu?.pgDumpMs), awscli: ratio(a?.cpu?.clientMs, a?.cpu?.pgDumpMs) },
    awsCliPeakRssBytes: a?.peakRssBytes?.median,
    capacity,
    engineOverFloor: ratio(engine, floor),
    engineOverFloorOrSink: ratio(engine, floor === undefined ? undefined : Math.max(floor, sink ?? 0)),
    engineOverAwsCli: ratio(engine, summary.awscli?.ms.median),
    peakRssBytes: peak,
    rssLargeOverSmall,
    rssComparedWith: rssLargeOverSmall === undefined ? undefined : other?.size,
    databaseBytesPerSecond: dbps,
    dumpBytesPerSecond: engine && summary.engine?.bytes ? summary.engine.bytes / (engine / 1000) : undefined,
    max15MinDatabaseBytes: dbps === undefined ? undefined : dbps * (LAMBDA_LIMIT_S - TIME_MARGIN_S),
  };
}

const MB = 1024 * 1024;
const fmtMB = (b: number | undefined) => (b === undefined ? '—' : `${(b / MB).toFixed(b < 10 * MB ? 1 : 0)} MiB`);
const fmtGB = (b: number | undefined) => (b === undefined ? '—' : b < 1024 ** 3 ? fmtMB(b) : `${(b / 1024 ** 3).toFixed(b < 10 * 1024 ** 3 ? 2 : 1)} GiB`);
const fmtS = (ms: number | undefined) => (ms === undefined || Number.isNaN(ms) ? '—' : `${(ms / 1000).toFixed(2)} s`);
const fmtX = (r: number | undefined) => (r === undefined ? '—' : `${r.toFixed(2)}×`);
const fmtSpread = (s: Spread | undefined) => (s ? `${fmtS(s.median)} (${fmtS(s.min)}–${fmtS(s.max)}, n=${s.n})` : '—');

export function targets(h: Headline): Target[] {
  const le = (v: number | undefined, max: number) => (v === undefined ? undefined : v <= max);
  const up = h.uploaderOverPgDump?.engine;
  return [
    { name: 'uploader CPU ÷ pg_dump CPU', target: '≤ 0.25', value: fmtX(up), met: le(up, 0.25) },
    { name: 'engine wall ÷ floor (same pinning)', target: '≤ 1.15', value: fmtX(h.engineOverFloor), met: le(h.engineOverFloor, 1.15) },
    { name: 'engine one-CPU estimate ÷ floor (machine load removed)', target: '≤ 1.15', value: fmtX(h.cpuBoundOverFloor?.engine), met: le(h.cpuBoundOverFloor?.engine, 1.15) },
    { name: 'engine ÷ `pg_dump \\| aws s3 cp -`', target: '< 1.00', value: fmtX(h.engineOverAwsCli), met: h.engineOverAwsCli === undefined ? undefined : h.engineOverAwsCli < 1 },
    { name: 'engine peak RSS', target: '≤ 150 MiB', value: fmtMB(h.peakRssBytes), met: le(h.peakRssBytes, 150 * MB) },
    { name: `peak RSS large ÷ small${h.rssComparedWith ? ` (vs ${h.rssComparedWith})` : ''}`, target: '≤ 1.10', value: fmtX(h.rssLargeOverSmall), met: le(h.rssLargeOverSmall, 1.1) },
  ];
}

const MODE_LABEL: Record<Mode, string> = {
  floor: 'floor: `pg_dump -Fc --no-sync > /dev/null`',
  engine: 'engine: Lambda handler → S3',
  awscli: '`pg_dump -Fc \\| aws s3 cp - s3://…`',
  sink: 'sink alone: engine uploader from a file',
  'engine-http': 'engine over plain HTTP (same endpoint)',
};

export function renderMarkdown(r: Results): string {
  const h = r.headline;
  const lines: string[] = [];
  const mark = (m: boolean | undefined) => (m === undefined ? 'not measured' : m ? 'met' : '**missed**');
  lines.push(`# pg-s3-backup bench — ${r.size} database, ${r.date}`, '');
  lines.push(`Command: \`${r.command}\``, '');
  const endpointText = r.endpoint === 'moto' ? 'local moto server' : r.endpoint === 'null' ? `null endpoint (bench/null-s3.ts) over ${(r.protocol ?? 'https').toUpperCase()}` : 'AWS_ENDPOINT_URL';
  const layoutText = r.layout === 'lambda' ? ' Lambda layout: pg_dump and the uploader pinned to one CPU, PostgreSQL and the endpoint to the other.' : '';
  lines.push(
    `Database ${fmtGB(r.databaseBytes)} (pg_database_size; target ${r.size}), compression \`${r.compression}\`, part size ${fmtMB(r.partSizeBytes)}, ` +
      `queue ${r.queueSize}, ${r.repeat} repeat(s) per figure, runs alternated, medians (min–max). S3 endpoint: ${endpointText}.${layoutText}`,
    '',
  );
  lines.push('## Headline', '');
  lines.push('| figure | value |', '|---|---|');
  lines.push(`| engine ÷ floor | ${fmtX(h.engineOverFloor)} |`);
  lines.push(`| engine ÷ max(floor, sink alone) | ${fmtX(h.engineOverFloorOrSink)} |`);
  lines.push(`| engine ÷ \`pg_dump \\| aws s3 cp -\` | ${fmtX(h.engineOverAwsCli)} |`);
  lines.push(`| engine peak RSS | ${fmtMB(h.peakRssBytes)} |`);
  lines.push(`| peak RSS ${r.size} ÷ ${h.rssComparedWith ?? 'other size'} | ${fmtX(h.rssLargeOverSmall)} |`);
  lines.push(`| throughput (database bytes / engine time) | ${fmtMB(h.databaseBytesPerSecond)}/s (dump ${fmtMB(h.dumpBytesPerSecond)}/s) |`);
  lines.push(`| largest database in one 15-minute invocation (${LAMBDA_LIMIT_S - TIME_MARGIN_S} s usable) at this throughput | ${fmtGB(h.max15MinDatabaseBytes)} |`);
  lines.push('');
  lines.push('## Targets', '', '| target | goal | measured | |', '|---|---|---|---|');
  for (const t of r.targets) lines.push(`| ${t.name} | ${t.target} | ${t.value} | ${mark(t.met)} |`);
  lines.push('');
  const e = r.summary.engine;
  const a = r.summary.awscli;
  if (e || a) {
    lines.push(`## ${r.layout === 'lambda' ? 'Lambda-shaped: ' : ''}the uploader's cost (per process, from /proc and getrusage)`, '');
    lines.push('| | engine (node) | `aws s3 cp -` |', '|---|---|---|');
    const cell = (f: (m: ModeSummary) => string, m: ModeSummary | undefined) => (m ? f(m) : '—');
    const fmtCpu = (ms: number | undefined) => (ms === undefined ? '—' : `${(ms / 1000).toFixed(2)} CPU-s`);
    lines.push(`| wall ÷ floor (as measured, machine load included) | ${fmtX(h.engineOverFloor)} | ${fmtX(h.awsCliOverFloor)} |`);
    lines.push(`| one-CPU estimate ÷ floor: max(floor without its CPU wait, pg_dump + uploader CPU) ÷ that floor | ${fmtX(h.cpuBoundOverFloor?.engine)} | ${fmtX(h.cpuBoundOverFloor?.awscli)} |`);
    lines.push(`| wall | ${cell((m) => fmtSpread(m.ms), e)} | ${cell((m) => fmtSpread(m.ms), a)} |`);
    lines.push(`| pg_dump CPU | ${cell((m) => fmtCpu(m.cpu?.pgDumpMs), e)} | ${cell((m) => fmtCpu(m.cpu?.pgDumpMs), a)} |`);
    lines.push(`| uploader CPU | ${cell((m) => fmtCpu(m.cpu?.clientMs), e)} | ${cell((m) => fmtCpu(m.cpu?.clientMs), a)} |`);
    const perGiB = (v: number | undefined) => (v === undefined ? '—' : `${v.toFixed(2)} CPU-s`);
    lines.push(`| uploader CPU per GiB of dump | ${perGiB(h.uploaderCpuPerDumpGiB?.engine)} | ${perGiB(h.uploaderCpuPerDumpGiB?.awscli)} |`);
    lines.push(`| uploader CPU ÷ pg_dump CPU | ${fmtX(h.uploaderOverPgDump?.engine)} | ${fmtX(h.uploaderOverPgDump?.awscli)} |`);
    lines.push(`| uploader peak RSS | ${fmtMB(h.peakRssBytes)} | ${fmtMB(h.awsCliPeakRssBytes)} |`);
    lines.push(`| dump bytes (as the endpoint received them) | ${cell((m) => fmtMB(m.bytes), e)} | ${cell((m) => fmtMB(m.bytes), a)} |`);
    lines.push('');
  }
  if (h.capacity?.length) {
    lines.push('## The largest database per 15-minute invocation', '');
    lines.push(`From this run's figures per GiB of database: seconds = max(floor without its wait for a CPU, (pg_dump + uploader CPU) ÷ vCPU); ${LAMBDA_LIMIT_S - TIME_MARGIN_S} s usable (900 s − TIME_MARGIN_SECONDS). Lambda gives 1 vCPU per ${MB_PER_VCPU} MB. The database server's read speed is assumed to be no slower than here.`, '');
    lines.push('| memory | vCPU | s per GiB of database | largest database |', '|---|---|---|---|');
    for (const c of h.capacity) lines.push(`| ${c.memoryMb.toLocaleString('en')} MB | ${c.vcpu.toFixed(2)} | ${c.secondsPerDatabaseGiB.toFixed(2)} s | ${fmtGB(c.maxDatabaseBytes)} |`);
    lines.push('');
  }
  lines.push(`## Modes (\`${r.compression}\`)`, '', '| mode | wall time | peak RSS | dump bytes | process wall (start-up included) |', '|---|---|---|---|---|');
  for (const m of MODES) {
    const s = r.summary[m];
    if (!s) continue;
    const rss = s.peakRssBytes ? `${fmtMB(s.peakRssBytes.median)} (max ${fmtMB(s.peakRssBytes.max)})` : '—';
    lines.push(`| ${MODE_LABEL[m]} | ${fmtSpread(s.ms)} | ${rss} | ${fmtMB(s.bytes)} | ${s.processMs ? fmtS(s.processMs.median) : '—'} |`);
  }
  lines.push('');
  lines.push('', '### Where the CPU goes (medians, CPU seconds)', '', `| mode | pg_dump | PostgreSQL server | node / aws | S3 endpoint (${r.endpoint}) | total | total ÷ wall (cores busy) |`, '|---|---|---|---|---|---|---|');
  for (const m of MODES) {
    const c = r.summary[m]?.cpu;
    if (!c) continue;
    const total = CPU_PARTS.reduce((sum, p) => sum + (c[p] ?? 0), 0);
    lines.push(`| ${m} | ${fmtS(c.pgDumpMs)} | ${fmtS(c.serverMs)} | ${fmtS(c.clientMs)} | ${fmtS(c.endpointMs)} | ${fmtS(total)} | ${(total / r.summary[m]!.ms.median).toFixed(2)} |`);
  }
  lines.push('');
  lines.push(`The machine has ${r.machine.cores} cores: when the total ÷ wall approaches ${r.machine.cores}, the run is CPU-bound on this machine, whatever the pipeline does.`);
  lines.push('');
  const sched = MODES.filter((m) => r.summary[m]?.pgDumpSched);
  if (sched.length) {
    lines.push('### How pg_dump spends its life (medians, sampled from /proc/<pid>/schedstat)', '');
    lines.push('| mode | before pg_dump | pg_dump alive | on a CPU | runnable, waiting for a CPU | blocked (server rows, full pipe) | after pg_dump (upload tail, manifest, prune) |', '|---|---|---|---|---|---|---|');
    for (const m of sched) {
      const s = r.summary[m]!;
      const p = s.pgDumpSched!;
      lines.push(`| ${m} | ${fmtS(p.startMs)} | ${fmtS(p.lifeMs)} | ${fmtS(p.runMs)} | ${fmtS(p.waitMs)} | ${fmtS(Math.max(0, p.lifeMs - p.runMs - p.waitMs))} | ${fmtS(Math.max(0, s.ms.median - p.endMs))} |`);
    }
    lines.push('', 'Waiting for a CPU is contention (other processes on the same cores); blocked is pg_dump stopped by its input or its output (backpressure from the upload). Before pg_dump: credentials, `pg_dump --version`, the server version check and the key reservation; after: the parts still in flight, CompleteMultipartUpload, the manifest and the retention pass.', '');
  }
  lines.push('Peak RSS is the measured program\'s own: node for engine and sink (ru_maxrss; pg_dump is a separate process of ≈ 15 MiB), pg_dump for the floor, the AWS CLI for the pipe (GNU time).');
  if (r.summary.engine?.idleRssBytes) lines.push(`The engine process holds ${fmtMB(r.summary.engine.idleRssBytes.median)} before the backup starts (node, SDK and code loaded).`);
  lines.push('');
  if (r.compressionTable.length) {
    lines.push('## Compression', '', '| compression | floor | engine | engine ÷ floor | dump size | size ÷ database |', '|---|---|---|---|---|---|');
    for (const c of r.compressionTable) {
      const ratioText = c.bytes !== undefined ? `${((c.bytes / r.databaseBytes) * 100).toFixed(0)} %` : '—';
      lines.push(`| \`${c.compression}\` | ${fmtSpread(c.floorMs)} | ${fmtSpread(c.engineMs)} | ${fmtX(ratio(c.engineMs?.median, c.floorMs?.median))} | ${fmtMB(c.bytes)} | ${ratioText} |`);
    }
    lines.push('');
  }
  if (r.levers?.length) {
    lines.push('## Levers (the uploader alone, from the same dump file)', '');
    lines.push('| lever | wall | uploader CPU | CPU-s per GiB of dump | peak RSS |', '|---|---|---|---|---|');
    for (const l of r.levers) lines.push(`| ${l.name} | ${fmtSpread(l.ms)} | ${fmtS(l.cpuMs?.median)} | ${l.cpuPerDumpGiB === undefined ? '—' : l.cpuPerDumpGiB.toFixed(2)} | ${fmtMB(l.peakRssBytes?.median)} |`);
    lines.push('');
  }
  if (r.restore) {
    const x = r.restore;
    lines.push('## Restore', '', `Dump of ${fmtMB(x.dumpBytes)} (\`${r.compression}\`), restored into an empty database on the same server with the layer's pg_restore.`, '');
    lines.push('| restore | wall time |', '|---|---|');
    lines.push(`| streaming: S3 GetObject → \`pg_restore\` stdin (single job) | ${fmtSpread(x.streamingMs)} |`);
    lines.push(`| download: S3 GetObject → local file | ${fmtSpread(x.downloadMs)} |`);
    lines.push(`| \`pg_restore --jobs 2\` from the file | ${fmtSpread(x.fileJobs2Ms)} |`);
    lines.push(`| download + \`--jobs 2\` | ${fmtS(x.downloadMs.median + x.fileJobs2Ms.median)} |`);
    if (x.offsetlessPassesJobs2Ms) lines.push(`| streamed dump (no data offsets), the engine's three passes with \`--jobs 2\` | ${fmtSpread(x.offsetlessPassesJobs2Ms)} |`);
    lines.push('');
  }
  if (r.notes.length) {
    lines.push('## Notes', '');
    for (const n of r.notes) lines.push(`- ${n}`);
    lines.push('');
  }
  lines.push('## Machine and versions', '');
  lines.push(`- ${r.machine.cores} cores (${r.machine.cpuModel}), ${fmtGB(r.machine.memoryBytes)} memory, ${r.machine.os}`);
  for (const [k, v] of Object.entries(r.versions)) lines.push(`- ${k}: ${v}`);
  lines.push('', `Every run is in the JSON file beside this one.`, '');
  return lines.join('\n');
}
