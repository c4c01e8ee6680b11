/**
 * Fail closed: whatever goes wrong (pg_dump's exit, a signal, garbage, no binary, credentials,
 * network, time budget, SNS), nothing lands at the final key, no multipart upload is left,
 * nothing is pruned, an alert says what happened, and the password never shows.
 */
import { SNSClient } from '@aws-sdk/client-sns';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildDumpKey, manifestKeyFor } from '../../../engine/store/backup-key.ts';
import { runBackup } from '../../../engine/backup/backup.ts';
import { loadConfig } from '../../../engine/config.ts';
import { createDeps } from '../../../engine/deps.ts';
import { BackupRunError, ConfigError, RequestError } from '../../../engine/errors.ts';
import { createHandler } from '../../../lambda/handler.ts';
import { MANIFEST_FORMAT_VERSION } from '../../../engine/store/manifest.ts';
import { createLogger, noMetrics, type Log, lambdaDeps } from '../../../lambda/powertools.ts';
import { awsEnv, createAlertInbox, createSecret, listKeys, listMultipartUploads, putText, type AlertInbox, type TestClients } from '../../support/aws.ts';
import { createDatabase, writeFakePgDump } from '../../support/fixtures.ts';
import type { TestAws } from '../../support/moto.ts';
import { NASTY_PASSWORD, type TestPostgres } from '../../support/postgres.ts';
import { startBackupServices } from '../../support/services.ts';

const MiB = 1024 * 1024;
const context = { awsRequestId: 'req-failures', getRemainingTimeInMillis: () => 600_000 };

interface Captured {
  log: Log;
  lines: string[];
}
function captureLog(): Captured {
  const lines: string[] = [];
  const rec = (level: string) => (message: string, attributes?: Record<string, unknown>) => lines.push(JSON.stringify({ level, message, ...attributes }));
  return { lines, log: { debug: rec('DEBUG'), info: rec('INFO'), warn: rec('WARN'), error: rec('ERROR') } };
}

