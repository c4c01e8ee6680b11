/**
 * Smoke run of `npm run demo`, the README's first command: it must succeed on its own, show the
 * backups, the pruning and the restore drill, finish well under two minutes, and leave nothing
 * running or on disk.
 */
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { expect, it } from 'vitest';
import { REPO_ROOT } from '../support/layer.ts';

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

it('npm run demo backs up, prunes, lists and verifies, in under two minutes, and cleans up', async () => {
  const before = demoDirs();
  const t0 = Date.now();
  const { code, out } = await new Promise<{ code: number | null; out: string }>((resolve, reject) => {
    const child = spawn('npm', ['run', '--silent', 'demo'], { cwd: REPO_ROOT, env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.on('data', (b: Buffer) => (text += b.toString()));
    child.stderr.on('data', (b: Buffer) => (text += b.toString()));
    child.on('error', reject);
    child.on('close', (c) => resolve({ code: c, out: text }));
  });
  const ms = Date.now() - t0;
  expect(code, out.slice(-4000)).toBe(0);
  expect(ms).toBeLessThan(120_000);

  for (let night = 1; night <= 4; night++) expect(out).toContain(`Night ${night}/4: the Lambda handler runs`);
  expect(out.match(/"event":"pruned"|pruned: /g)?.length).toBe(4);
  expect(out).toMatch(/night 3: backup .* pruned 2/);
  expect(out).toMatch(/night 4: backup .* pruned 2/);
  expect(out).toMatch(/DATABASE\s+STARTED \(UTC\)\s+SIZE\s+SHA256\s+KEY/);
  expect(out.match(/^shop\s+\d{4}-\d{2}-\d{2} .*pg-s3-backup\/shop\//gm)).toHaveLength(2);
  expect(out).toMatch(/verify OK: pg-s3-backup\/shop\//);
  expect(out).toMatch(/restore drill: 4 tables, [\d,]+ rows, sha256 verified/);
  expect(out).toContain('Demo complete.');

  // Nothing left behind: no data directory, nothing listening on the ports it used.
  expect(demoDirs()).toEqual(before);
  const m = /PostgreSQL on 127\.0\.0\.1:(\d+), AWS APIs on http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
  expect(m).not.toBeNull();
  expect(await listening(Number(m![1]))).toBe(false);
  expect(await listening(Number(m![2]))).toBe(false);
});
