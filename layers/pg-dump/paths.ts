/**
 * Repository paths of the pg_dump layer, beside the layer itself: the CLI (off Lambda), the CDK
 * app, the demo, the benchmark and the tests all find the built layer here, so none of them has
 * to reach into another front door's folder for it.
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository's root (this file is layers/pg-dump/paths.ts). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** The one architecture type: Lambda's names (`arm64`, `x86_64`), used by the layers, the CDK app and the tests. */
export const ARCHITECTURES = ['arm64', 'x86_64'] as const;
export type Architecture = (typeof ARCHITECTURES)[number];

export const LAYER_DIR = join(REPO_ROOT, 'layers', 'pg-dump');
export const BUILD_SCRIPT = join(LAYER_DIR, 'build.sh');

/** The layer architecture matching this machine. */
export function hostArchitecture(arch: string = process.arch): Architecture {
  return arch === 'arm64' ? 'arm64' : 'x86_64';
}

/** Where build.sh puts the layer for `arch` (the tree Lambda mounts at /opt). */
export function layerRoot(arch: Architecture = 'x86_64'): string {
  return join(LAYER_DIR, 'dist', arch);
}
