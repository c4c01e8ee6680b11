/**
 * Interrupts and partial failures leave nothing behind, and alerts tell the truth (issue 9 §4):
 * SIGTERM/SIGINT of `run` (and of backup.sh's process group, as systemd stops it), an abort that
 * S3 refuses, a CompleteMultipartUpload whose answer is lost, and `restore`/`verify` killed
 * mid-way or fed a stalled download. Signals go to the real process tree; S3 goes through the
 * fault proxy; PostgreSQL and moto are real.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AbortMultipartUploadCommand, ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createAlertInbox, listKeys, listMultipartUploads, type AlertInbox } from '../support/aws.ts';
import { isUploadPart, startFaultProxy, type FaultProxy } from '../support/fault-proxy.ts';
import { createDatabase, writeFakePgDump } from '../support/fixtures.ts';
import { REPO_ROOT } from '../support/layer.ts';
import { CLI, databases, jsonLines, runCli, startCliServices, type CliServices } from '../support/cli.ts';

const SCRIPT = join(REPO_ROOT, 'scripts', 'backup.sh');

interface Spawned {
  readonly child: ChildProcess;
  /** What it printed so far (for the message when a wait fails). */
  readonly output: () => string;
  readonly done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

/** Starts a command; SIGKILLs its process group after `boundMs` so that a hang fails the test, never the suite. */
function start(file: string, args: readonly string[], env: Record<string, string>, boundMs = 60_000): Spawned {
  const child = spawn(file, [...args], { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const timer = setTimeout(() => killGroup(child, 'SIGKILL'), boundMs);
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { child, done, output: () => stdout + stderr };
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-child.pid!, signal);
  } catch {
    // Gone.
  }
}

async function waitFor(what: string, cond: () => Promise<boolean> | boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Pids whose parent is `pid` (from /proc). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(entry));
    } catch {
      // Exited while we looked.
    }
  }
  return out;
}

