/**
 * Timing processes and summarising repeated figures. Pure helpers (sizes, medians) and a spawner
 * that measures wall time and, where GNU time is installed, the peak RSS of the program.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
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
  readonly done: Promise<{ ms: number; peakRssBytes: number | undefined }>;
}

let seq = 0;

/**
 * Spawns `file args` (no shell) and times it from spawn to exit. With GNU time the program runs
 * under `/usr/bin/time -f %M -o <tmp>`, which adds one fork and reports ru_maxrss.
 */
export function spawnTimed(file: string, args: readonly string[], options: { env: NodeJS.ProcessEnv; stdio: StdioOptions; label: string }): TimedProcess {
  const rssFile = join(tmpdir(), `pgs3b-bench-time-${process.pid}-${seq++}`);
  const [cmd, argv] = hasGnuTime ? [GNU_TIME, ['-f', '%M', '-o', rssFile, file, ...args]] : [file, [...args]];
  const t0 = performance.now();
  const child = spawn(cmd, argv, { env: options.env, stdio: options.stdio });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  const done = new Promise<{ ms: number; peakRssBytes: number | undefined }>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => {
      const ms = performance.now() - t0;
      let peakRssBytes: number | undefined;
      if (hasGnuTime && existsSync(rssFile)) {
        // GNU time prints "Command exited with non-zero status N" before the figure on failure.
        const kib = Number(readFileSync(rssFile, 'utf8').trim().split('\n').pop());
        if (Number.isFinite(kib)) peakRssBytes = kib * 1024;
        rmSync(rssFile, { force: true });
      }
      if (code === 0) resolve({ ms, peakRssBytes });
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
