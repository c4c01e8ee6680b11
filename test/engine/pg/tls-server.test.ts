/**
 * TLS against a PostgreSQL server whose certificate comes from a private test CA and names only
 * `localhost`: verify-full passes with that CA, and fails with another CA and under another host
 * name (127.0.0.1, the same server) — for the backup's connect stage (node-postgres) and pg_dump,
 * and for restore and verify (node-postgres and pg_restore), all through engine/pg. verify-ca
 * checks the chain only, as libpq does.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryServerInfo } from '../../../engine/pg/client.ts';
import { connectionFor, parseTargetUrl, withConnectionDefaults, type PgConnection } from '../../../engine/pg/connection.ts';
import { libpqEnv } from '../../../engine/pg/env.ts';
import { pgDumpArgs } from '../../../engine/pg/pg-dump.ts';
import { startTool, type SpawnFn } from '../../../engine/pg/process.ts';
import { resolvePgTool } from '../../../engine/pg/tools.ts';
import type { SslMode } from '../../../engine/config.ts';
import { pgRestoreInto } from '../../../engine/restore/pg-restore.ts';
import { restoreBackup } from '../../../engine/restore/restore.ts';
import { verifyBackup } from '../../../engine/restore/verify.ts';
import type { Manifest } from '../../../engine/store/manifest.ts';
import type { DbCredentials } from '../../../engine/pg/connection.ts';
import { ensureLayer } from '../../support/layer.ts';
import { startPostgres, type TestPostgres } from '../../support/postgres.ts';
import { makeTestCertificates, type TestCertificates } from '../../support/tls.ts';

let certs: TestCertificates;
let pgsrv: TestPostgres;
let layer: string;
let dir: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pgs3b-tls-test-'));
  certs = await makeTestCertificates();
  [pgsrv, layer] = await Promise.all([startPostgres({ postgresFlags: certs.postgresFlags }), ensureLayer()]);
  await pgsrv.query('CREATE DATABASE app');
  await pgsrv.query("CREATE TABLE t (id int PRIMARY KEY, s text); INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 100) g", [], 'app');
}, 180_000);
afterAll(async () => {
  await pgsrv?.stop();
  certs?.remove();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const tools = (tool: 'pg_dump' | 'pg_restore') => resolvePgTool(tool, { layerRoots: [layer] });

/** The backup's connection (a secret's settings with DB_SSLMODE / DB_SSLROOTCERT). */
function backupConn(host: string, sslrootcert: string, sslMode: SslMode = 'verify-full'): PgConnection {
  const creds: DbCredentials = { host, port: pgsrv.port, username: pgsrv.user, password: pgsrv.password, dbname: 'app', sslmode: undefined, sslrootcert: undefined };
  return connectionFor(creds, 'app', { sslMode, sslRootCert: sslrootcert, inLambda: false, connectTimeoutSeconds: 10 });
}

/** An operator's --target-url / --scratch-url, as the CLI reads it. */
function targetConn(host: string, database: string, sslrootcert: string, sslmode: SslMode = 'verify-full'): PgConnection {
  const url = `postgresql://${encodeURIComponent(pgsrv.user)}:${encodeURIComponent(pgsrv.password)}@${host}:${pgsrv.port}/${database}?sslmode=${sslmode}&sslrootcert=${encodeURIComponent(sslrootcert)}`;
  return withConnectionDefaults(parseTargetUrl(url), { connectTimeoutSeconds: 10 });
}

async function pgDump(conn: PgConnection): Promise<{ exitCode: number | null; stdout: Buffer; stderr: string }> {
  const run = startTool(spawn as SpawnFn, tools('pg_dump'), pgDumpArgs('zstd:1'), { env: libpqEnv(conn) });
  const out: Buffer[] = [];
  run.child.stdout?.on('data', (c: Buffer) => out.push(c));
  const outcome = await run.finished;
  return { exitCode: outcome.exitCode, stdout: Buffer.concat(out), stderr: outcome.stderrTail.join('\n') };
}

describe('backup: the connect stage (node-postgres)', () => {
  it('verify-full passes with the CA that signed the server certificate', async () => {
    expect((await queryServerInfo(backupConn('localhost', certs.caFile))).versionNum).toBeGreaterThanOrEqual(180000);
  });
  it('verify-full fails with another CA', async () => {
    await expect(queryServerInfo(backupConn('localhost', certs.wrongCaFile))).rejects.toThrow(/certificate/i);
  });
  it('verify-full fails when the host name is not the certificate\'s', async () => {
    await expect(queryServerInfo(backupConn('127.0.0.1', certs.caFile))).rejects.toThrow(/IP: 127\.0\.0\.1 is not in the cert's list|does not match/i);
  });
  it('verify-ca checks the chain only', async () => {
    expect((await queryServerInfo(backupConn('127.0.0.1', certs.caFile, 'verify-ca'))).versionNum).toBeGreaterThanOrEqual(180000);
    await expect(queryServerInfo(backupConn('127.0.0.1', certs.wrongCaFile, 'verify-ca'))).rejects.toThrow(/certificate/i);
  });
});

let dump: Buffer;

describe('backup: pg_dump', () => {
  it('verify-full passes with the CA that signed the server certificate', async () => {
    const run = await pgDump(backupConn('localhost', certs.caFile));
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stdout.subarray(0, 5).toString()).toBe('PGDMP');
    dump = run.stdout;
  });
  it('verify-full fails with another CA', async () => {
    const run = await pgDump(backupConn('localhost', certs.wrongCaFile));
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toMatch(/certificate verify failed/);
  });
  it('verify-full fails when the host name is not the certificate\'s', async () => {
    const run = await pgDump(backupConn('127.0.0.1', certs.caFile));
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toMatch(/server certificate for "localhost".* does not match host name "127\.0\.0\.1"/);
  });
  it('verify-ca checks the chain only', async () => {
    expect((await pgDump(backupConn('127.0.0.1', certs.caFile, 'verify-ca'))).exitCode).toBe(0);
  });
});

