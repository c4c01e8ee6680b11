/**
 * The Fargate runner's image, defined once: what it holds (image-files.json) and where. The
 * Dockerfile's COPY lines are generated from the list (`node --import tsx infra/container/image.ts`
 * rewrites them; test/infra/container-image.test.ts fails when they differ), the CDK asset stages
 * exactly those files, and the test assembles the same tree to run it read-only.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { IgnoreMode } from 'aws-cdk-lib';
import { z } from 'zod';
import { ARCHITECTURES, REPO_ROOT, type Architecture } from '../../layers/pg-dump/paths.ts';

export const DOCKERFILE = join(REPO_ROOT, 'infra', 'container', 'Dockerfile');
/** The Dockerfile, relative to the asset's context (the repository root). */
export const DOCKERFILE_IN_CONTEXT = 'infra/container/Dockerfile';
export const IMAGE_FILES_JSON = join(REPO_ROOT, 'infra', 'container', 'image-files.json');

/** The CLI in the image: the entrypoint runs it with the image's node. */
export const IMAGE_CLI = '/app/pg-s3-backup.mjs';
/** The RDS CA bundle in the image (RDS_CA_BUNDLE: TLS defaults to verify-full against it). */
export const IMAGE_RDS_CA_BUNDLE = '/app/rds-ca-bundle.pem';
/** The task's writable scratch space: a task volume on the ephemeral storage, the root stays read-only. */
export const IMAGE_TMP = '/tmp';
/** The task's user: the base image's `node` uid, without relying on its passwd entry. */
export const IMAGE_USER = '1000:1000';

/** `${LAYER_ARCH}` in a source path: the build argument naming the layer's architecture. */
const LAYER_ARCH = '${LAYER_ARCH}';

const ImageFiles = z.object({
  copy: z.array(z.object({ from: z.string().regex(/^[\w./${}-]+$/), to: z.string().startsWith('/') })).min(1),
});

export interface ImageCopy {
  /** Repository-relative; a trailing `/` copies a folder's content. May hold `${LAYER_ARCH}`. */
  readonly from: string;
  /** Absolute path in the image. */
  readonly to: string;
}

export function imageFiles(): readonly ImageCopy[] {
  return ImageFiles.parse(JSON.parse(readFileSync(IMAGE_FILES_JSON, 'utf8'))).copy;
}

/** A source path for one architecture. */
export function sourceFor(copy: ImageCopy, arch: Architecture): string {
  return copy.from.replaceAll(LAYER_ARCH, arch);
}

const BEGIN = '# BEGIN COPY: generated from image-files.json by infra/container/image.ts; do not edit';
const END = '# END COPY';

/** The Dockerfile's COPY block for the list. */
export function dockerCopyBlock(copies: readonly ImageCopy[] = imageFiles()): string {
  return [BEGIN, ...copies.map((c) => `COPY ${c.from} ${c.to}`), END].join('\n');
}

/** The COPY block the Dockerfile holds now. */
export function dockerfileCopyBlock(text = readFileSync(DOCKERFILE, 'utf8')): string {
  const start = text.indexOf(BEGIN);
  const end = text.indexOf(END);
  if (start < 0 || end < start) throw new Error(`${DOCKERFILE} has no "${BEGIN}" … "${END}" block`);
  return text.slice(start, end + END.length);
}

/** How CDK reads assetExclude: gitignore syntax (IgnoreMode.GIT), in which a folder left out is not walked. */
export const ASSET_IGNORE_MODE = IgnoreMode.GIT;

/**
 * The asset's file filter over the repository root, in gitignore syntax (ASSET_IGNORE_MODE):
 * everything out, then the Dockerfile and the listed files back in, for every architecture (the
 * build argument picks one). Each folder on the way to them is let back in with its other entries
 * left out, so CDK neither stages nor walks anything else. With the Docker-syntax globs this
 * replaced (`**`, then `!…`), CDK walked every folder under a let-in one, a layer's build cache
 * too, and a synth racing a layer build that was deleting its work folder failed with ENOENT.
 */
export function assetExclude(copies: readonly ImageCopy[] = imageFiles()): string[] {
  // One line per architecture, not a `*`: gitignore's `*` matches dot names too, and a layer build's
  // work folder (dist/.arm64.tmp, being filled or renamed) beside the built ones would be walked.
  const keep = [DOCKERFILE_IN_CONTEXT, ...new Set(copies.flatMap((c) => ARCHITECTURES.map((arch) => sourceFor(c, arch))))];
  const folders = new Set<string>();
  for (const path of keep) {
    const parts = path.replace(/\/$/, '').split('/');
    for (let i = 1; i < parts.length; i++) folders.add(parts.slice(0, i).join('/'));
  }
  // A folder is let in after its parent's entries are left out, the kept files last: the last matching line wins.
  const byDepth = [...folders].sort((a, b) => a.split('/').length - b.split('/').length || a.localeCompare(b));
  return ['/*', ...byDepth.flatMap((f) => [`!/${f}/`, `/${f}/*`]), ...keep.map((path) => `!/${path}`)];
}

/**
 * Makes sure dist/cli holds the bundle of today's sources and nothing else, before the asset is
 * staged (the image must never ship stale code or a chunk from an earlier build).
 */
export function ensureImageBundle(): void {
  execFileSync(process.execPath, [join(REPO_ROOT, 'scripts', 'cli-bundle.mjs'), '--if-stale'], { stdio: ['ignore', 'ignore', 'inherit'] });
}

// `node --import tsx infra/container/image.ts`: rewrites the Dockerfile's COPY block from the list.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const text = readFileSync(DOCKERFILE, 'utf8');
  writeFileSync(DOCKERFILE, text.replace(dockerfileCopyBlock(text), dockerCopyBlock()));
}
