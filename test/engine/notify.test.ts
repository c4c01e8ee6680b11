import { describe, expect, it } from 'vitest';
import { DumpError, TimeBudgetError, UploadError } from '../../engine/errors.ts';
import { formatFailure, formatSuccess, MAX_SUBJECT_LENGTH, subjectText } from '../../engine/notify.ts';
import { redact } from '../../engine/observability.ts';
import { NASTY_PASSWORD } from '../support/postgres.ts';

const times = { startedAt: new Date('2026-03-09T02:00:00Z'), failedAt: new Date('2026-03-09T02:01:30Z') };
const r = (t: string) => redact(t, [NASTY_PASSWORD]);

describe('alerts', () => {
  it('subject: prefix, database and stage; ASCII, at most 100 characters', () => {
    const m = formatFailure({ database: 'app', stage: 'upload', error: new UploadError('boom'), ...times, redact: r });
    expect(m.subject).toBe('[pg-s3-backup] FAILED app: upload');
    const long = formatFailure({ database: `données ${'x'.repeat(200)} 数据库`, stage: 'dump', error: new Error('x'), ...times, redact: r });
    expect(long.subject.length).toBeLessThanOrEqual(MAX_SUBJECT_LENGTH);
    expect(long.subject).toMatch(/^\[pg-s3-backup\] FAILED donnees x+$/);
    expect(subjectText('a\nb\u0007c')).toBe('a?b?c');
  });

  it('body: stage, error, hint, exit code and signal, stderr tail redacted, key, request id and times', () => {
    const error = new DumpError('pg_dump failed: exit code 1', {
      hint: 'Read the messages.',
      outcome: { exitCode: 1, signal: null, stderrTail: ['pg_dump: error: connection failed', `password=${NASTY_PASSWORD}`] },
    });
    const m = formatFailure({ database: 'app', stage: 'dump', error, key: 'p/app/k.dump', bucket: 'b', requestId: 'req-1', ...times, redact: r });
    expect(m.body).toContain('FAILED at stage "dump"');
    expect(m.body).toContain('Error: DumpError: pg_dump failed: exit code 1');
    expect(m.body).toContain('What to do: Read the messages.');
    expect(m.body).toContain('Exit: exit code 1 (pg_dump reported an error) (code 1, signal none)');
    expect(m.body).toContain('  pg_dump: error: connection failed');
    expect(m.body).toContain('password=***');
    expect(m.body).not.toContain(NASTY_PASSWORD);
    expect(m.body).toContain('Key attempted: s3://b/p/app/k.dump');
    expect(m.body).toContain('Request id: req-1');
    expect(m.body).toContain('Started: 2026-03-09T02:00:00.000Z');
    expect(m.body).toContain('after 90 s');
  });

  it('a timeout says how far it got', () => {
    const m = formatFailure({ database: 'app', stage: 'timeout', error: new TimeBudgetError('stopped', { bytesWritten: 1234, elapsedMs: 840_000 }), ...times, redact: r });
    expect(m.body).toContain('Bytes written before stopping: 1234; elapsed: 840 s');
  });

  it('success notice lists each backup', () => {
    const m = formatSuccess([{ database: 'app', key: 'k', bytes: 10, sha256: 'ab', durationMs: 2000 }], ['old'], 'b');
    expect(m.subject).toBe('[pg-s3-backup] OK app');
    expect(m.body).toContain('s3://b/k (10 bytes, 2 s, sha256 ab)');
    expect(m.body).toContain('Pruned 1 object(s).');
  });
});

describe('redact', () => {
  it('replaces the secret and its URL-encoded form', () => {
    expect(redact(`a ${NASTY_PASSWORD} b ${encodeURIComponent(NASTY_PASSWORD)} c`, [NASTY_PASSWORD])).toBe('a *** b *** c');
  });
});