describe('interrupts and partial failures', () => {
  let svc: CliServices;
  let proxy: FaultProxy;
  let inbox: AlertInbox;
  let dir: string;
  let n = 0;
  /** Processes a test must not leave behind, whatever happened. */
  const strays: number[] = [];

  beforeAll(async () => {
    svc = await startCliServices();
    proxy = await startFaultProxy(svc.aws.endpoint);
    inbox = await createAlertInbox(svc.clients);
    dir = mkdtempSync(join(tmpdir(), 'pgs3b-intr-'));
    // A database whose restore is slow in one known place: an expression index whose function
    // sleeps everywhere but in the original database (so backing it up stays fast).
    await createDatabase(svc.pg, 'slowsrc');
    await svc.pg.query(
      `create function slow(i int) returns int immutable language plpgsql as $$
         begin if current_database() <> 'slowsrc' then perform pg_sleep(0.5); end if; return i; end $$;
       create table t (id int); insert into t select generate_series(1, 60);
       create index t_slow on t ((slow(id)));`,
      [],
      'slowsrc',
    );
    const backup = await runCli(['backup', '--database', 'slowsrc'], { ...svc.env, AWS_ENDPOINT_URL_S3: proxy.endpoint });
    expect(backup.code, backup.stderr).toBe(0);
  }, 120_000);
  afterAll(async () => {
    await proxy?.stop();
    await svc?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  afterEach(async () => {
    proxy.setRule(() => 'pass');
    for (const pid of strays.splice(0)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone, as it should be.
      }
    }
    // Nothing may stay behind: abort what a failing test left, so the next test starts clean.
    const res = await svc.clients.s3.send(new ListMultipartUploadsCommand({ Bucket: svc.bucket }));
    for (const u of res.Uploads ?? []) await svc.clients.s3.send(new AbortMultipartUploadCommand({ Bucket: svc.bucket, Key: u.Key!, UploadId: u.UploadId! }));
    for (const db of await databases(svc.pg)) {
      if (db.startsWith('pgs3b_verify_') || db.startsWith('restored_')) await svc.pg.query(`drop database if exists "${db}" with (force)`);
    }
    await inbox.receive(100, 1000);
  });

  function env(extra: Record<string, string> = {}): Record<string, string> {
    return { ...svc.env, BACKUP_PREFIX: `intr-${++n}/`, ALERT_TOPIC_ARN: inbox.topicArn, AWS_ENDPOINT_URL_S3: proxy.endpoint, ...extra };
  }

  /** A pg_dump that writes 20 MB (two parts and more), then waits: the upload is open when the signal comes. */
  function slowPgDump(pidFile: string): string {
    return writeFakePgDump(dir, `echo $$ > ${pidFile}; printf PGDMP; head -c 20000000 /dev/urandom; exec sleep 120`);
  }

  async function uploadOpen(): Promise<boolean> {
    return (await listMultipartUploads(svc.clients, svc.bucket)).length > 0 && proxy.log.some((e) => isUploadPart(e.request));
  }

  it.each<[NodeJS.Signals, number]>([
    ['SIGTERM', 143],
    ['SIGINT', 130],
  ])('%s of `run` mid-upload: pg_dump stopped, upload aborted, alert "interrupted", exit %i', async (signal, exitCode) => {
    const pidFile = join(dir, `run-${signal}.pid`);
    const e = env({ PG_DUMP_BIN: slowPgDump(pidFile) });
    const cli = start(process.execPath, [CLI, 'backup'], e);
    try {
      await waitFor('the multipart upload', uploadOpen);
      const pgDumpPid = Number(readFileSync(pidFile, 'utf8'));
      strays.push(pgDumpPid);
      process.kill(cli.child.pid!, signal);
      const res = await cli.done;
      expect(res.code).toBe(exitCode);
      expect(alive(pgDumpPid)).toBe(false);
      expect(await listMultipartUploads(svc.clients, svc.bucket)).toEqual([]);
      expect(await listKeys(svc.clients, svc.bucket, e.BACKUP_PREFIX)).toEqual([]);
      const alerts = await inbox.receive(1, 10_000);
      expect(alerts.map((a) => a.subject)).toContain('[pg-s3-backup] FAILED app: interrupted');
      expect(alerts.find((a) => a.subject.endsWith('interrupted'))!.message).toContain(`interrupted by ${signal}`);
    } finally {
      killGroup(cli.child, 'SIGKILL');
    }
  }, 90_000);

  it('SIGTERM while the real pg_dump waits on a lock: no pg_dump outlives the CLI', async () => {
    const holder = new pg.Client({ connectionString: svc.pg.urlFor('app') });
    await holder.connect();
    const cli = start(process.execPath, [CLI, 'backup'], env({ PG_LOCK_WAIT_TIMEOUT: '600' }));
    try {
      await holder.query('begin; lock table orders in access exclusive mode');
      const waiting = async () =>
        // Not through `holder`: inside its transaction pg_stat_activity is a frozen snapshot.
        (await svc.pg.query<{ n: number }>("select count(*)::int as n from pg_stat_activity where application_name = 'pg-s3-backup' and wait_event_type = 'Lock'"))[0]!.n > 0;
      await waitFor('pg_dump waiting on the lock', waiting).catch(async (e: unknown) => {
        throw new Error(`${(e as Error).message}; the CLI printed:\n${cli.output()}`);
      });
      strays.push(...childrenOf(cli.child.pid!));
      process.kill(cli.child.pid!, 'SIGTERM');
      const res = await cli.done;
      expect(res.code).toBe(143);
      // pg_dump itself is gone (its backend, blocked on the lock, notices when the lock is released).
      expect(strays.length).toBeGreaterThan(0);
      for (const pid of strays) expect(alive(pid)).toBe(false);
    } finally {
      await holder.query('rollback').catch(() => {});
      await holder.end();
      killGroup(cli.child, 'SIGKILL');
    }
  }, 90_000);

  it("SIGTERM to backup.sh's process group (systemctl stop): upload aborted, alert, non-zero exit, nothing left", async () => {
    const pidFile = join(dir, 'host.pid');
    const e = env({ PG_DUMP_BIN: slowPgDump(pidFile), PG_S3_BACKUP_LOCK_FILE: join(dir, 'host.lock'), PG_S3_BACKUP_SYSLOG: 'false', NODE: process.execPath });
    const host = start('bash', [SCRIPT, '--reason', 'interrupt test'], e);
    try {
      await waitFor('the multipart upload', uploadOpen);
      const pgDumpPid = Number(readFileSync(pidFile, 'utf8'));
      strays.push(pgDumpPid);
      killGroup(host.child, 'SIGTERM');
      const res = await host.done;
      expect(res.signal).toBeNull();
      expect(res.code).toBe(143);
      expect(res.stdout).toMatch(/backup INTERRUPTED by SIGTERM/);
      expect(alive(pgDumpPid)).toBe(false);
      expect(await listMultipartUploads(svc.clients, svc.bucket)).toEqual([]);
      expect(await listKeys(svc.clients, svc.bucket, e.BACKUP_PREFIX)).toEqual([]);
      const alerts = await inbox.receive(1, 10_000);
      expect(alerts.map((a) => a.subject)).toContain('[pg-s3-backup] FAILED app: interrupted');
    } finally {
      killGroup(host.child, 'SIGKILL');
    }
  }, 90_000);

  it('S3 down for the abort too: the alert names the open upload and what removes it; prune aborts it', async () => {
    const isAbort = (r: { method: string; url: string }) => r.method === 'DELETE' && /[?&]uploadId=/.test(r.url);
    proxy.setRule((r) => ((isUploadPart(r) && /[?&]partNumber=2(&|$)/.test(r.url)) || isAbort(r) ? '503' : 'pass'));
    const e = env({ PG_DUMP_BIN: writeFakePgDump(dir, 'printf PGDMP; head -c 20000000 /dev/urandom'), AWS_MAX_ATTEMPTS: '2' });
    const res = await runCli(['backup'], e);
    expect(res.code).toBe(1);
    expect(proxy.log.filter((l) => isAbort(l.request)).length).toBeGreaterThanOrEqual(2);
    const [upload] = (await svc.clients.s3.send(new ListMultipartUploadsCommand({ Bucket: svc.bucket }))).Uploads ?? [];
    expect(upload?.Key).toMatch(new RegExp(`^${e.BACKUP_PREFIX}app/`));
    const alerts = await inbox.receive(1, 10_000);
    const alert = alerts.find((a) => a.subject === '[pg-s3-backup] FAILED app: upload')!;
    expect(alert.message).toContain(`upload id ${upload!.UploadId}`);
    expect(alert.message).toMatch(/could NOT be aborted/);
    expect(alert.message).not.toMatch(/Nothing was written/);
    expect(alert.message).toMatch(/pg-s3-backup prune/);

    // S3 is back: prune finds the upload and aborts it (moto dates every upload 2010, so the age
    // limit itself is covered by the unit test of abortStaleUploads).
    proxy.setRule(() => 'pass');
    const pruned = await runCli(['prune'], { ...e, STALE_UPLOAD_AGE_SECONDS: '0' });
    expect(pruned.code, pruned.stderr).toBe(0);
    expect(JSON.stringify(pruned.result)).toContain(upload!.UploadId!);
    expect(await listMultipartUploads(svc.clients, svc.bucket)).toEqual([]);
  }, 90_000);

  it('CompleteMultipartUpload done by S3 but its answer lost: the key is checked, and the backup stands', async () => {
    const isComplete = (r: { method: string; url: string }) => r.method === 'POST' && /[?&]uploadId=/.test(r.url);
    proxy.setRule((r) => (isComplete(r) ? 'lose-answer' : 'pass'));
    const e = env({ PG_DUMP_BIN: writeFakePgDump(dir, 'printf PGDMP; head -c 12000000 /dev/urandom') });
    const res = await runCli(['backup'], e);
    expect(res.code, res.stdout).toBe(0);
    const backup = (res.result as { backups: { key: string; bytes: number }[] }).backups[0]!;
    expect(backup.bytes).toBe(12_000_005);
    expect(await listKeys(svc.clients, svc.bucket, e.BACKUP_PREFIX)).toEqual([backup.key, `${backup.key}.json`]);
    expect(await listMultipartUploads(svc.clients, svc.bucket)).toEqual([]);
  }, 90_000);

  describe('restore and verify', () => {
    const tempDirs = (root: string) => readdirSync(root);

    it('SIGTERM of `verify` mid-restore: pg_restore stopped, scratch database dropped, temp dump removed', async () => {
      const temp = mkdtempSync(join(dir, 'verify-tmp-'));
      const cli = start(process.execPath, [CLI, 'verify', '--latest', '--database', 'slowsrc', '--scratch-url', svc.pg.urlFor('postgres'), '--temp-dir', temp], env({ BACKUP_PREFIX: 'pg-s3-backup/' }));
      try {
        const building = async () =>
          (await svc.pg.query<{ n: number }>("select count(*)::int as n from pg_stat_activity where datname like 'pgs3b_verify_%' and query ilike 'create index%'"))[0]!.n > 0;
        await waitFor('pg_restore building the slow index', building, 45_000);
        // The plaintext dump is private while it exists.
        const [sub] = tempDirs(temp);
        expect(statSync(join(temp, sub!)).mode & 0o777).toBe(0o700);
        expect(statSync(join(temp, sub!, 'backup.dump')).mode & 0o777).toBe(0o600);
        const children = childrenOf(cli.child.pid!);
        strays.push(...children);
        process.kill(cli.child.pid!, 'SIGTERM');
        const res = await cli.done;
        expect(res.code).toBe(143);
        for (const pid of children) expect(alive(pid)).toBe(false);
        expect(tempDirs(temp)).toEqual([]);
        expect((await databases(svc.pg)).filter((d) => d.startsWith('pgs3b_verify_'))).toEqual([]);
        const report = jsonLines(res.stdout).find((ev) => ev.event === 'result') as { status: string; problems: { stage: string }[] };
        expect(report.status).toBe('failed');
        expect(report.problems[0]!.stage).toBe('interrupted');
      } finally {
        killGroup(cli.child, 'SIGKILL');
      }
    }, 90_000);

    it('SIGINT of `restore --create` mid-restore: pg_restore stopped, the created database dropped, temp dump removed', async () => {
      const temp = mkdtempSync(join(dir, 'restore-tmp-'));
      const cli = start(process.execPath, [CLI, 'restore', '--latest', '--database', 'slowsrc', '--create', '--target-url', svc.pg.urlFor('restored_slow'), '--temp-dir', temp], env({ BACKUP_PREFIX: 'pg-s3-backup/' }));
      try {
        const building = async () =>
          (await svc.pg.query<{ n: number }>("select count(*)::int as n from pg_stat_activity where datname = 'restored_slow' and query ilike 'create index%'"))[0]!.n > 0;
        await waitFor('pg_restore building the slow index', building, 45_000);
        const children = childrenOf(cli.child.pid!);
        strays.push(...children);
        process.kill(cli.child.pid!, 'SIGINT');
        const res = await cli.done;
        expect(res.code).toBe(130);
        for (const pid of children) expect(alive(pid)).toBe(false);
        expect(tempDirs(temp)).toEqual([]);
        expect(await databases(svc.pg)).not.toContain('restored_slow');
      } finally {
        killGroup(cli.child, 'SIGKILL');
      }
    }, 90_000);

    it('a download that stalls mid-body ends on AWS_SOCKET_TIMEOUT_SECONDS, temp dump removed', async () => {
      const temp = mkdtempSync(join(dir, 'stall-tmp-'));
      proxy.setRule((r) => (r.method === 'GET' && /\.dump$/.test(r.url.split('?')[0]!) ? 'stall-body' : 'pass'));
      const cli = start(
        process.execPath,
        [CLI, 'restore', '--latest', '--database', 'slowsrc', '--create', '--target-url', svc.pg.urlFor('restored_stall'), '--temp-dir', temp],
        env({ BACKUP_PREFIX: 'pg-s3-backup/', AWS_SOCKET_TIMEOUT_SECONDS: '2' }),
        45_000,
      );
      const t0 = Date.now();
      const res = await cli.done;
      expect(res.code, res.stdout + res.stderr).toBe(1);
      expect(Date.now() - t0).toBeLessThan(40_000);
      expect(jsonLines(res.stdout).concat(jsonLines(res.stderr)).some((ev) => /download/.test(JSON.stringify(ev)))).toBe(true);
      expect(tempDirs(temp)).toEqual([]);
      expect(await databases(svc.pg)).not.toContain('restored_stall');
    }, 60_000);
  });
});
