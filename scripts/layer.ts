/**
 * The built pg_dump layer for the demo, the benchmark and the tests. `ensureLayer()` returns `layers/pg-dump/dist/<arch>`, building
 * it first when missing. build.sh holds a lock (flock on layers/pg-dump/cache/.build.lock) and
 * `--if-missing` re-checks under that lock, so concurrent test files and helpers never build at
 * once, and the ones that waited reuse the finished layer. A layer built by an older build.sh
 * (manifest.json's buildScriptSha256) counts as missing.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BUILD_SCRIPT, BUILD_SOURCES, LAYER_DIR, layerRoot, REPO_ROOT, type Architecture } from '../layers/pg-dump/paths.ts';
import { SERVER_BUILD_SCRIPT, SERVER_BUILD_SOURCES, serverLayerRoot, serverLayerZip } from '../layers/pg-server/paths.ts';

const execFileAsync = promisify(execFile);

export { BUILD_SCRIPT, LAYER_DIR, layerRoot, REPO_ROOT, serverLayerRoot, type Architecture };

/** Built, and by the current build.sh and debian-closure.sh (a checkout that pulled a new one rebuilds). */
export function isLayerBuilt(arch: Architecture): boolean {
  const manifest = join(layerRoot(arch), 'manifest.json');
  if (!existsSync(manifest) || !existsSync(join(LAYER_DIR, 'dist', `${arch}.zip`))) return false;
  return builtBy(manifest, BUILD_SOURCES);
}

/** Whether a layer's manifest.json was written by exactly these build sources (build.sh's SCRIPT_SHA). */
function builtBy(manifest: string, sources: readonly string[]): boolean {
  const script = createHash('sha256');
  for (const f of sources) script.update(readFileSync(f));
  return (JSON.parse(readFileSync(manifest, 'utf8')) as { buildScriptSha256?: string }).buildScriptSha256 === script.digest('hex');
}

/** Returns the root of the built layer for `arch`, building it (20 to 45 s) when missing or stale. */
export async function ensureLayer(arch: Architecture = 'x86_64'): Promise<string> {
  if (isLayerBuilt(arch)) return layerRoot(arch);
  try {
    await execFileAsync('bash', [BUILD_SCRIPT, '--if-missing', arch], { cwd: REPO_ROOT, maxBuffer: 64 * 1024 * 1024 });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new Error(
      `Building the pg_dump layer (${arch}) failed: run \`npm run build:layer -- ${arch}\` to see why ` +
        `(it needs apt-get, dpkg-deb, readelf, zip and flock, and access to a Debian mirror).\n${stderr.split('\n').slice(-20).join('\n')}`,
      { cause: err },
    );
  }
  if (!isLayerBuilt(arch)) throw new Error(`layers/pg-dump/build.sh ${arch} succeeded but left no ${layerRoot(arch)}/manifest.json`);
  return layerRoot(arch);
}

/** The pg-server layer (throwaway PostgreSQL of restore drills) built, by the current build.sh and debian-closure.sh. */
export function isServerLayerBuilt(arch: Architecture): boolean {
  const manifest = join(serverLayerRoot(arch), 'manifest.json');
  if (!existsSync(manifest) || !existsSync(serverLayerZip(arch))) return false;
  return builtBy(manifest, SERVER_BUILD_SOURCES);
}

/**
 * Returns the root of the built pg-server layer for `arch` (`…/dist/<arch>/pg-server`, what Lambda
 * sees as /opt/pg-server), building it first when missing or stale: 1.5 to 5 minutes (about 40
 * packages, most of the time reading Debian's index); the same lock and `--if-missing` re-check as
 * the pg_dump layer.
 */
export async function ensureServerLayer(arch: Architecture = 'x86_64', options: { readonly signal?: AbortSignal } = {}): Promise<string> {
  if (isServerLayerBuilt(arch)) return serverLayerRoot(arch);
  try {
    // signal: the demo stops a build it no longer needs (it failed elsewhere) rather than leave it running.
    await execFileAsync('bash', [SERVER_BUILD_SCRIPT, '--if-missing', arch], { cwd: REPO_ROOT, maxBuffer: 64 * 1024 * 1024, ...(options.signal ? { signal: options.signal } : {}) });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new Error(
      `Building the pg-server layer (${arch}) failed: run \`npm run build:layer:server -- ${arch}\` to see why ` +
        `(it needs apt-get, dpkg-deb, readelf, zip and flock, and access to a Debian mirror).\n${stderr.split('\n').slice(-20).join('\n')}`,
      { cause: err },
    );
  }
  if (!isServerLayerBuilt(arch)) throw new Error(`layers/pg-server/build.sh ${arch} succeeded but left no ${serverLayerRoot(arch)}/manifest.json`);
  return serverLayerRoot(arch);
}
