/**
 * Nothing may hang (issue 9 §1): an AWS endpoint that accepts connections and never answers (S3,
 * SNS, Secrets Manager), an upload stuck mid-way, a table held in ACCESS EXCLUSIVE, a pg_dump that
 * stops writing: each is bounded by a configured timeout, ends the run with an alert naming the
 * real cause, and leaves nothing behind. The real handler and the real CLI, against PostgreSQL,
 * moto and one fault proxy per AWS service; every bound is a few seconds.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BackupRunError } from '../../engine/errors.ts';
import { noMetrics, type Log } from '../../lambda/powertools.ts';
import { createHandler } from '../../lambda/handler.ts';
import { awsEnv, createAlertInbox, createSecret, listKeys, listMultipartUploads, type AlertInbox } from '../support/aws.ts';
import { isUploadPart, startFaultProxy, type FaultProxy } from '../support/fault-proxy.ts';
import { writeFakePgDump } from '../support/fixtures.ts';
import { ensureLayer } from '../support/layer.ts';
import { CLI, jsonLines, startCliServices, type CliServices } from '../support/cli.ts';

const MiB = 1024 * 1024;
const context = { awsRequestId: 'req-hangs' };

/** Runs the CLI; kills it after `boundMs` (code null) so that a hang fails the test instead of the suite. */
function runCliBounded(args: readonly string[], env: Record<string, string>, boundMs: number): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), boundMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - t0 });
    });
  });
}

function quietLog(): Log {
  const nop = () => {};
  return { debug: nop, info: nop, warn: nop, error: nop };
}

