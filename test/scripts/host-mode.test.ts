/**
 * Host mode: scripts/backup.sh as cron runs it, against PostgreSQL and moto. Settings come from a
 * private env file; the run is locked, timestamped, sent to syslog (a recording `logger` here),
 * and its exit status is the backup's.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../support/layer.ts';
import { NASTY_PASSWORD } from '../support/postgres.ts';
import { runCli, startCliServices, type CliServices, listedOf } from '../support/cli.ts';

const SCRIPT = join(REPO_ROOT, 'scripts', 'backup.sh');
let svc: CliServices;
let dir: string;

beforeAll(async () => {
  svc = await startCliServices();
  dir = mkdtempSync(join(tmpdir(), 'pgs3b-host-'));
  mkdirSync(join(dir, 'bin'));
  // A `logger` that records what would go to syslog.
  writeFileSync(join(dir, 'bin', 'logger'), `#!/bin/sh\nprintf '%s\\n' "$*" >> "${join(dir, 'syslog')}"\n`);
  chmodSync(join(dir, 'bin', 'logger'), 0o755);
});
afterAll(async () => {
  await svc?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Writes the env file cron would use: every setting, credentials included, nothing on the command line. */
function envFile(name: string, mode: number, extra: Record<string, string> = {}): string {
  const path = join(dir, name);
  const settings = { ...svc.env, ...extra };
  const keep = /^(AWS_|BACKUP_|DATABASE_URL$|DATABASES$|RETENTION_COUNT$|S3_FORCE_PATH_STYLE$)/;
  const lines = ['# pg-s3-backup host settings', ...Object.entries(settings).filter(([k]) => keep.test(k)).map(([k, v]) => `${k}=${v}`)];
  writeFileSync(path, `${lines.join('\n')}\n`);
  chmodSync(path, mode);
  return path;
}

/** The environment cron gives a job: little more than PATH and HOME. */
/** Resolves once another process holds `file`'s flock (a non-blocking probe fails), within 10 s. */
async function lockHeld(file: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const probe = await new Promise<number | null>((r) => spawn('flock', ['-n', file, 'true'], { stdio: 'ignore' }).once('exit', r));
    if (probe !== 0) return;
    if (Date.now() > deadline) throw new Error(`nobody took the lock on ${file} within 10 s`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function cronEnv(): Record<string, string> {
  return {
    PATH: [join(dir, 'bin'), process.env.PATH ?? ''].join(delimiter),
    HOME: dir,
    PG_S3_BACKUP_LOCK_FILE: join(dir, 'backup.lock'),
    PG_S3_BACKUP_SYSLOG: 'true',
  };
}

async function runScript(args: string[], env = cronEnv()): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [SCRIPT, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out }));
  });
}

async function backupCount(): Promise<number> {
  const run = await runCli(['list', '--json'], svc.env);
  return (listedOf<unknown>(run)).length;
}

describe('scripts/backup.sh', () => {
  it('takes a backup with settings from a 0600 env file: timestamped lines, syslog, exit 0, manifest reason host-cron', async () => {
    const file = envFile('ok.env', 0o600);
    const run = await runScript(['--env-file', file]);
    expect(run.code, run.out).toBe(0);
    const lines = run.out.trim().split('\n');
    for (const l of lines) expect(l).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z /);
    expect(run.out).toMatch(/backup starting \(reason: host-cron\)/);
    expect(run.out).toMatch(/"event":"backup.complete"/);
    expect(run.out).toMatch(/backup finished in \d+s/);
    expect(run.out).not.toContain(NASTY_PASSWORD);
    expect(run.out).not.toContain(encodeURIComponent(NASTY_PASSWORD));
    const syslog = readFileSync(join(dir, 'syslog'), 'utf8');
    expect(syslog).toMatch(/-t pg-s3-backup .*backup finished/);
    expect(syslog).not.toContain(encodeURIComponent(NASTY_PASSWORD));

    const listed = listedOf<{ reason: string; database: string }>(await runCli(['list', '--json'], svc.env));
    expect(listed[0]).toMatchObject({ database: 'app', reason: 'host-cron' });
  });

  it('refuses an env file that others can read, before doing anything', async () => {
    const before = await backupCount();
    const file = envFile('open.env', 0o644);
    const run = await runScript(['--env-file', file]);
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/has mode 644: it holds credentials, make it private with: chmod 600/);
    expect(await backupCount()).toBe(before);
  });

  it('never overlaps: a run that finds the lock held exits 1 without backing up', async () => {
    const before = await backupCount();
    // Its own process group: the lock is held by `sleep` too, and both must go afterwards.
    const holder: ChildProcess = spawn('flock', [join(dir, 'backup.lock'), 'sleep', '60'], { stdio: 'ignore', detached: true });
    const gone = new Promise((r) => holder.once('exit', r));
    try {
      await lockHeld(join(dir, 'backup.lock'));
      const run = await runScript(['--env-file', envFile('ok2.env', 0o600)]);
      expect(run.code).toBe(1);
      expect(run.out).toMatch(/another backup is still running/);
      expect(await backupCount()).toBe(before);
    } finally {
      process.kill(-holder.pid!, 'SIGTERM');
      await gone;
    }
  });

  it('exits non-zero when the backup fails, and says so', async () => {
    const run = await runScript(['--env-file', envFile('bad.env', 0o600, { DATABASES: 'no_such_database' })]);
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/backup FAILED with exit code 1/);
    expect(run.out).toMatch(/no_such_database/);
  });

  it('also reads its settings from the environment alone', async () => {
    const before = await backupCount();
    const run = await runScript([], { ...cronEnv(), ...svc.env, PATH: cronEnv().PATH ?? '' });
    expect(run.code, run.out).toBe(0);
    expect(await backupCount()).toBe(before + 1);
  });
});
