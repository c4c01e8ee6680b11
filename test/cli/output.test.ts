/**
 * The CLI's output rules, in-process: progress on a terminal (bytes, rate, ETA) versus one JSON
 * line per event, secrets scrubbed from every line; the pg_restore outcome rules; URL handling.
 */
import { describe, expect, it } from 'vitest';
import { Output } from '../../cli/output.ts';
import { classifyPgRestore } from '../../engine/restore/pg-restore.ts';
import { describeConnection as describeTarget, parseTargetUrl } from '../../engine/pg/connection.ts';
import { libpqEnv as pgEnv } from '../../engine/pg/env.ts';
import { NASTY_PASSWORD } from '../support/postgres.ts';

function sink() {
  let text = '';
  return { write: (s: string) => (text += s), get text() { return text; } };
}

describe('progress output', () => {
  it('on a terminal: one redrawn line with bytes, total, percentage, rate and time left', () => {
    const stdout = sink();
    let now = 0;
    const out = new Output({ stdout, stderr: sink(), tty: true, now: () => now });
    out.progress({ event: 'restore.download.progress', bytes: 0, total: 100 * 1024 * 1024 }, { label: 'downloaded' });
    now = 2000;
    out.progress({ event: 'restore.download.progress', bytes: 20 * 1024 * 1024, total: 100 * 1024 * 1024 }, { label: 'downloaded' });
    expect(stdout.text).toContain('\r\x1b[2Kdownloaded: 20.0 MiB / 100.0 MiB 20%  10.0 MiB/s  ETA 8.0 s');
    now = 10_000;
    out.progress({ event: 'restore.download.progress', bytes: 100 * 1024 * 1024, total: 100 * 1024 * 1024, done: true, ms: 10_000 }, { label: 'downloaded' });
    expect(stdout.text).toMatch(/100%.*done in 10\.0 s\n$/);
    out.progress({ event: 'restore.done', database: 'app', ms: 12 }, { line: 'restored into app' });
    expect(stdout.text.endsWith('done in 10.0 s\nrestored into app\n')).toBe(true);
  });

  it('on a terminal: a streaming dump shows bytes and rate, no time left, and is cleared by the next line', () => {
    const stdout = sink();
    let now = 0;
    const out = new Output({ stdout, stderr: sink(), tty: true, now: () => now });
    out.progress({ event: 'backup.dump.progress', database: 'app', bytes: 1024 * 1024, streaming: true }, { label: 'app: dumped' });
    now = 1000;
    out.progress({ event: 'backup.dump.progress', database: 'app', bytes: 6 * 1024 * 1024, streaming: true }, { label: 'app: dumped' });
    expect(stdout.text.endsWith('\r\x1b[2Kapp: dumped: 6.0 MiB  5.0 MiB/s')).toBe(true);
    out.progress({ event: 'backup.dump.uploaded', database: 'app' }, { line: 'app: uploaded' });
    expect(stdout.text.endsWith('5.0 MiB/s\r\x1b[2Kapp: uploaded\n')).toBe(true);
  });

  it('on a terminal: pg_restore progress as tables done out of the total', () => {
    const stdout = sink();
    const out = new Output({ stdout, stderr: sink(), tty: true, now: () => 0 });
    out.progress({ event: 'restore.progress', database: 'app', tablesDone: 0, tablesTotal: 4 }, { label: 'restoring into app' });
    out.progress({ event: 'restore.progress', database: 'app', tablesDone: 3, tablesTotal: 4, table: 'public.orders', elapsedMs: 1500 }, { label: 'restoring into app' });
    expect(stdout.text.endsWith('\r\x1b[2Krestoring into app: 3/4 tables, public.orders, 1.5 s')).toBe(true);
  });

  it('elsewhere: one JSON line per event with rate and ETA, moving events at most once a second', () => {
    const stdout = sink();
    let now = 0;
    const out = new Output({ stdout, stderr: sink(), tty: false, now: () => now });
    out.progress({ event: 'restore.download.progress', bytes: 0, total: 1000 });
    now = 500;
    out.progress({ event: 'restore.download.progress', bytes: 100, total: 1000 });
    now = 1000;
    out.progress({ event: 'restore.download.progress', bytes: 500, total: 1000 });
    now = 1200;
    out.progress({ event: 'restore.download.progress', bytes: 1000, total: 1000, done: true });
    const lines = stdout.text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => l.bytes)).toEqual([0, 500, 1000]);
    expect(lines[1]).toMatchObject({ event: 'restore.download.progress', bytesPerSecond: 500, etaSeconds: 1, time: '1970-01-01T00:00:01.000Z' });
  });

  it('scrubs registered secrets (raw and URL-encoded) from every stream', () => {
    const stdout = sink();
    const stderr = sink();
    const out = new Output({ stdout, stderr, tty: false });
    out.addSecret(NASTY_PASSWORD);
    out.progress({ event: 'x', detail: `a ${NASTY_PASSWORD} b ${encodeURIComponent(NASTY_PASSWORD)}` });
    out.error({ message: `failed with ${NASTY_PASSWORD}`, stage: 'restore', hint: 'h' });
    for (const t of [stdout.text, stderr.text]) {
      expect(t).not.toContain(NASTY_PASSWORD);
      expect(t).not.toContain(encodeURIComponent(NASTY_PASSWORD));
      expect(t).toContain('***');
    }
  });
});