describe('restore and verify', () => {
  const key = 'pg-s3-backup/app/2026/01/01/app-20260101T020000000Z.dump';
  const deps = () => {
    const manifest: Manifest = {
      formatVersion: 1, database: 'app', key, bytes: dump.length, sha256: createHash('sha256').update(dump).digest('hex'), compression: 'zstd:1',
      pgDumpVersion: '18', serverVersion: '18', startedAt: '2026-01-01T02:00:00.000Z', finishedAt: '2026-01-01T02:00:01.000Z', durationMs: 1000, reason: 'test', toolVersion: '0.1.0',
    };
    return { source: { readManifest: async () => manifest, openDump: async () => Readable.from([dump]) }, pgRestore: tools('pg_restore'), tempDir: dir };
  };
  const rows = async (database: string) => Number((await pgsrv.query<{ n: string }>('SELECT count(*) AS n FROM t', [], database))[0]!.n);
  const databases = async () => (await pgsrv.query<{ datname: string }>('SELECT datname FROM pg_database')).map((r) => r.datname);

  it('restore: verify-full passes with the CA that signed the server certificate (sslrootcert in the URL)', async () => {
    const result = await restoreBackup(deps(), { key, target: targetConn('localhost', 'restored_full', certs.caFile), create: true });
    expect(result.status).toBe('restored');
    expect(await rows('restored_full')).toBe(100);
  });
  it('restore: verify-full fails with another CA, and creates nothing', async () => {
    await expect(restoreBackup(deps(), { key, target: targetConn('localhost', 'restored_wrong_ca', certs.wrongCaFile), create: true })).rejects.toThrow(/certificate/i);
    expect(await databases()).not.toContain('restored_wrong_ca');
  });
  it('restore: verify-full fails when the host name is not the certificate\'s, and creates nothing', async () => {
    await expect(restoreBackup(deps(), { key, target: targetConn('127.0.0.1', 'restored_wrong_host', certs.caFile), create: true })).rejects.toThrow(/IP: 127\.0\.0\.1 is not in the cert's list|does not match/i);
    expect(await databases()).not.toContain('restored_wrong_host');
  });
  it('restore: verify-ca checks the chain only (not the host name)', async () => {
    const result = await restoreBackup(deps(), { key, target: targetConn('127.0.0.1', 'restored_ca', certs.caFile, 'verify-ca'), create: true });
    expect(result.status).toBe('restored');
    expect(await rows('restored_ca')).toBe(100);
  });
  it('pg_restore itself refuses another CA and another host name', async () => {
    await pgsrv.query('CREATE DATABASE restored_tool');
    const file = join(dir, 'app.dump');
    writeFileSync(file, dump);
    const into = (conn: PgConnection) => pgRestoreInto(deps(), conn, 'restored_tool', file, {});
    await expect(into(targetConn('localhost', 'restored_tool', certs.wrongCaFile))).rejects.toThrow(/certificate verify failed/);
    await expect(into(targetConn('127.0.0.1', 'restored_tool', certs.caFile))).rejects.toThrow(/does not match host name "127\.0\.0\.1"/);
    await into(targetConn('localhost', 'restored_tool', certs.caFile));
    expect(await rows('restored_tool')).toBe(100);
  });
  it('verify: passes with the CA, reports the failure with another CA or host name', async () => {
    const ok = await verifyBackup(deps(), { key, scratch: targetConn('localhost', 'postgres', certs.caFile) });
    expect(ok.problems).toEqual([]);
    expect(ok.totalRows).toBe(100);
    for (const scratch of [targetConn('localhost', 'postgres', certs.wrongCaFile), targetConn('127.0.0.1', 'postgres', certs.caFile)]) {
      const failed = await verifyBackup(deps(), { key, scratch });
      expect(failed.status).toBe('failed');
      expect(failed.problems.map((p) => p.message).join('\n')).toMatch(/certificate|does not match|not in the cert's list/i);
    }
    expect((await databases()).filter((d) => d.startsWith('pgs3b_verify_'))).toEqual([]);
  });
});
