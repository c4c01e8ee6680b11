/**
 * Timing processes and summarising repeated figures. Pure helpers (sizes, medians) and a spawner
 * that measures wall time and, where GNU time is installed, the peak RSS of the program.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const UNITS: Record<string, number> = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 };

/** `1GB`, `4GB`, `20MB`, `512MB` → bytes (binary units: 1GB = 1 GiB). */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?B)\s*$/i.exec(text);
  if (!m) throw new Error(`not a size: ${JSON.stringify(text)} (expected e.g. 1GB, 4GB, 20MB)`);
  return Math.round(Number(m[1]) * UNITS[m[2]!.toUpperCase()]!);
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export interface Spread {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly n: number;
}

export function spread(values: readonly number[]): Spread {
  return { median: median(values), min: Math.min(...values), max: Math.max(...values), n: values.length };
}

const GNU_TIME = '/usr/bin/time';
export const hasGnuTime = existsSync(GNU_TIME);

export interface TimedProcess {
  readonly child: ChildProcess;
  /** Resolves with the wall time and, with GNU time, the program's peak RSS; rejects on a non-zero exit. */
  readonly done: Promise<TimedResult>;
}

export interface TimedResult {
  readonly ms: number;
  readonly peakRssBytes: number | undefined;
  /** User + system CPU time of the program (GNU time), ms. */
  readonly cpuMs: number | undefined;
}

let seq = 0;

/**
 * Spawns `file args` (no shell) and times it from spawn to exit. With GNU time the program runs
 * under `/usr/bin/time -f '%M %U %S' -o <tmp>`, which adds one fork and reports ru_maxrss and
 * the CPU time.
 */
export function spawnTimed(file: string, args: readonly string[], options: { env: NodeJS.ProcessEnv; stdio: StdioOptions; label: string }): TimedProcess {
  const rssFile = join(tmpdir(), `pgs3b-bench-time-${process.pid}-${seq++}`);
  const [cmd, argv] = hasGnuTime ? [GNU_TIME, ['-f', '%M %U %S', '-o', rssFile, file, ...args]] : [file, [...args]];
  const t0 = performance.now();
  const child = spawn(cmd, argv, { env: options.env, stdio: options.stdio });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  const done = new Promise<TimedResult>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => {
      const ms = performance.now() - t0;
      let peakRssBytes: number | undefined;
      let cpuMs: number | undefined;
      if (hasGnuTime && existsSync(rssFile)) {
        // GNU time prints "Command exited with non-zero status N" before the figures on failure.
        const [kib, user, sys] = (readFileSync(rssFile, 'utf8').trim().split('\n').pop() ?? '').split(' ').map(Number);
        if (Number.isFinite(kib)) peakRssBytes = kib! * 1024;
        if (Number.isFinite(user) && Number.isFinite(sys)) cpuMs = (user! + sys!) * 1000;
        rmSync(rssFile, { force: true });
      }
      if (code === 0) resolve({ ms, peakRssBytes, cpuMs });
      else reject(new Error(`${options.label} failed (exit ${code ?? signal}):\n${stderr.split('\n').slice(-20).join('\n')}`));
    });
  });
  done.catch(() => {});
  return { child, done };
}

/** Runs a program to completion and returns its stdout (for versions and the engine's JSON line). */
export async function capture(file: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-4000)));
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${file} exited ${code}:\n${err}`))));
  });
}

/** Linux reports process times in clock ticks of 1/100 s (CLK_TCK is 100 on every Linux ABI Node runs on). */
const TICK_MS = 10;

export interface CpuTimes {
  /** utime + stime of the process itself, ms. */
  readonly ownMs: number;
  /** cutime + cstime: its children that have exited and been waited for, ms. */
  readonly childrenMs: number;
}

/** CPU times of a process from /proc/<pid>/stat; undefined when it is gone or not on Linux. */
export function processCpu(pid: number | 'self' | undefined): CpuTimes | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces), from field 3 (state) on.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
    return { ownMs: (f[11]! + f[12]!) * TICK_MS, childrenMs: (f[13]! + f[14]!) * TICK_MS };
  } catch {
    return undefined;
  }
}

/** CPU time (own + children) a process spent between two readings, ms. */
export function cpuDelta(before: CpuTimes | undefined, after: CpuTimes | undefined): number | undefined {
  return before && after ? after.ownMs + after.childrenMs - before.ownMs - before.childrenMs : undefined;
}

/** How a process spent its life: on a CPU, runnable but waiting for one, and blocked (the rest). */
export interface SchedTimes {
  /** From the start of the watch to the first and last sight of the process. */
  readonly startMs: number;
  readonly endMs: number;
  readonly lifeMs: number;
  readonly runMs: number;
  readonly waitMs: number;
}

/**
 * Samples /proc/<pid>/schedstat (ns on CPU, ns waiting on a run queue) of every child of
 * `parentPid` every `intervalMs`, and on stop returns the figures of the child that ran longest
 * (pg_dump, as opposed to short-lived helpers like `pg_dump --version`). Blocked time (waiting for
 * the server's rows, or for room in a full pipe) is life − run − wait.
 */
export function watchBusiestChild(parentPid: number, intervalMs = 20): { stop(): SchedTimes | undefined } {
  const seen = new Map<number, { first: number; last: number; runNs: number; waitNs: number }>();
  const sample = () => {
    let children: number[];
    try {
      children = readFileSync(`/proc/${parentPid}/task/${parentPid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
      return;
    }
    const now = performance.now();
    for (const pid of children) {
      try {
        const [runNs, waitNs] = readFileSync(`/proc/${pid}/schedstat`, 'utf8').trim().split(' ').map(Number);
        const s = seen.get(pid) ?? { first: now, last: now, runNs: 0, waitNs: 0 };
        seen.set(pid, { first: s.first, last: now, runNs: runNs!, waitNs: waitNs! });
      } catch {
        // Exited between the two reads.
      }
    }
  };
  const t0 = performance.now();
  const timer = setInterval(sample, intervalMs);
  sample();
  return {
    stop() {
      clearInterval(timer);
      const best = [...seen.values()].sort((a, b) => b.runNs - a.runNs)[0];
      return best && { startMs: best.first - t0, endMs: best.last - t0, lifeMs: best.last - best.first, runMs: best.runNs / 1e6, waitMs: best.waitNs / 1e6 };
    },
  };
}

export const hasTaskset = existsSync('/usr/bin/taskset') || existsSync('/bin/taskset');

/**
 * Pins a running process, its threads and its current children (and theirs) to `cpu`
 * (`taskset -a -p -c`). Processes forked later inherit it (PostgreSQL's backends from the
 * postmaster).
 */
export async function pinProcessTree(pid: number, cpu: string): Promise<void> {
  const pids: number[] = [];
  const walk = (p: number) => {
    pids.push(p);
    let children: number[] = [];
    try {
      for (const task of readdirSync(`/proc/${p}/task`)) {
        children = children.concat(readFileSync(`/proc/${p}/task/${task}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number));
      }
    } catch {
      // Gone meanwhile.
    }
    for (const c of children) walk(c);
  };
  walk(pid);
  for (const p of pids) {
    // A child may exit between the listing and taskset: that is fine.
    await capture('taskset', ['-a', '-p', '-c', cpu, String(p)]).catch(() => undefined);
  }
}