describe('the output contract (docs/operations.md, "Output")', () => {
  const event = { event: 'x.warned', database: 'app', level: 'warn' as const };

  it('text: warnings and errors on stderr, never a JSON line on stdout; the result as text', () => {
    const stdout = sink();
    const stderr = sink();
    const out = new Output({ stdout, stderr, tty: false });
    out.configure({ format: 'text' });
    out.warn('skipped k: unreadable');
    out.progress(event, { line: 'app: row counts not taken', level: 'warn' });
    out.result({ backups: [] }, 'no backups found');
    out.finish(0);
    expect(stdout.text).toBe('no backups found\n');
    expect(stderr.text).toBe('pg-s3-backup: warning: skipped k: unreadable\npg-s3-backup: warning: app: row counts not taken\n');
  });

  it('json: every line an event, the result last, once; a failure ends with a result line too', () => {
    const stdout = sink();
    const out = new Output({ stdout, stderr: sink(), tty: true });
    out.configure({ format: 'json' });
    out.warn('w');
    out.result({ backups: [1] }, 'text');
    out.finish(0);
    expect(stdout.text.trim().split('\n').map((l) => (JSON.parse(l) as { event: string }).event)).toEqual(['warning', 'result']);

    const failed = sink();
    const f = new Output({ stdout: failed, stderr: sink(), tty: false });
    f.configure({ format: 'json' });
    f.error({ name: 'RestoreError', stage: 'restore', message: 'no such key', hint: 'list' });
    f.finish(1);
    const lines = failed.text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => l.event)).toEqual(['error', 'result']);
    expect(lines[1]).toEqual({ event: 'result', ok: false, exitCode: 1, error: { name: 'RestoreError', stage: 'restore', message: 'no such key', hint: 'list' } });
  });

  it('--quiet drops progress and info events, keeps warnings and the result; --verbose shows every event with its fields', () => {
    const stdout = sink();
    const out = new Output({ stdout, stderr: sink(), tty: false });
    out.configure({ format: 'json', quiet: true });
    out.progress({ event: 'restore.manifest', key: 'k' }, { line: 'backup of app' });
    out.progress(event, { line: 'x', level: 'warn' });
    out.result({}, 'done');
    expect(stdout.text.trim().split('\n').map((l) => (JSON.parse(l) as { event: string }).event)).toEqual(['x.warned', 'result']);

    const verbose = sink();
    const v = new Output({ stdout: verbose, stderr: sink(), tty: true });
    v.configure({ format: 'text', verbose: true });
    v.progress({ event: 'x.capabilities', message: 'store capabilities', profile: 'aws' }, {});
    expect(verbose.text).toBe('store capabilities [x.capabilities] profile=aws\n');
  });

  it('--no-progress: no redrawn line on a terminal, the transfer once it ends; no moving lines in JSON', () => {
    const stdout = sink();
    const out = new Output({ stdout, stderr: sink(), tty: true, now: () => 0 });
    out.configure({ format: 'text', progress: false });
    out.progress({ event: 'restore.download.progress', bytes: 0, total: 10 }, { label: 'downloaded' });
    out.progress({ event: 'restore.download.progress', bytes: 10, total: 10, done: true, ms: 1500 }, { label: 'downloaded' });
    expect(stdout.text).toBe('downloaded: 10 B in 1.5 s\n');
    const json = sink();
    const j = new Output({ stdout: json, stderr: sink(), tty: false, now: () => 0 });
    j.configure({ format: 'json', progress: false });
    j.progress({ event: 'restore.download.progress', bytes: 0, total: 10 });
    j.progress({ event: 'restore.download.progress', bytes: 10, total: 10, done: true, ms: 1500 });
    expect(json.text.trim().split('\n')).toHaveLength(1);
  });
});

