/**
 * The Debian packages both layers are built from are downloaded once into a cache outside the
 * checkout (layers/debian-closure.sh): after `git clean` of the build folders, a build takes them
 * from it without the network. A copy of the build scripts in a fresh folder stands for the
 * cleaned checkout, and apt is pointed at a closed proxy port, so any download fails.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, expect, it } from 'vitest';
import { cachedDebPath, debianCacheDir } from '../../layers/pg-dump/paths.ts';
import { ensureLayer, LAYER_DIR, REPO_ROOT } from '../support/layer.ts';

const execFileAsync = promisify(execFile);
const clone = mkdtempSync(join(tmpdir(), 'pgs3b-layer-cache-'));
afterAll(() => rmSync(clone, { recursive: true, force: true }));

type Manifest = { packages: { name: string; version: string; sha256: string }[]; files: { path: string; sha256: string }[] };

it('a cleaned checkout rebuilds the pg_dump layer from the download cache, with no download', async () => {
  const layer = join(clone, 'layers', 'pg-dump');
  mkdirSync(layer, { recursive: true });
  copyFileSync(join(REPO_ROOT, 'layers', 'debian-closure.sh'), join(clone, 'layers', 'debian-closure.sh'));
  copyFileSync(join(LAYER_DIR, 'build.sh'), join(layer, 'build.sh'));
  const build = (env: NodeJS.ProcessEnv) => execFileAsync('bash', [join(layer, 'build.sh'), 'x86_64'], { env: { ...process.env, ...env }, maxBuffer: 16 * 1024 * 1024 });
  const manifest = () => JSON.parse(readFileSync(join(layer, 'dist', 'x86_64', 'manifest.json'), 'utf8')) as Manifest;

  // The checkout's own layer (the global setup builds it) filled the cache; when the cache was
  // emptied since, a first build of the copy fills it again.
  let built = JSON.parse(readFileSync(join(await ensureLayer('x86_64'), 'manifest.json'), 'utf8')) as Manifest;
  if (!built.packages.every((p) => existsSync(cachedDebPath(p))) || !existsSync(join(debianCacheDir(), 'apt-amd64', 'updated'))) {
    await build({});
    built = manifest();
    rmSync(join(layer, 'dist'), { recursive: true });
    rmSync(join(layer, 'cache'), { recursive: true });
  }

  const closed = 'http://127.0.0.1:9';
  // No layers/pg-dump/cache or dist beside the copy: as after `git clean -fdX`.
  expect(existsSync(join(layer, 'cache'))).toBe(false);
  const { stderr } = await build({
    http_proxy: closed, https_proxy: closed, HTTP_PROXY: closed, HTTPS_PROXY: closed,
    // The index the first build used is kept, however old: this test is about the packages.
    PG_LAYER_INDEX_MAX_AGE: '31536000',
  });
  expect(stderr).not.toMatch(/downloading/);
  const rebuilt = manifest();
  expect(rebuilt.packages).toEqual(built.packages);
  expect(rebuilt.files).toEqual(built.files);
}, 300_000);
