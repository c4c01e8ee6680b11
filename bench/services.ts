/**
 * The S3 endpoint of a bench: `AWS_ENDPOINT_URL` when set (any S3 API, credentials from the
 * environment), else a local moto server that the bench owns. Moto keeps every object in memory,
 * so the bench deletes each upload after its run and restarts moto when its RSS still grows.
 */
import { readFileSync } from 'node:fs';
import { startMotoServer } from '../scripts/local-services.ts';

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
