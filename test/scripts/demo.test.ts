/**
 * Smoke run of `npm run demo`, the README's first command: it must succeed on its own, tell its
 * story (the backups, the pruning, the CLI's own table, the restore drill) in human text, with no
 * JSON line unless asked for with --json, finish well under two minutes, and leave nothing running
 * or on disk.
 */
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { expect, it } from 'vitest';
import { ensureServerLayer, REPO_ROOT } from '../support/layer.ts';

function demoDirs(): string[] {
  return readdirSync(tmpdir()).filter((d) => d.startsWith('pgs3b-demo-'));
}

async function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function runDemo(env: NodeJS.ProcessEnv, args: readonly string[] = []): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('npm', ['run', '--silent', 'demo', ...(args.length > 0 ? ['--', ...args] : [])], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.on('data', (b: Buffer) => (text += b.toString()));
    child.stderr.on('data', (b: Buffer) => (text += b.toString()));
    child.on('error', reject);
    child.on('close', (c) => resolve({ code: c, out: text }));
  });
}

it('npm run demo backs up, prunes, lists and verifies, in under two minutes, and cleans up', async () => {
  // Built first (2 to 6 minutes when missing) so that the timing below is the demo's own.
  await ensureServerLayer();
  const before = demoDirs();
  const t0 = Date.now();
  const { code, out } = await runDemo(process.env);
  const ms = Date.now() - t0;
  expect(code, out.slice(-4000)).toBe(0);
  expect(ms).toBeLessThan(120_000);

  for (let night = 1; night <= 4; night++) expect(out).toContain(`Night ${night}/4: the Lambda handler runs`);
  // The story in human text, piped as here too: no engine event as a JSON line, no raw event
  // line (`pruned: database=…`); each night told in one line.
  expect(out.split('\n').filter((l) => l.trimStart().startsWith('{'))).toEqual([]);
  expect(out).not.toMatch(/^\w[\w ]*: \w+=/m);
  expect(out.match(/^ {2}→ pg-s3-backup\/shop\/.*\.dump: .* in .*; pruned [02] object\(s\)$/gm)).toHaveLength(4);
  expect(out).toMatch(/night 3: backup .* pruned 2/);
  expect(out).toMatch(/night 4: backup .* pruned 2/);
  expect(out).toMatch(/DATABASE\s+STARTED \(UTC\)\s+SIZE\s+SHA256\s+KEY/);
  expect(out.match(/^shop\s+\d{4}-\d{2}-\d{2} .*pg-s3-backup\/shop\//gm)).toHaveLength(2);
  expect(out).toMatch(/verify OK: pg-s3-backup\/shop\//);
  // The nightly drill: every table proven against the manifest's counts, on a throwaway server.
  expect(out).toMatch(/drill OK: 4 tables proven against the manifest's counts \(exact\)/);
  expect(out).toMatch(/public\.\w+\s+backup\s+\d+\s+restored\s+\d+\s+ok/);
  expect(readdirSync(tmpdir()).filter((d) => d.startsWith('pgs3-server-'))).toEqual([]);
  expect(out).toMatch(/restore drill: 4 tables, [\d,]+ rows, sha256 verified/);
  expect(out).toContain('Demo complete.');

  // Nothing left behind: no data directory, nothing listening on the ports it used.
  expect(demoDirs()).toEqual(before);
  const m = /PostgreSQL on 127\.0\.0\.1:(\d+), AWS APIs on http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
  expect(m).not.toBeNull();
  expect(await listening(Number(m![1]))).toBe(false);
  expect(await listening(Number(m![2]))).toBe(false);
}, 900_000); // includes building the pg-server layer when missing

it('npm run demo -- --bogus names its one option, exits 2 and starts nothing', async () => {
  const before = demoDirs();
  const { code, out } = await runDemo(process.env, ['--bogus']);
  expect(code).toBe(2);
  expect(out).toMatch(/demo: unknown argument --bogus \(the only option is --json/);
  expect(demoDirs()).toEqual(before);
});

it('npm run demo says how to get moto when it is missing, exits 1 and starts nothing', async () => {
  const before = demoDirs();
  const dir = mkdtempSync(join(tmpdir(), 'pgs3b-nomoto-'));
  try {
    // A python3 without moto.
    writeFileSync(join(dir, 'python3'), '#!/bin/sh\nexit 1\n');
    chmodSync(join(dir, 'python3'), 0o755);
    // MOTO_PYTHON too: otherwise Debian's /usr/bin/python3 is tried next, and may have moto.
    const { code, out } = await runDemo({ ...process.env, PATH: `${dir}${delimiter}${process.env.PATH ?? ''}`, MOTO_PYTHON: join(dir, 'python3') });
    expect(code).toBe(1);
    expect(out).toMatch(/demo failed: moto is not installed .*apt-get install python3-moto/);
    expect(demoDirs()).toEqual(before);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