describe('nothing may hang', () => {
  let svc: CliServices;
  let s3Proxy: FaultProxy;
  let snsProxy: FaultProxy;
  let smProxy: FaultProxy;
  let inbox: AlertInbox;
  let secretArn: string;
  let layer: string;
  let scripts: string;
  let n = 0;
  const saved: Record<string, string | undefined> = {};

  beforeAll(async () => {
    [svc, layer] = await Promise.all([startCliServices(), ensureLayer()]);
    [s3Proxy, snsProxy, smProxy] = await Promise.all([startFaultProxy(svc.aws.endpoint), startFaultProxy(svc.aws.endpoint), startFaultProxy(svc.aws.endpoint)]);
    inbox = await createAlertInbox(svc.clients);
    secretArn = await createSecret(svc.clients, { host: svc.pg.host, port: svc.pg.port, username: svc.pg.user, password: svc.pg.password, dbname: 'app' });
    scripts = mkdtempSync(join(tmpdir(), 'pgs3b-hangs-'));
    // The handler's clients (createDeps) take their endpoints from the process, like the SDK in Lambda.
    const endpoints = { ...awsEnv(svc.aws.endpoint), AWS_ENDPOINT_URL_S3: s3Proxy.endpoint, AWS_ENDPOINT_URL_SNS: snsProxy.endpoint, AWS_ENDPOINT_URL_SECRETS_MANAGER: smProxy.endpoint };
    for (const [k, v] of Object.entries(endpoints)) {
      saved[k] = process.env[k];
      process.env[k] = v;
    }
  });
  afterAll(async () => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    await Promise.all([s3Proxy?.stop(), snsProxy?.stop(), smProxy?.stop()]);
    await svc?.stop();
    if (scripts) rmSync(scripts, { recursive: true, force: true });
  });
  afterEach(async () => {
    for (const p of [s3Proxy, snsProxy, smProxy]) {
      p.setRule(() => 'pass');
      p.log.length = 0;
    }
    // Whatever a test left must not leak into the next one's checks.
    await inbox.receive(100, 1500);
  });

  /** Short bounds everywhere: a hang shows as a test timeout, a bound as a failure within seconds. */
  function envFor(extra: Record<string, string> = {}): Record<string, string> {
    return {
      DB_SECRET_ID: secretArn,
      BACKUP_BUCKET: svc.bucket,
      BACKUP_PREFIX: `hang-${++n}/`,
      ALERT_TOPIC_ARN: inbox.topicArn,
      PG_DUMP_BIN: join(layer, 'bin', 'pg_dump'),
      S3_FORCE_PATH_STYLE: 'true',
      AWS_CONNECT_TIMEOUT_SECONDS: '2',
      AWS_REQUEST_TIMEOUT_SECONDS: '3',
      AWS_SOCKET_TIMEOUT_SECONDS: '3',
      AWS_MAX_ATTEMPTS: '2',
      ALERT_TIMEOUT_SECONDS: '3',
      TIME_MARGIN_SECONDS: '1',
      ...extra,
    };
  }

  async function runHandler(env: Record<string, string>, remainingMs: number, event: unknown = {}) {
    const handler = createHandler(env, { log: quietLog(), metrics: noMetrics, partSize: 5 * MiB });
    const t0 = Date.now();
    const err = await handler(event, { ...context, getRemainingTimeInMillis: () => remainingMs }).then(() => undefined, (e: unknown) => e);
    return { err: err as BackupRunError | undefined, ms: Date.now() - t0 };
  }

  it('S3 black-holed from the start: the Lambda budget ends the run in the key check, with an alert', async () => {
    s3Proxy.setRule(() => 'blackhole');
    // Long request timeouts: only the time budget can end this run.
    const env = envFor({ AWS_REQUEST_TIMEOUT_SECONDS: '600', AWS_SOCKET_TIMEOUT_SECONDS: '600' });
    const { err, ms } = await runHandler(env, 5000);
    expect(err).toBeInstanceOf(BackupRunError);
    expect(ms).toBeLessThan(20_000);
    expect(err!.failures[0]).toMatchObject({ database: 'app', stage: 'timeout' });
    expect(err!.failures[0]!.message).toMatch(/stage "upload"/);
    const alerts = await inbox.receive(1, 10_000);
    expect(alerts.map((a) => a.subject)).toContain('[pg-s3-backup] FAILED app: timeout');
  }, 60_000);

  it('an upload stuck mid-way: the request timeout ends it, the upload is aborted, nothing is left', async () => {
    s3Proxy.setRule((r) => (isUploadPart(r) && /[?&]partNumber=2(&|$)/.test(r.url) ? 'blackhole' : 'pass'));
    const env = envFor({ PG_DUMP_BIN: writeFakePgDump(scripts, 'printf PGDMP; head -c 12000000 /dev/urandom') });
    const { err, ms } = await runHandler(env, 600_000);
    expect(ms).toBeLessThan(30_000);
    expect(err!.failures[0]).toMatchObject({ database: 'app', stage: 'upload' });
    expect(err!.failures[0]!.message).toMatch(/TimeoutError|timed out/i);
    expect(err!.failures[0]!.hint).toMatch(/did not answer/);
    expect(await listKeys(svc.clients, svc.bucket, env.BACKUP_PREFIX)).toEqual([]);
    expect(await listMultipartUploads(svc.clients, svc.bucket)).toEqual([]);
    const [alert] = await inbox.receive(1, 10_000);
    expect(alert!.message).toMatch(/multipart upload was aborted/);
  }, 60_000);

  it('an upload stuck mid-way with long request timeouts: the budget ends it (upload.done() settles), aborted', async () => {
    s3Proxy.setRule((r) => (isUploadPart(r) && /[?&]partNumber=2(&|$)/.test(r.url) ? 'blackhole' : 'pass'));
    const env = envFor({
      PG_DUMP_BIN: writeFakePgDump(scripts, 'printf PGDMP; head -c 12000000 /dev/urandom'),
      AWS_REQUEST_TIMEOUT_SECONDS: '600',
      AWS_SOCKET_TIMEOUT_SECONDS: '600',
    });
    const { err, ms } = await runHandler(env, 6000);
    expect(ms).toBeLessThan(25_000);
    expect(err!.failures[0]).toMatchObject({ database: 'app', stage: 'timeout' });
    // The cause named is S3, not "more memory".
    expect(err!.failures[0]!.hint).toMatch(/S3 stopped accepting data/);
    expect(await listKeys(svc.clients, svc.bucket, env.BACKUP_PREFIX)).toEqual([]);
    expect(await listMultipartUploads(svc.clients, svc.bucket)).toEqual([]);
  }, 60_000);

  it('SNS black-holed: each alert is bounded, and the next database is still backed up', async () => {
    snsProxy.setRule(() => 'blackhole');
    const env = envFor({ DATABASES: 'ghost,app' });
    const { err, ms } = await runHandler(env, 600_000);
    expect(ms).toBeLessThan(30_000);
    expect(err!.failures).toEqual([expect.objectContaining({ database: 'ghost', stage: 'connect' })]);
    const keys = await listKeys(svc.clients, svc.bucket, env.BACKUP_PREFIX);
    expect(keys.filter((k) => k.startsWith(`${env.BACKUP_PREFIX}app/`) && k.endsWith('.dump.json'))).toHaveLength(1);
    expect(snsProxy.log.length).toBeGreaterThanOrEqual(1);
  }, 60_000);

  it('Secrets Manager black-holed: the budget ends the secret stage, with an alert', async () => {
    smProxy.setRule(() => 'blackhole');
    const env = envFor({ DATABASES: 'app', AWS_REQUEST_TIMEOUT_SECONDS: '600', AWS_SOCKET_TIMEOUT_SECONDS: '600' });
    const { err, ms } = await runHandler(env, 5000);
    expect(ms).toBeLessThan(20_000);
    expect(err!.failures[0]).toMatchObject({ database: 'app', stage: 'timeout' });
    expect(err!.failures[0]!.hint).toMatch(/Secrets Manager did not answer/);
    const alerts = await inbox.receive(1, 10_000);
    expect(alerts.map((a) => a.subject)).toContain('[pg-s3-backup] FAILED app: timeout');
  }, 60_000);

  describe('the CLI', () => {
    function cliEnv(extra: Record<string, string> = {}): Record<string, string> {
      const env = { ...svc.env, ...envFor(), ...extra };
      delete (env as Record<string, string | undefined>).DB_SECRET_ID;
      return { ...env, DATABASE_URL: svc.env.DATABASE_URL!, AWS_ENDPOINT_URL_S3: s3Proxy.endpoint };
    }

    it('S3 black-holed: RUN_TIMEOUT_SECONDS ends `run` (exit 1) with an alert', async () => {
      s3Proxy.setRule(() => 'blackhole');
      const env = cliEnv({ RUN_TIMEOUT_SECONDS: '3', AWS_REQUEST_TIMEOUT_SECONDS: '600', AWS_SOCKET_TIMEOUT_SECONDS: '600' });
      const run = await runCliBounded(['backup'], env, 45_000);
      expect(run.code).toBe(1);
      expect(run.ms).toBeLessThan(40_000);
      const result = jsonLines(run.stdout).find((e) => e.event === 'result') as { failures: { stage: string; message: string }[] } | undefined;
      expect(result?.failures[0]).toMatchObject({ stage: 'timeout', message: expect.stringMatching(/RUN_TIMEOUT_SECONDS/) });
      const alerts = await inbox.receive(1, 10_000);
      expect(alerts.map((a) => a.subject)).toContain('[pg-s3-backup] FAILED app: timeout');
    }, 60_000);

    it('a table held in ACCESS EXCLUSIVE: pg_dump gives up after PG_LOCK_WAIT_TIMEOUT, the hint names the lock', async () => {
      const holder = new pg.Client({ connectionString: svc.pg.urlFor('app') });
      await holder.connect();
      try {
        await holder.query('begin; lock table orders in access exclusive mode');
        const run = await runCliBounded(['backup'], cliEnv({ PG_LOCK_WAIT_TIMEOUT: '2' }), 45_000);
        expect(run.code).toBe(1);
        const result = jsonLines(run.stdout).find((e) => e.event === 'result') as { failures: { stage: string; message: string; hint: string }[] } | undefined;
        expect(result?.failures[0]).toMatchObject({ stage: 'dump', message: expect.stringMatching(/lock/i), hint: expect.stringMatching(/holds a lock/) });
        expect(await listMultipartUploads(svc.clients, svc.bucket)).toEqual([]);
        // No pg_dump is left waiting on the lock.
        // Not through `holder`: inside its transaction pg_stat_activity is a frozen snapshot.
        const left = await svc.pg.query<{ n: number }>("select count(*)::int as n from pg_stat_activity where application_name = 'pg-s3-backup'");
        expect(left[0]!.n).toBe(0);
      } finally {
        await holder.query('rollback').catch(() => {});
        await holder.end();
      }
    }, 60_000);

    it('pg_dump stops writing: the stall watchdog stops it, aborts, and says so', async () => {
      const pidFile = join(scripts, `stall-${n}.pid`);
      const bin = writeFakePgDump(scripts, `echo $$ > ${pidFile}; printf PGDMP; head -c 6000000 /dev/urandom; exec sleep 60`);
      try {
        const run = await runCliBounded(['backup'], cliEnv({ PG_DUMP_BIN: bin, DUMP_STALL_TIMEOUT_SECONDS: '2' }), 45_000);
        expect(run.code).toBe(1);
        const result = jsonLines(run.stdout).find((e) => e.event === 'result') as { failures: { stage: string; message: string; hint: string }[] } | undefined;
        expect(result?.failures[0]).toMatchObject({ stage: 'dump', message: expect.stringMatching(/wrote no data for 2 s/), hint: expect.stringMatching(/stopped sending data/) });
        expect(await listMultipartUploads(svc.clients, svc.bucket)).toEqual([]);
        expect(processAlive(Number(readFileSync(pidFile, 'utf8')))).toBe(false);
      } finally {
        killIfAlive(pidFile);
      }
    }, 60_000);
  });
});

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function killIfAlive(pidFile: string): void {
  try {
    process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL');
  } catch {
    // Gone already, or never started.
  }
}
