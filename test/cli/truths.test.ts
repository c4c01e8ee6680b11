/**
 * Small truths of the CLI, against the real program, PostgreSQL and moto: the dump's progress
 * reaches the output, a usage error never echoes a URL's password, and `list` shows a hostile
 * database name escaped rather than letting it drive the terminal.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDumpKey, manifestKeyFor } from '../../engine/store/backup-key.ts';
import { MANIFEST_FORMAT_VERSION } from '../../engine/store/manifest.ts';
import { printable } from '../../cli/output.ts';
import { putText } from '../support/aws.ts';
import { runCli, startCliServices, type CliServices, listedOf } from '../support/cli.ts';

let svc: CliServices;

beforeAll(async () => {
  svc = await startCliServices();
});
afterAll(async () => {
  await svc?.stop();
});

describe('the CLI tells the truth, and only that', () => {
  it('run shows the dump progress (bytes streamed so far) as pg_dump streams', async () => {
    const run = await runCli(['backup', '--reason', 'progress'], svc.env);
    expect(run.code, run.stderr).toBe(0);
    const dump = run.events.filter((e) => e.event === 'backup.dump.progress');
    expect(dump.length, run.stdout).toBeGreaterThan(0);
    expect(dump[0]).toMatchObject({ database: 'app', streaming: true, bytes: expect.any(Number) });
    expect(dump[0]!.bytes as number).toBeGreaterThan(0);
  });

  it('a usage error does not echo the password of a URL given as --option=URL', async () => {
    const password = 's3cret-in-url';
    for (const args of [
      ['restore', '--latest', `--scratch-url=postgresql://admin:${password}@db.internal:5432/postgres`, '--target-url', 'postgresql://u@h/db'],
      ['verify', '--latest', `--scratch-url=postgresql://admin:${password}@db.internal:5432/postgres`, '--bogus'],
      ['list', `--database=postgresql://admin:${password}@h/db`, 'extra-arg'],
    ]) {
      const run = await runCli(args, svc.env);
      expect(run.code, run.stderr).toBe(2);
      expect(run.stderr.length).toBeGreaterThan(0);
      expect(`${run.stdout}${run.stderr}`).not.toContain(password);
    }
  });

  it('list escapes control characters of a hostile database name (text table), JSON keeps the exact name', async () => {
    const hostile = 'evil\x1b[2J\x1b[31m\rname\u202efdp.exe\x07';
    const at = new Date(Date.UTC(2026, 0, 2, 3));
    const key = buildDumpKey(svc.env.BACKUP_PREFIX ?? 'pg-s3-backup/', hostile, at);
    await putText(svc.clients, svc.bucket, key, 'PGDMP');
    await putText(svc.clients, svc.bucket, manifestKeyFor(key), JSON.stringify({
      formatVersion: MANIFEST_FORMAT_VERSION, database: hostile, key, bytes: 5, sha256: 'a'.repeat(64), compression: 'zstd:1', pgDumpVersion: '18.1',
      serverVersion: '18.1', startedAt: at.toISOString(), finishedAt: at.toISOString(), durationMs: 1, reason: 'test', toolVersion: '0.1.0',
    }));
    const plain = await runCli(['list'], svc.env);
    expect(plain.code, plain.stderr).toBe(0);
    // No control character at all reaches the terminal, and the name shows escaped.
    // eslint-disable-next-line no-control-regex -- looking for control characters is the point
    expect(plain.stdout).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]/);
    expect(plain.stdout).toContain('evil\\x1b[2J\\x1b[31m\\x0dname\\u{202e}fdp.exe\\x07');
    const json = await runCli(['list', '--json', '--database', hostile], svc.env);
    expect((listedOf<{ database: string }>(json))[0]!.database).toBe(hostile);
  });

  it('printable leaves ordinary names alone and escapes backslashes so an escape cannot be faked', () => {
    expect(printable('app_données-2026')).toBe('app_données-2026');
    expect(printable('a\\x1b')).toBe('a\\\\x1b');
    expect(printable('\u0085\u2028\ufeff')).toBe('\\x85\\u{2028}\\u{feff}');
  });
});
