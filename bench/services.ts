/**
 * The S3 endpoint of a bench:
 * - `null` (default): bench/null-s3.ts in its own node process (pinned to the server CPU in the
 *   Lambda layout), HTTPS with a self-signed certificate (HTTP beside it), bodies counted and
 *   discarded: never the bottleneck;
 * - `moto`: a local moto server that stores everything (the old bench; the bench deletes each
 *   upload after its run and restarts moto when its RSS still grows);
 * - `external`: `AWS_ENDPOINT_URL` (any S3 API, credentials from the environment).
 *
 * And what every bench does around its runs: a scratch folder and servers removed by one clean-up
 * (on SIGINT/SIGTERM too), and its results written as `.json` and `.md`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startMotoServer } from '../scripts/local-services.ts';
import type { NullS3Stats } from './null-s3.ts';

export type EndpointKind = 'null' | 'moto' | 'external';

export interface Endpoint {
  /** URL given to the SDK and the AWS CLI (HTTPS for the null endpoint unless asked otherwise). */
  url(): string;
  readonly kind: EndpointKind;
  /** The null endpoint's plain-HTTP listener. */
  readonly httpUrl?: string | undefined;
  /** PEM file of the self-signed certificate to trust (null endpoint). */
  readonly ca?: string | undefined;
  /** Resident set of the endpoint process (undefined for an external endpoint). */
  rssBytes(): number | undefined;
  /** Process id of the endpoint (undefined for an external endpoint), for its CPU time. */
  pid(): number | undefined;
  /** The null endpoint's counters (bytes received, checksums verified). */
  stats?(): Promise<NullS3Stats & { objects: number; uploadsInProgress: number }>;
  /** Switches the null endpoint's checksum verification. */
  setVerify?(on: boolean): Promise<void>;
  /** Restarts moto (a fresh, empty server on a new port); a no-op otherwise. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export interface NullEndpointOptions {
  /** The bundled bench/null-s3.ts (node runs it without a TypeScript loader). */
  readonly script: string;
  /** `taskset -c <cpu>` the endpoint process (Lambda layout). */
  readonly cpu?: string | undefined;
  readonly keepPrefixes?: readonly string[];
  readonly verify?: boolean;
  readonly protocol?: 'https' | 'http';
}

export async function startEndpoint(kind: EndpointKind, nullOptions?: NullEndpointOptions): Promise<Endpoint> {
  const external = process.env.AWS_ENDPOINT_URL;
  if (kind === 'external' || (kind !== 'null' && external)) {
    if (!external) throw new Error('--endpoint external needs AWS_ENDPOINT_URL');
    return { kind: 'external', url: () => external, rssBytes: () => undefined, pid: () => undefined, restart: async () => {}, stop: async () => {} };
  }
  if (kind === 'null') {
    if (!nullOptions) throw new Error('the null endpoint needs its bundled script');
    return startNullEndpoint(nullOptions);
  }
  let moto = await startMotoServer();
  return {
    kind: 'moto',
    url: () => moto.endpoint,
    rssBytes: () => vmRss(moto.child.pid),
    pid: () => moto.child.pid,
    async restart() {
      await moto.stop();
      moto = await startMotoServer();
    },
    stop: () => moto.stop(),
  };
}

async function startNullEndpoint(o: NullEndpointOptions): Promise<Endpoint> {
  const args = [o.script, ...(o.verify ? ['--verify'] : []), ...(o.keepPrefixes ?? []).flatMap((p) => ['--keep-prefix', p])];
  const [file, argv] = o.cpu !== undefined ? ['taskset', ['-c', o.cpu, process.execPath, ...args]] : [process.execPath, args];
  const child: ChildProcess = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  const ready = await new Promise<{ http: string; https: string; ca: string }>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`the null S3 endpoint did not start within 30 s:\n${stderr}`)), 30_000);
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const nl = out.indexOf('\n');
      if (nl !== -1) {
        clearTimeout(timer);
        try {
          resolve(JSON.parse(out.slice(0, nl)) as { http: string; https: string; ca: string });
        } catch (err) {
          reject(err as Error);
        }
      }
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the null S3 endpoint exited (${code}) before it was ready:\n${stderr}`));
    });
  });
  const admin = async (path: string, method = 'GET') => {
    const res = await fetch(`${ready.http}${path}`, { method });
    if (!res.ok) throw new Error(`null endpoint ${path}: HTTP ${res.status}`);
    return res;
  };
  return {
    kind: 'null',
    url: () => (o.protocol === 'http' ? ready.http : ready.https),
    httpUrl: ready.http,
    ca: ready.ca,
    rssBytes: () => vmRss(child.pid),
    pid: () => child.pid,
    stats: async () => (await (await admin('/__null/stats')).json()) as NullS3Stats & { objects: number; uploadsInProgress: number },
    setVerify: async (on) => void (await admin(`/__null/verify?on=${on ? 1 : 0}`, 'POST')),
    restart: async () => {},
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await gone;
    },
  };
}

/** VmRSS of a process from /proc, bytes. */
function vmRss(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** On SIGINT/SIGTERM, run the bench's clean-up (servers, bucket, work dir) once, then exit 130. */
export function cleanUpOnInterrupt(cleanup: () => Promise<void>): void {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      console.error(`${signal}: cleaning up…`);
      void cleanup().finally(() => process.exit(130));
    });
  }
}

/** A bench's scratch folder and the servers it starts, removed by one clean-up. */
export interface BenchWork {
  readonly dir: string;
  /** Stops `server` at clean-up; returns it (`startPostgres().then(work.own)`: owned as soon as it runs, even if a sibling start fails). */
  own<T extends { stop(): Promise<void> }>(server: T): T;
  /** Stops the servers (each on its own: one failing stop must not leave the others running), then removes the folder. */
  cleanup(): Promise<void>;
}

/** A scratch folder `<tmp>/<prefix>XXXXXX`, cleaned up by `cleanup()` and on SIGINT/SIGTERM. */
export function benchWork(prefix: string): BenchWork {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const servers: { stop(): Promise<void> }[] = [];
  const cleanup = async () => {
    await Promise.all(servers.map((s) => s.stop().catch(() => {})));
    rmSync(dir, { recursive: true, force: true });
  };
  cleanUpOnInterrupt(cleanup);
  return {
    dir,
    own: <T extends { stop(): Promise<void> }>(server: T): T => {
      servers.push(server);
      return server;
    },
    cleanup,
  };
}

/**
 * Writes a bench's results as `<dir>/<name>.json` (every figure and run) and `<name>.md` (the
 * rendering); returns their path without the extension.
 */
export function writeResults(dir: string, name: string, results: unknown, markdown: string): string {
  mkdirSync(dir, { recursive: true });
  const base = join(dir, name);
  writeFileSync(`${base}.json`, `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(`${base}.md`, markdown);
  return base;
}
