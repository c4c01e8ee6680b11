import { describe, expect, it } from 'vitest';
import { ServerVersionError } from '../../../engine/errors.ts';
import { connectionFor } from '../../../engine/pg/connection.ts';
import { libpqEnv as pgEnv } from '../../../engine/pg/env.ts';
import { checkServerVersion, parsePgDumpVersion, pgDumpArgs, serverMajor } from '../../../engine/pg/pg-dump.ts';
import { describeExit, TailBuffer } from '../../../engine/pg/process.ts';
import { LAMBDA_CA_BUNDLE } from '../../../engine/pg/tls.ts';
import type { DbCredentials } from '../../../engine/pg/connection.ts';
import { NASTY_PASSWORD } from '../../support/postgres.ts';

const creds: DbCredentials = { host: 'db.example', port: 5432, username: 'backup', password: NASTY_PASSWORD, dbname: 'app', sslmode: undefined, sslrootcert: undefined };
const local = { sslMode: undefined, sslRootCert: undefined, inLambda: false, connectTimeoutSeconds: 10 };

describe('connection settings', () => {
  it('defaults to verify-full against the Lambda CA bundle in AWS, prefer elsewhere', () => {
    expect(connectionFor(creds, 'app', { ...local, inLambda: true })).toMatchObject({ sslmode: 'verify-full', sslrootcert: LAMBDA_CA_BUNDLE });
    expect(connectionFor(creds, 'app', local)).toMatchObject({ sslmode: 'prefer', sslrootcert: undefined });
  });
  it('lets DB_SSLMODE override the secret, and the secret override the default', () => {
    expect(connectionFor({ ...creds, sslmode: 'require' }, 'app', { ...local, inLambda: true })).toMatchObject({ sslmode: 'require', sslrootcert: undefined });
    expect(connectionFor({ ...creds, sslmode: 'require' }, 'app', { ...local, sslMode: 'disable' })).toMatchObject({ sslmode: 'disable' });
  });
});

describe('pg_dump environment and arguments', () => {
  it('passes only libpq variables and PATH; the password only in PGPASSWORD', () => {
    const env = pgEnv(connectionFor(creds, 'my db', { ...local, inLambda: true }), { PATH: '/usr/bin', AWS_SECRET_ACCESS_KEY: 'x', HOME: '/root', PGSERVICE: 'evil' });
    expect(env).toEqual({
      PGHOST: 'db.example', PGPORT: '5432', PGUSER: 'backup', PGPASSWORD: NASTY_PASSWORD, PGDATABASE: 'my db', PGSSLMODE: 'verify-full',
      PGSSLROOTCERT: LAMBDA_CA_BUNDLE, PGCONNECT_TIMEOUT: '10', PGAPPNAME: 'pg-s3-backup', PGPASSFILE: '/dev/null', PATH: '/usr/bin',
    });
  });
  it('asks for the custom format on stdout without fsync, as an argument list', () => {
    expect(pgDumpArgs('zstd:1')).toEqual(['--format=custom', '--compress=zstd:1', '--no-sync']);
    expect(pgDumpArgs('zstd:1').join(' ')).not.toContain(NASTY_PASSWORD);
  });
});

describe('versions', () => {
  it('parses pg_dump --version and server_version_num', () => {
    expect(parsePgDumpVersion('pg_dump (PostgreSQL) 18.6 (Debian 18.6-3)\n')).toEqual({ text: '18.6', major: 18 });
    expect(parsePgDumpVersion('pg_dump (PostgreSQL) 19devel')).toEqual({ text: '19', major: 19 });
    expect(parsePgDumpVersion('bash: pg_dump: not found')).toBeUndefined();
    expect(serverMajor(180004)).toBe(18);
    expect(serverMajor(150018)).toBe(15);
  });
  it('refuses a server newer than pg_dump, with what to do', () => {
    expect(() => checkServerVersion({ versionNum: 190001, text: '19.1' }, { text: '18.6', major: 18 })).toThrow(ServerVersionError);
    expect(() => checkServerVersion({ versionNum: 190001, text: '19.1' }, { text: '18.6', major: 18 })).toThrow(/server version 19.1 is newer than pg_dump 18.6/);
    try {
      checkServerVersion({ versionNum: 190001, text: '19.1' }, { text: '18.6', major: 18 });
    } catch (err) {
      expect((err as ServerVersionError).stage).toBe('connect');
      expect((err as ServerVersionError).hint).toMatch(/Rebuild the pg_dump layer/);
    }
  });
  it('accepts same, older and 9.2+ servers, refuses older than 9.2', () => {
    for (const versionNum of [180004, 150018, 130000, 90624]) expect(() => checkServerVersion({ versionNum, text: String(versionNum) }, { text: '18.6', major: 18 })).not.toThrow();
    expect(() => checkServerVersion({ versionNum: 90124, text: '9.1.24' }, { text: '18.6', major: 18 })).toThrow(/older than 9.2/);
  });
});

describe('process reporting', () => {
  it('explains exit codes and signals', () => {
    expect(describeExit(1, null)).toBe('exit code 1 (pg_dump reported an error)');
    expect(describeExit(null, 'SIGKILL')).toMatch(/killed by signal SIGKILL \(killed \(out of memory/);
    expect(describeExit(137, null)).toMatch(/signal 9/);
    expect(describeExit(127, null)).toMatch(/not found/);
  });
  it('keeps the last 20 non-empty lines, across chunk boundaries', () => {
    const t = new TailBuffer();
    for (let i = 1; i <= 30; i++) t.push(`line ${i}\n`.slice(0, 3) + `line ${i}\n`.slice(3));
    t.push('partial ');
    t.push('end');
    const lines = t.get();
    expect(lines).toHaveLength(20);
    expect(lines[0]).toBe('line 12');
    expect(lines.at(-1)).toBe('partial end');
  });
});
