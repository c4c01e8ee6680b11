/**
 * The layer needs nothing from the system it runs on: pg_dump runs in a chroot whose root holds
 * only the layer at /opt, /dev/null, /tmp, a one-line /etc/passwd and /etc/hosts, with Lambda's
 * LD_LIBRARY_PATH (pointing at directories that do not exist here) and no other environment than
 * libpq's variables, as a uid without a passwd entry (as on Lambda). It dumps a real PostgreSQL 18
 * over TCP to stdout; the archive restores to identical contents.
 */
import { execFile } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { findLoader, layerCommand } from '../../engine/pg/tools.ts';
import { ensureLayer } from '../support/layer.ts';
import { quoteIdent, startPostgres, type TestPostgres } from '../support/postgres.ts';
import { fill, fingerprint, LAMBDA_LD_LIBRARY_PATH, pgEnv, run } from './support.ts';

const execFileAsync = promisify(execFile);
// Lambda's sandbox user ids; no passwd entry exists for them.
const UID = 993;
const GID = 990;

let layer: string;
let pg: TestPostgres;
let root: string;

function chrootBinary(): string {
  const found = ['/usr/sbin/chroot', '/usr/bin/chroot', '/sbin/chroot'].find((p) => existsSync(p));
  if (!found) throw new Error('chroot(8) is missing: install the Debian package coreutils');
  return found;
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) {
    throw new Error('the self-contained layer test needs root to chroot and to create /dev/null (CAP_SYS_CHROOT, CAP_MKNOD): run the suite as root, as .ci/run does');
  }
  layer = await ensureLayer('x86_64');
  pg = await startPostgres();
  await fill(pg, 'app');

  root = mkdtempSync(join(tmpdir(), 'pgs3b-chroot-'));
  chmodSync(root, 0o755);
  cpSync(layer, join(root, 'opt'), { recursive: true });
  mkdirSync(join(root, 'dev'));
  try {
    await execFileAsync('mknod', ['-m', '666', join(root, 'dev', 'null'), 'c', '1', '3']);
  } catch (err) {
    throw new Error(`cannot create /dev/null in the test chroot (mknod needs CAP_MKNOD, and a file system without nodev): ${String(err)}`, { cause: err });
  }
  mkdirSync(join(root, 'tmp'));
  chmodSync(join(root, 'tmp'), 0o1777);
  mkdirSync(join(root, 'etc'));
  writeFileSync(join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/sbin/nologin\n');
  writeFileSync(join(root, 'etc', 'hosts'), '127.0.0.1 localhost\n');
});

afterAll(async () => {
  if (root) rmSync(root, { recursive: true, force: true });
  await pg?.stop();
});

it('pg_dump runs from the layer alone: chroot, env -i, Lambda LD_LIBRARY_PATH, non-root, TCP dump to stdout that restores identically', async () => {
  expect(readdirSync(root).sort()).toEqual(['dev', 'etc', 'opt', 'tmp']);
  expect(readdirSync(join(root, 'etc')).sort()).toEqual(['hosts', 'passwd']);

  // Paths as seen inside the chroot: the layer is mounted at /opt, as on Lambda.
  const loader = findLoader(layer)!.replace(layer, '/opt');
  const cmd = layerCommand('/opt', 'pg_dump', loader);
  const env = { LD_LIBRARY_PATH: LAMBDA_LD_LIBRARY_PATH, ...pgEnv(pg, 'app', 'localhost') };
  const dump = await run(chrootBinary(), [`--userspec=${UID}:${GID}`, root, cmd.file, ...cmd.args, '-Fc', '--compress=zstd:1'], env);
  if (dump.code === 125 || /chroot: /.test(dump.stderr)) {
    throw new Error(`chroot itself failed (needs CAP_SYS_CHROOT; in a container, run it privileged): ${dump.stderr}`);
  }
  expect(dump.stderr).toBe('');
  expect(dump.code).toBe(0);
  expect(dump.stdout.subarray(0, 5).toString()).toBe('PGDMP');

  // Restore with the layer's pg_restore on the host, then compare contents.
  const file = join(root, 'tmp', 'app.dump');
  writeFileSync(file, dump.stdout);
  await pg.query(`CREATE DATABASE ${quoteIdent('app restored')}`);
  const restore = layerCommand(layer, 'pg_restore');
  const restored = await run(restore.file, [...restore.args, '--no-owner', '-d', 'app restored', file], pgEnv(pg, 'app restored'));
  expect(restored.stderr).toBe('');
  expect(restored.code).toBe(0);
  expect(await fingerprint(pg, 'app restored')).toEqual(await fingerprint(pg, 'app'));
});
