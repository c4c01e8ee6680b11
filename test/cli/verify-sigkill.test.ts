/**
 * SIGKILL of `verify --local` mid-restore (issue 22, item 6): the CLI's node process killed as the
 * OOM killer or `kill -9` would, its children (the throwaway server, pg_restore) left as orphans.
 * It left the server running and the downloaded plaintext dump in the temporary folder for ever;
 * the next verify --local (or drill) must stop that server and remove both, and never touch the
 * folders of a run still going on (owner files: engine/restore/leftovers.ts).
 */
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { serverLayerRoot } from '../../layers/pg-server/paths.ts';
import { ensureServerLayer } from '../support/layer.ts';
import { CLI, runCli, startCliServices, type CliServices, resultOf } from '../support/cli.ts';

let svc: CliServices;
let tempDir: string;
const spawned: number[] = [];

/** The pids whose parent is `pid`, and theirs (/proc). */
function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(name)]);
    } catch {
      // Ended meanwhile.
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const c of children.get(p) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}

function alive(pid: number): boolean {
  try {
    // A zombie is dead for our purpose: it holds nothing but its exit status.
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

beforeAll(async () => {
  await ensureServerLayer('x86_64');
  svc = await startCliServices();
  // Enough rows that the restore takes a while: the kill lands in the middle of it.
  await svc.pg.query("CREATE TABLE bulk AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 400000) g", [], 'app');
  const run = await runCli(['backup', '--reason', 'verify sigkill test'], svc.env);
  expect(run.code, run.stderr).toBe(0);
  tempDir = mkdtempSync(join(tmpdir(), 'pgs3b-sigkill-'));
  chmodSync(tempDir, 0o711);
}, 900_000);

afterAll(async () => {
  // Only what this test started: whatever of the killed run is still there.
  for (const pid of spawned) if (alive(pid)) process.kill(pid, 'SIGKILL');
  await svc?.stop();
  if (tempDir) rmSync(tempDir, { recursive: true, force: true });
});

it('the next verify --local stops the orphaned server and removes its folder and the plaintext dump', async () => {
  const args = ['verify', '--latest', '--database', 'app', '--local', '--server-layer', serverLayerRoot('x86_64'), '--temp-dir', tempDir];
  const child = spawn(process.execPath, [CLI, ...args], { env: svc.env, stdio: ['ignore', 'pipe', 'pipe'] });
  spawned.push(child.pid!);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  // Killed once pg_restore has started: the server runs and the dump is on disk.
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`no restore event within 120 s: ${out.slice(-2000)}`)), 120_000);
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      if (/"event":"restore.progress"/.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', () => reject(new Error(`the CLI ended before the restore: ${out.slice(-2000)}`)));
  });
  spawned.push(...descendants(child.pid!));
  process.kill(child.pid!, 'SIGKILL');
  await exited;

  const left = readdirSync(tempDir);
  const serverDir = left.find((n) => n.startsWith('pgs3-server-'));
  expect(serverDir, left.join(', ')).toBeDefined();
  const postmaster = Number(readFileSync(join(tempDir, serverDir!, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
  expect(alive(postmaster)).toBe(true);
  const dumps = left.filter((n) => n !== serverDir).map((n) => join(tempDir, n));
  expect(dumps.some((d) => existsSync(join(d, 'backup.dump'))), left.join(', ')).toBe(true);

  const second = await runCli([...args, '--json'], svc.env);
  expect(second.code, second.stdout + second.stderr).toBe(0);
  expect(resultOf(second)).toMatchObject({ status: 'ok', problems: [] });
  // The postmaster got SIGQUIT: it ends at once, bounded here.
  for (let i = 0; i < 100 && alive(postmaster); i++) await new Promise((r) => setTimeout(r, 100));
  expect(alive(postmaster)).toBe(false);
  expect(readdirSync(tempDir)).toEqual([]);
});

it('never removes the dump folder of a run still going on, nor one it cannot judge (no owner file)', async () => {
  const { markOwner, sweepStaleDumps, DUMP_DIR_PREFIX } = await import('../../engine/restore/leftovers.ts');
  const { mkdirSync, writeFileSync } = await import('node:fs');
  const live = mkdtempSync(join(tempDir, DUMP_DIR_PREFIX));
  markOwner(live);
  const unknown = mkdtempSync(join(tempDir, DUMP_DIR_PREFIX));
  const dead = mkdtempSync(join(tempDir, DUMP_DIR_PREFIX));
  // A process that has ended: a child of this one, reaped.
  const gone = spawn(process.execPath, ['-e', '0']);
  await new Promise((r) => gone.once('exit', r));
  writeFileSync(join(dead, 'owner'), `${gone.pid} 1\n`);
  mkdirSync(join(dead, 'sub'));
  expect(sweepStaleDumps(tempDir)).toEqual([dead]);
  expect(readdirSync(tempDir).sort()).toEqual([live, unknown].map((d) => d.slice(tempDir.length + 1)).sort());
  rmSync(live, { recursive: true });
  rmSync(unknown, { recursive: true });
});
