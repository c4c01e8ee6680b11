/**
 * The S3 endpoint of a bench: `AWS_ENDPOINT_URL` when set (any S3 API, credentials from the
 * environment), else a local moto server that the bench owns. Moto keeps every object in memory,
 * so the bench deletes each upload after its run and restarts moto when its RSS still grows.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { freePort } from '../test/support/postgres.ts';

export interface Endpoint {
  /** URL given to the SDK and the AWS CLI. */
  url(): string;
  readonly kind: 'moto' | 'external';
  /** Resident set of the moto process (undefined for an external endpoint). */
  rssBytes(): number | undefined;
  /** Process id of moto (undefined for an external endpoint), for its CPU time. */
  pid(): number | undefined;
  /** Restarts moto (a fresh, empty server on a new port); a no-op for an external endpoint. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export async function startEndpoint(): Promise<Endpoint> {
  const external = process.env.AWS_ENDPOINT_URL;
  if (external) {
    return { kind: 'external', url: () => external, rssBytes: () => undefined, pid: () => undefined, restart: async () => {}, stop: async () => {} };
  }
  let moto = await startMoto();
  return {
    kind: 'moto',
    url: () => moto.url,
    rssBytes: () => vmRss(moto.child.pid),
    pid: () => moto.child.pid,
    async restart() {
      await moto.stop();
      moto = await startMoto();
    },
    stop: () => moto.stop(),
  };
}

interface Moto {
  readonly url: string;
  readonly child: ChildProcess;
  stop(): Promise<void>;
}

async function startMoto(): Promise<Moto> {
  const port = await freePort();
  const child = spawn('python3', ['-m', 'moto.server', '-H', '127.0.0.1', '-p', String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await gone;
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) {
      throw new Error(`moto server exited with code ${child.exitCode}:\n${stderr}\nInstall it with \`apt-get install python3-moto\` or \`pip install "moto[server]"\`, or set AWS_ENDPOINT_URL.`);
    }
    try {
      if ((await fetch(`${url}/moto-api/reset`, { method: 'POST' })).ok) return { url, child, stop };
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`moto server did not answer on ${url} within 30 s:\n${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** VmRSS of a process from /proc, bytes. */
export function vmRss(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}