describe('pg_restore outcome', () => {
  const harmless = 'pg_restore: error: could not execute query: ERROR:  unrecognized configuration parameter "transaction_timeout"\nCommand was: SET transaction_timeout = 0;\n';
  it('accepts exit 1 when every error is the transaction_timeout one', () => {
    const r = classifyPgRestore(1, `${harmless}${harmless}${harmless}pg_restore: warning: errors ignored on restore: 1\n`);
    expect(r.ok).toBe(true);
    expect(r.tolerated[0]).toMatch(/older than PostgreSQL 17/);
  });
  it('refuses any other error, alone or beside the harmless one, and a missing summary', () => {
    const other = 'pg_restore: error: could not execute query: ERROR:  relation "x" already exists\n';
    expect(classifyPgRestore(1, `${harmless}${other}pg_restore: warning: errors ignored on restore: 2\n`)).toMatchObject({ ok: false, errors: [other.trim().replace('pg_restore: error: ', '')] });
    expect(classifyPgRestore(1, harmless).ok).toBe(false);
    expect(classifyPgRestore(1, `${harmless}pg_restore: warning: errors ignored on restore: 2\n`).ok).toBe(false);
    expect(classifyPgRestore(1, '').errors).toEqual(['pg_restore exited 1']);
    expect(classifyPgRestore(0, '').ok).toBe(true);
  });
});

describe('target URLs', () => {
  const url = `postgresql://admin:${encodeURIComponent(NASTY_PASSWORD)}@db.internal:6543/my%20db?sslmode=verify-full`;
  it('parses user, password, host, port, database and libpq parameters into PG* variables, never argv', () => {
    const t = parseTargetUrl(url);
    expect(t).toMatchObject({ host: 'db.internal', port: 6543, user: 'admin', password: NASTY_PASSWORD, database: 'my db', sslmode: 'verify-full' });
    const env = pgEnv(t, { PATH: '/bin', PGHOST: 'elsewhere', PGSERVICE: 'x' });
    expect(env).toEqual({ PATH: '/bin', PGHOST: 'db.internal', PGPORT: '6543', PGUSER: 'admin', PGPASSWORD: NASTY_PASSWORD, PGDATABASE: 'my db', PGSSLMODE: 'verify-full' });
  });
  it('redacts the password in every description', () => {
    expect(describeTarget(parseTargetUrl(url))).toBe('postgresql://admin:***@db.internal:6543/my%20db');
  });
  it('rejects other schemes, unknown parameters and a missing database without echoing the URL', () => {
    expect(() => parseTargetUrl('mysql://u:secretpw@h/db')).toThrow(/must start with postgresql:\/\//);
    expect(() => parseTargetUrl('postgresql://u:secretpw@h/db?foo=1')).toThrow(/unsupported connection parameter "foo"/);
    expect(() => parseTargetUrl('postgresql://u:secretpw@h')).toThrow(/names no database/);
    try {
      parseTargetUrl('postgresql://u:secretpw@h/db?foo=1');
    } catch (err) {
      expect((err as Error).message).not.toContain('secretpw');
    }
  });
});
