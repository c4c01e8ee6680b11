/**
 * pg_restore gets the same allow-listed environment as pg_dump (engine/pg/env.ts): a stand-in
 * pg_restore writes the environment it was given, and the secrets of the operator's shell (AWS
 * keys, DATABASE_URL) and stray PG* variables must not be in it.
 */
import { createHash } from 'node:crypto';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, expect, it } from 'vitest';
import { parseTargetUrl } from '../../../engine/pg/connection.ts';
import { restoreBackup } from '../../../engine/restore/restore.ts';
import type { Manifest } from '../../../engine/store/manifest.ts';

const dir = mkdtempSync(join(tmpdir(), 'pgs3b-restore-env-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('runs pg_restore (--list and the restore) with libpq variables, PATH and HOME only', async () => {
  const envDir = join(dir, 'envs');
  const fake = join(dir, 'pg_restore');
  // One file per invocation: the environment, NUL-separated, as /proc/<pid>/environ has it.
  writeFileSync(fake, `#!/bin/sh\nmkdir -p '${envDir}'\nenv -0 > '${envDir}'/"$$"\nexit 0\n`);
  chmodSync(fake, 0o755);

  const dump = Buffer.from('PGDMP stand-in archive');
  const key = 'pg-s3-backup/app/2026/01/01/app-20260101T020000000Z.dump';
  const manifest: Manifest = {
    formatVersion: 1, database: 'app', key, bytes: dump.length, sha256: createHash('sha256').update(dump).digest('hex'), compression: 'zstd:1',
    pgDumpVersion: '18.1', serverVersion: '18.1', startedAt: '2026-01-01T02:00:00.000Z', finishedAt: '2026-01-01T02:00:01.000Z', durationMs: 1000, reason: 'test', toolVersion: '0.1.0',
  };
  const parent = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: dir,
    AWS_ACCESS_KEY_ID: 'AKIAEXAMPLELEAK',
    AWS_SECRET_ACCESS_KEY: 'leaked-aws-secret',
    AWS_SESSION_TOKEN: 'leaked-session-token',
    DATABASE_URL: 'postgresql://prod:leaked-prod-password@prod.internal/app',
    PGSERVICE: 'elsewhere',
    PGHOSTADDR: '10.9.9.9',
  };
  const target = parseTargetUrl('postgresql://restorer:target-pw@127.0.0.1:5999/app_copy?sslmode=disable');
  await restoreBackup(
    {
      source: { readManifest: async () => manifest, openDump: async () => Readable.from([dump]) },
      pgRestore: { file: fake, args: [] },
      tempDir: dir,
      env: parent,
    },
    // --data-only: no SQL on the target before pg_restore runs (nothing listens on 5999).
    { key, target, dataOnly: true },
  );

  const envs = readdirSync(envDir).map((f) => Object.fromEntries(readFileSync(join(envDir, f), 'utf8').split('\0').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])));
  expect(envs).toHaveLength(2); // pg_restore --list, then the data pass
  for (const env of envs) {
    const text = JSON.stringify(env);
    for (const leak of ['AKIAEXAMPLELEAK', 'leaked-aws-secret', 'leaked-session-token', 'leaked-prod-password', 'elsewhere', '10.9.9.9']) expect(text).not.toContain(leak);
    const allowed = /^(PATH|HOME|PWD|SHLVL|_|PG(HOST|PORT|USER|PASSWORD|DATABASE|SSLMODE|SSLROOTCERT|CONNECT_TIMEOUT|APPNAME|PASSFILE))$/;
    // (PWD, SHLVL and _ are the stand-in's own shell's.)
    expect(Object.keys(env).filter((k) => !allowed.test(k))).toEqual([]);
  }
  const restore = envs.find((e) => e.PGHOST !== undefined)!;
  expect(restore).toMatchObject({ PGHOST: '127.0.0.1', PGPORT: '5999', PGUSER: 'restorer', PGPASSWORD: 'target-pw', PGDATABASE: 'app_copy', PGSSLMODE: 'disable' });
});
