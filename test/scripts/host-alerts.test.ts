/**
 * Host mode reports every failure (scripts/backup.sh as cron runs it, against PostgreSQL, moto's
 * SNS read back through SQS, and a local HTTP server standing in for healthchecks.io): a held lock
 * and a configuration error publish an alert and fail the heartbeat; a good run pings it; a
 * heartbeat that never answers cannot hold the run past HEARTBEAT_TIMEOUT_SECONDS.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAlertInbox, type AlertInbox } from '../support/aws.ts';
import { REPO_ROOT } from '../support/layer.ts';
import { NASTY_PASSWORD } from '../support/postgres.ts';
import { startCliServices, type CliServices } from '../support/cli.ts';

const SCRIPT = join(REPO_ROOT, 'scripts', 'backup.sh');
let svc: CliServices;
let inbox: AlertInbox;
let dir: string;

/** healthchecks.io on loopback: records each ping; paths under /hang/ are accepted and never answered. */
interface Pings {
  readonly url: string;
  readonly received: { method: string; path: string; body: string }[];
  stop(): Promise<void>;
}
let pings: Pings;

async function startPingServer(): Promise<Pings> {
  const received: Pings['received'] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.on('data', (b: Buffer) => (body += b.toString()));
    req.on('end', () => {
      received.push({ method: req.method ?? '', path: req.url ?? '', body });
      if ((req.url ?? '').startsWith('/hang/')) return;
      res.writeHead(200, { 'content-type': 'text/plain' }).end('OK');
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

beforeAll(async () => {
  svc = await startCliServices();
  inbox = await createAlertInbox(svc.clients);
  pings = await startPingServer();
  dir = mkdtempSync(join(tmpdir(), 'pgs3b-host-alerts-'));
});
afterAll(async () => {
  await pings?.stop();
  await svc?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The private env file cron would use: every setting, the alert topic and heartbeat included. */
function envFile(name: string, extra: Record<string, string> = {}): string {
  const path = join(dir, name);
  const settings: Record<string, string> = { ...svc.env, ALERT_TOPIC_ARN: inbox.topicArn, PG_S3_BACKUP_SYSLOG: 'false', ...extra };
  const keep = /^(AWS_|BACKUP_|DATABASE_URL$|DATABASES$|RETENTION_COUNT$|S3_FORCE_PATH_STYLE$|ALERT_TOPIC_ARN$|HEARTBEAT_)/;
  writeFileSync(path, `${Object.entries(settings).filter(([k]) => keep.test(k)).map(([k, v]) => `${k}=${v}`).join('\n')}\n`);
  chmodSync(path, 0o600);
  return path;
}

function cronEnv(): Record<string, string> {
  return { PATH: process.env.PATH ?? '', HOME: dir, PG_S3_BACKUP_LOCK_FILE: join(dir, 'backup.lock'), PG_S3_BACKUP_SYSLOG: 'false' };
}

async function runScript(args: string[], env: Record<string, string> = cronEnv()): Promise<{ code: number | null; out: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [SCRIPT, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out, ms: Date.now() - t0 }));
  });
}

/** Resolves once another process holds `file`'s flock, within 10 s. */
async function lockHeld(file: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const probe = await new Promise<number | null>((r) => spawn('flock', ['-n', file, 'true'], { stdio: 'ignore' }).once('exit', r));
    if (probe !== 0) return;
    if (Date.now() > deadline) throw new Error(`nobody took the lock on ${file} within 10 s`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const pingsFor = (id: string) => pings.received.filter((p) => p.path.startsWith(`/ping/${id}`));

describe('host mode alerts every failure and keeps a heartbeat', () => {
  it('a held lock publishes an alert and pings <HEARTBEAT_URL>/fail', async () => {
    const holder: ChildProcess = spawn('flock', [join(dir, 'backup.lock'), 'sleep', '60'], { stdio: 'ignore', detached: true });
    const gone = new Promise((r) => holder.once('exit', r));
    try {
      await lockHeld(join(dir, 'backup.lock'));
      const run = await runScript(['--env-file', envFile('lock.env', { HEARTBEAT_URL: `${pings.url}/ping/lock` })]);
      expect(run.code, run.out).toBe(1);
      expect(run.out).toMatch(/another backup is still running/);
      const alerts = await inbox.receive(1, 20_000);
      expect(alerts, run.out).toHaveLength(1);
      expect(alerts[0]!.subject).toMatch(/FAILED host backup on .*: lock/);
      expect(alerts[0]!.message).toMatch(/another backup is still running/);
      expect(pingsFor('lock').map((p) => `${p.method} ${p.path}`)).toEqual(['POST /ping/lock/fail']);
    } finally {
      process.kill(-holder.pid!, 'SIGTERM');
      await gone;
    }
  });

  it('a configuration error publishes an alert naming the variable and pings /fail; the password never shows', async () => {
    const run = await runScript(['--env-file', envFile('bad.env', { RETENTION_COUNT: 'seven', HEARTBEAT_URL: `${pings.url}/ping/config` })]);
    expect(run.code, run.out).toBe(1);
    expect(run.out).toMatch(/RETENTION_COUNT must be a whole number/);
    const alerts = await inbox.receive(1, 20_000);
    expect(alerts, run.out).toHaveLength(1);
    expect(alerts[0]!.subject).toMatch(/FAILED \(all\): config/);
    expect(alerts[0]!.message).toMatch(/RETENTION_COUNT must be a whole number/);
    expect(pingsFor('config').map((p) => p.path)).toEqual(['/ping/config/fail']);
    for (const text of [run.out, alerts[0]!.message, ...pingsFor('config').map((p) => p.body)]) {
      expect(text).not.toContain(NASTY_PASSWORD);
      expect(text).not.toContain(encodeURIComponent(NASTY_PASSWORD));
    }
  });

  it('a good run pings HEARTBEAT_URL (no /fail) with its summary; a failed one pings /fail', async () => {
    const ok = await runScript(['--env-file', envFile('ok.env', { HEARTBEAT_URL: `${pings.url}/ping/ok/` })]);
    expect(ok.code, ok.out).toBe(0);
    expect(pingsFor('ok').map((p) => `${p.method} ${p.path}`)).toEqual(['POST /ping/ok']);
    expect(pingsFor('ok')[0]!.body).toMatch(/^backup succeeded/);

    const failed = await runScript(['--env-file', envFile('nodb.env', { DATABASES: 'no_such_database', HEARTBEAT_URL: `${pings.url}/ping/nodb` })]);
    expect(failed.code).toBe(1);
    expect(pingsFor('nodb').map((p) => p.path)).toEqual(['/ping/nodb/fail']);
    expect(pingsFor('nodb')[0]!.body).toMatch(/FAILED no_such_database/);
    await inbox.receive(1, 20_000);
  });

  it('a heartbeat that never answers holds the run no longer than HEARTBEAT_TIMEOUT_SECONDS', async () => {
    const run = await runScript(['--env-file', envFile('hang.env', { HEARTBEAT_URL: `${pings.url}/hang/x`, HEARTBEAT_TIMEOUT_SECONDS: '2' })]);
    expect(run.code, run.out).toBe(0);
    const line = run.out.split('\n').find((l) => l.includes('"event":"heartbeat.failed"'));
    expect(line, run.out).toMatch(/"error":"no answer within 2 s \(HEARTBEAT_TIMEOUT_SECONDS\)"/);
    expect(pings.received.some((p) => p.path === '/hang/x')).toBe(true);
    // A backup of the sample database takes seconds; an unbounded ping would hang until killed.
    expect(run.ms).toBeLessThan(60_000);
  });
});
