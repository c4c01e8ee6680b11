/**
 * Repository paths of the pg_dump layer, beside the layer itself: the CLI (off Lambda), the CDK
 * app, the demo, the benchmark and the tests all find the built layer here, so none of them has
 * to reach into another front door's folder for it.
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository's root (this file is layers/pg-dump/paths.ts). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export type LayerArch = 'x86_64' | 'arm64';

export const LAYER_DIR = join(REPO_ROOT, 'layers', 'pg-dump');
export const BUILD_SCRIPT = join(LAYER_DIR, 'build.sh');

/** The layer architecture matching this machine. */
export function hostLayerArch(arch: string = process.arch): LayerArch {
  return arch === 'arm64' ? 'arm64' : 'x86_64';
}

/** Where build.sh puts the layer for `arch` (the tree Lambda mounts at /opt). */
export function layerRoot(arch: LayerArch = 'x86_64'): string {
  return join(LAYER_DIR, 'dist', arch);
}