describe('fail closed', () => {
  let pgsrv: TestPostgres;
  let aws: TestAws;
  let c: TestClients;
  let layer: string;
  let bucket: string;
  let secretArn: string;
  let inbox: AlertInbox;
  let scripts: string;
  let n = 0;

  beforeAll(async () => {
    ({ pg: pgsrv, aws, layer, c, bucket } = await startBackupServices());
    inbox = await createAlertInbox(c);
    secretArn = await createSecret(c, { host: pgsrv.host, port: pgsrv.port, username: pgsrv.user, password: pgsrv.password, dbname: 'app' });
    await createDatabase(pgsrv, 'app');
    await pgsrv.query('create table t (id int); insert into t select generate_series(1, 1000)', [], 'app');
    scripts = mkdtempSync(join(tmpdir(), 'pgs3b-fake-'));
    Object.assign(process.env, awsEnv(aws.endpoint));
  });
  afterAll(async () => {
    await Promise.all([pgsrv?.stop(), aws?.stop()]);
    if (scripts) rmSync(scripts, { recursive: true, force: true });
  });

  const fakePgDump = (body: string): string => writeFakePgDump(scripts, body);

  /** A fresh prefix holding three old complete backups of `app`: a failed run must leave exactly these. */
  async function seededPrefix(): Promise<{ prefix: string; seeded: string[] }> {
    const prefix = `run-${++n}/`;
    const seeded: string[] = [];
    for (let day = 1; day <= 3; day++) {
      const at = new Date(Date.UTC(2020, 0, day));
      const key = buildDumpKey(prefix, 'app', at);
      await putText(c, bucket, key, 'PGDMP old');
      await putText(c, bucket, manifestKeyFor(key), JSON.stringify({
        formatVersion: MANIFEST_FORMAT_VERSION, database: 'app', key, bytes: 9, sha256: '0'.repeat(64), compression: 'zstd:1', pgDumpVersion: '18.6',
        serverVersion: '18.4', startedAt: at.toISOString(), finishedAt: at.toISOString(), durationMs: 1, reason: 'seed', toolVersion: '0.1.0',
      }));
      seeded.push(key, manifestKeyFor(key));
    }
    return { prefix, seeded: seeded.sort() };
  }

  function envFor(prefix: string, extra: Record<string, string> = {}): Record<string, string> {
    return {
      ...awsEnv(aws.endpoint),
      DB_SECRET_ID: secretArn,
      BACKUP_BUCKET: bucket,
      BACKUP_PREFIX: prefix,
      ALERT_TOPIC_ARN: inbox.topicArn,
      PG_DUMP_BIN: join(layer, 'bin', 'pg_dump'),
      RETENTION_COUNT: '1',
      ...extra,
    };
  }

  /** Runs the handler, expects it to throw, and checks the fail-closed invariants. */
  async function expectFailClosed(env: Record<string, string>, seeded: string[], event: unknown = {}, extra: { sns?: SNSClient; remainingMs?: number } = {}) {
    const cap = captureLog();
    const handler = createHandler(env, { log: cap.log, metrics: noMetrics, partSize: 5 * MiB, ...(extra.sns ? { sns: extra.sns } : {}) });
    const err = await handler(event, { ...context, getRemainingTimeInMillis: () => extra.remainingMs ?? 600_000 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BackupRunError);
    expect(await listKeys(c, bucket, env.BACKUP_PREFIX)).toEqual(seeded);
    expect(await listMultipartUploads(c, bucket)).toEqual([]);
    return { err: err as BackupRunError, lines: cap.lines };
  }

  it('pg_dump exits 1 after writing 12 MB: multipart aborted, no object, alert with exit code and stderr, nothing pruned', async () => {
    const { prefix, seeded } = await seededPrefix();
    const bin = fakePgDump(`printf PGDMP; head -c 12000000 /dev/zero; echo 'pg_dump: error: query failed: ERROR:  canceling statement due to conflict with recovery' >&2; exit 1`);
    const { err } = await expectFailClosed(envFor(prefix, { PG_DUMP_BIN: bin }), seeded);
    expect(err.failures).toEqual([expect.objectContaining({ database: 'app', stage: 'dump' })]);
    const [alert] = await inbox.receive(1);
    expect(alert!.subject).toBe('[pg-s3-backup] FAILED app: dump');
    expect(alert!.message).toContain('exit code 1');
    expect(alert!.message).toContain('canceling statement due to conflict with recovery');
    expect(alert!.message).toContain(`Key attempted: s3://${bucket}/${prefix}app/`);
    expect(alert!.message).toContain('Request id: req-failures');
  });

  it('pg_dump killed by a signal mid-dump: aborted, alert names the signal', async () => {
    const { prefix, seeded } = await seededPrefix();
    const bin = fakePgDump(`printf PGDMP; head -c 7000000 /dev/zero; kill -KILL $$`);
    const { err } = await expectFailClosed(envFor(prefix, { PG_DUMP_BIN: bin }), seeded);
    expect(err.failures[0]!.stage).toBe('dump');
    const [alert] = await inbox.receive(1);
    expect(alert!.message).toMatch(/killed by signal SIGKILL/);
  });

  it.each([
    ['output that is not a custom-format archive', `head -c 6000000 /dev/zero; exit 0`, /does not start with the custom-format signature PGDMP/],
    ['no output at all', `exit 0`, /wrote 0 byte/],
    ['a missing binary', '', /cannot start .*ENOENT|cannot find/],
  ])('pg_dump with %s fails at stage dump', async (_label, body, pattern) => {
    const { prefix, seeded } = await seededPrefix();
    const bin = body === '' ? join(scripts, 'nowhere', 'pg_dump') : fakePgDump(body);
    const { err } = await expectFailClosed(envFor(prefix, { PG_DUMP_BIN: bin }), seeded);
    expect(err.failures[0]!.stage).toBe('dump');
    expect(err.failures[0]!.message).toMatch(pattern);
  });

  it('wrong password: stage connect, with a hint about the secret', async () => {
    const { prefix, seeded } = await seededPrefix();
    const wrong = await createSecret(c, { host: pgsrv.host, port: pgsrv.port, username: pgsrv.user, password: `${NASTY_PASSWORD}-wrong`, dbname: 'app' });
    const { err, lines } = await expectFailClosed(envFor(prefix, { DB_SECRET_ID: wrong }), seeded);
    expect(err.failures[0]).toMatchObject({ stage: 'connect', hint: expect.stringMatching(/password/) });
    expect(err.failures[0]!.message).toMatch(/password authentication failed/);
    expect(lines.join('\n')).not.toContain(NASTY_PASSWORD);
  });

  it('unreachable host: fails at stage connect within the connect timeout', async () => {
    // A server that accepts connections and never answers: the worst case for a hanging backup.
    const sockets: Socket[] = [];
    const blackhole: Server = createServer((s) => sockets.push(s));
    await new Promise<void>((r) => blackhole.listen(0, '127.0.0.1', r));
    const port = (blackhole.address() as { port: number }).port;
    try {
      const { prefix, seeded } = await seededPrefix();
      const secret = await createSecret(c, { host: '127.0.0.1', port, username: 'u', password: NASTY_PASSWORD, dbname: 'app' });
      const t0 = Date.now();
      const { err } = await expectFailClosed(envFor(prefix, { DB_SECRET_ID: secret, PG_CONNECT_TIMEOUT: '2' }), seeded);
      expect(Date.now() - t0).toBeLessThan(10_000);
      expect(err.failures[0]!.stage).toBe('connect');
      expect(err.failures[0]!.message).toMatch(/timeout/i);
    } finally {
      for (const s of sockets) s.destroy();
      blackhole.close();
    }
  });

  it.each([
    ['missing', null, /could not read secret .*ResourceNotFoundException/],
    ['not JSON', 'host=db password=x', /is not JSON/],
    ['missing fields', { host: 'db', username: 'u' }, /missing or has invalid fields: password/],
  ])('secret %s: stage secret, alert, nothing written', async (_label, value, pattern) => {
    const { prefix, seeded } = await seededPrefix();
    const id = value === null ? 'arn:aws:secretsmanager:us-east-1:123456789012:secret:does-not-exist-AbCdEf' : await createSecret(c, value);
    const { err } = await expectFailClosed(envFor(prefix, { DB_SECRET_ID: id, DATABASES: 'app' }), seeded);
    expect(err.failures[0]!.stage).toBe('secret');
    expect(err.failures[0]!.message).toMatch(pattern);
    const alerts = await inbox.receive(1);
    expect(alerts.at(-1)!.subject).toBe('[pg-s3-backup] FAILED app: secret');
  });

  it('SNS unavailable: the failure is logged and the handler still throws the original error', async () => {
    const { prefix, seeded } = await seededPrefix();
    const deadSns = new SNSClient({ region: 'us-east-1', endpoint: 'http://127.0.0.1:9', maxAttempts: 1, credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
    const { err, lines } = await expectFailClosed(envFor(prefix, { PG_DUMP_BIN: join(scripts, 'nowhere', 'pg_dump') }), seeded, {}, { sns: deadSns });
    expect(err.failures[0]!.stage).toBe('dump');
    const snsLine = lines.map((l) => JSON.parse(l) as { message: string; alert?: string }).find((l) => l.message === 'could not publish to SNS');
    expect(snsLine?.alert).toContain('FAILED at stage "dump"');
  });

  it('time budget: stops the dump, aborts the upload and alerts with bytes, elapsed time and what to do', async () => {
    const { prefix, seeded } = await seededPrefix();
    const bin = fakePgDump(`printf PGDMP; while :; do head -c 1000000 /dev/zero; sleep 0.1; done`);
    const t0 = Date.now();
    const { err } = await expectFailClosed(envFor(prefix, { PG_DUMP_BIN: bin, TIME_MARGIN_SECONDS: '1' }), seeded, {}, { remainingMs: 4000 });
    expect(Date.now() - t0).toBeLessThan(8000);
    expect(err.failures[0]!.stage).toBe('timeout');
    const alerts = await inbox.receive(1);
    const alert = alerts.at(-1)!;
    expect(alert.subject).toBe('[pg-s3-backup] FAILED app: timeout');
    expect(alert.message).toMatch(/Bytes written before stopping: [1-9]\d+/);
    expect(alert.message).toMatch(/more memory/);
    expect(alert.message).toMatch(/host mode/);
  });

  it('one failing database does not stop the others; the run fails and only the good one is pruned', async () => {
    const { prefix, seeded } = await seededPrefix();
    const env = envFor(prefix);
    const cap = captureLog();
    const config = loadConfig(env);
    const deps = createDeps(config, lambdaDeps({ s3: c.s3, secrets: c.secrets, sns: c.sns, log: cap.log, metrics: noMetrics }));
    // Seed an old backup for the missing database too: it must survive.
    const ghostKey = buildDumpKey(prefix, 'ghost', new Date(Date.UTC(2020, 0, 1)));
    await putText(c, bucket, ghostKey, 'PGDMP');
    await putText(c, bucket, manifestKeyFor(ghostKey), '{}');
    const res = await runBackup({ databases: ['ghost', 'app'] }, config, deps);
    expect(res.status).toBe('failed');
    expect(res.failures).toEqual([expect.objectContaining({ database: 'ghost', stage: 'connect' })]);
    expect(res.backups.map((b) => b.database)).toEqual(['app']);
    expect([...res.pruned].sort()).toEqual(seeded);
    const left = await listKeys(c, bucket, prefix);
    expect(left).toEqual([res.backups[0]!.key, manifestKeyFor(res.backups[0]!.key), ghostKey, manifestKeyFor(ghostKey)].sort());
    const alerts = await inbox.receive(1);
    expect(alerts.at(-1)!.subject).toBe('[pg-s3-backup] FAILED ghost: connect');
  });

  it('a password full of special characters never appears in logs, alerts or errors, even when pg_dump prints it', async () => {
    const { prefix, seeded } = await seededPrefix();
    const bin = fakePgDump(`printf PGDMP; echo "pg_dump: error: connection to server failed: password=$PGPASSWORD" >&2; exit 1`);
    const writes: string[] = [];
    // Powertools writes INFO to stdout and ERROR to stderr: capture both.
    const capture = (chunk: string | Uint8Array) => {
      writes.push(String(chunk));
      return true;
    };
    const spies = [vi.spyOn(process.stdout, 'write').mockImplementation(capture), vi.spyOn(process.stderr, 'write').mockImplementation(capture)];
    let err: unknown;
    try {
      err = await createHandler(envFor(prefix, { PG_DUMP_BIN: bin }), { log: createLogger(), partSize: 5 * MiB })({}, context).catch((e: unknown) => e);
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
    expect(err).toBeInstanceOf(BackupRunError);
    expect(writes.join('')).toMatch(/"message":"backup failed"/);
    expect(await listKeys(c, bucket, prefix)).toEqual(seeded);
    const alerts = await inbox.receive(1);
    const alert = alerts.at(-1)!;
    expect(alert.message).toContain('password=***');
    const everything = [writes.join(''), alert.subject, alert.message, (err as Error).message, JSON.stringify(err), String((err as Error).stack)].join('\n');
    expect(everything).not.toContain(NASTY_PASSWORD);
    expect(everything).not.toContain(encodeURIComponent(NASTY_PASSWORD));
  });

  it('rejects a malformed on-demand event, naming the field', async () => {
    const { prefix } = await seededPrefix();
    const handler = createHandler(envFor(prefix), { log: captureLog().log, metrics: noMetrics });
    await expect(handler({ databases: 'app' }, context)).rejects.toThrow(RequestError);
    await expect(handler({ databases: ['app'], dryrun: true }, context)).rejects.toThrow(/unknown field\(s\) "dryrun"/);
    await expect(handler({ reason: 5 }, context)).rejects.toThrow(/reason/);
  });

  it('without DATABASES, a secret failure alerts for all databases', async () => {
    const { prefix, seeded } = await seededPrefix();
    await expectFailClosed(envFor(prefix, { DB_SECRET_ID: 'no-such-secret' }), seeded);
    const [alert] = await inbox.receive(1);
    expect(alert!.subject).toBe('[pg-s3-backup] FAILED (all): secret');
  });

  it('a configuration error alerts (when the topic is set) and throws, naming the variable', async () => {
    const env = { ...envFor('cfg/'), RETENTION_COUNT: 'seven' };
    await expect(createHandler(env, { log: captureLog().log, sns: c.sns })({}, context)).rejects.toThrow(ConfigError);
    const alerts = await inbox.receive(1);
    expect(alerts.at(-1)!.subject).toBe('[pg-s3-backup] FAILED (all): config');
    expect(alerts.at(-1)!.message).toContain('RETENTION_COUNT must be a whole number');
  });
});
