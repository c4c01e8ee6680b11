/**
 * Repository paths of the pg_dump layer, beside the layer itself: the CLI (off Lambda), the CDK
 * app, the demo, the benchmark and the tests all find the built layer here, so none of them has
 * to reach into another front door's folder for it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The repository's root: the nearest folder above this module whose package.json is this
 * project's. This file is layers/pg-dump/paths.ts, but in the CLI bundle it is part of a chunk
 * under dist/cli/, so a fixed `../..` would miss; where no such folder exists (the Fargate image,
 * which holds the bundle alone) the fixed path stands, and nothing is found under it.
 */
export const REPO_ROOT = findRepoRoot(dirname(fileURLToPath(import.meta.url)));

function findRepoRoot(from: string): string {
  for (let dir = from; dirname(dir) !== dir; dir = dirname(dir)) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: unknown }).name === 'pg-s3-backup') return dir;
  }
  return resolve(from, '../..');
}

/** The one architecture type: Lambda's names (`arm64`, `x86_64`), used by the layers, the CDK app and the tests. */
export const ARCHITECTURES = ['arm64', 'x86_64'] as const;
export type Architecture = (typeof ARCHITECTURES)[number];

export const LAYER_DIR = join(REPO_ROOT, 'layers', 'pg-dump');
export const BUILD_SCRIPT = join(LAYER_DIR, 'build.sh');
/** The script and the shared building blocks it sources; a change to either rebuilds the layer. */
export const BUILD_SOURCES = [BUILD_SCRIPT, join(REPO_ROOT, 'layers', 'debian-closure.sh')] as const;

/**
 * The download cache both layers' builds share (layers/debian-closure.sh): outside the checkout, so
 * that `git clean` of the build folders and a fresh clone reuse what was downloaded.
 */
export function debianCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.PG_LAYER_CACHE) return env.PG_LAYER_CACHE;
  return join(env.XDG_CACHE_HOME || join(env.HOME ?? '/nonexistent', '.cache'), 'pg-s3-backup');
}

/** Where the cache keeps a package: name, version (epoch colon escaped as apt does) and the signed index's sha256. */
export function cachedDebPath(p: { name: string; version: string; sha256: string }, env: NodeJS.ProcessEnv = process.env): string {
  return join(debianCacheDir(env), 'debs', `${p.name}_${p.version.replaceAll(':', '%3a')}_${p.sha256}.deb`);
}

/** The layer architecture matching this machine. */
export function hostArchitecture(arch: string = process.arch): Architecture {
  return arch === 'arm64' ? 'arm64' : 'x86_64';
}

/** Where build.sh puts the layer for `arch` (the tree Lambda mounts at /opt). */
export function layerRoot(arch: Architecture = 'x86_64'): string {
  return join(LAYER_DIR, 'dist', arch);
}
