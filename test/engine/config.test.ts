import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULTS, loadConfig, toEnvironment } from '../../engine/config.ts';
import { parseConfig } from '../../infra/config.ts';
import { ConfigError } from '../../engine/errors.ts';
import { fetchCredentials } from '../../engine/pg/credentials.ts';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { REPO_ROOT } from '../support/layer.ts';

const base = { DB_SECRET_ID: 'prod/db', BACKUP_BUCKET: 'my-backups' };

describe('loadConfig', () => {
  it('applies the documented defaults and freezes the result', () => {
    const c = loadConfig(base);
    expect(c).toMatchObject({
      credentials: { kind: 'secret', secretId: 'prod/db' },
      databases: undefined,
      bucket: 'my-backups',
      prefix: 'pg-s3-backup/',
      retentionCount: 7,
      alertTopicArn: undefined,
      compression: 'zstd:1',
      pgDumpBin: undefined,
      forcePathStyle: false,
      notifyOnSuccess: false,
      backupGlobals: false,
      connectTimeoutSeconds: DEFAULTS.connectTimeoutSeconds,
      timeMarginMs: DEFAULTS.timeMarginSeconds * 1000,
      inLambda: false,
    });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('reads every variable', () => {
    const c = loadConfig({
      ...base,
      DATABASES: 'app, billing ,app',
      BACKUP_PREFIX: 'backups/pg/',
      RETENTION_COUNT: '14',
      ALERT_TOPIC_ARN: 'arn:aws:sns:eu-west-3:123456789012:alerts',
      PG_DUMP_COMPRESSION: 'gzip:level=6',
      PG_DUMP_BIN: '/usr/lib/postgresql/18/bin/pg_dump',
      S3_FORCE_PATH_STYLE: 'true',
      NOTIFY_ON_SUCCESS: 'TRUE',
      BACKUP_GLOBALS: '1',
      DB_SSLMODE: 'require',
      PG_CONNECT_TIMEOUT: '5',
      TIME_MARGIN_SECONDS: '45',
      AWS_LAMBDA_FUNCTION_NAME: 'fn',
    });
    expect(c).toMatchObject({
      databases: ['app', 'billing'],
      prefix: 'backups/pg/',
      retentionCount: 14,
      alertTopicArn: 'arn:aws:sns:eu-west-3:123456789012:alerts',
      compression: 'gzip:level=6',
      forcePathStyle: true,
      notifyOnSuccess: true,
      backupGlobals: true,
      sslMode: 'require',
      connectTimeoutSeconds: 5,
      timeMarginMs: 45_000,
      inLambda: true,
    });
  });

  it.each([
    [{}, /DB_SECRET_ID is required/],
    [{ ...base, DATABASE_URL: 'postgresql://u:p@h/db' }, /both set/],
    [{ DATABASE_URL: 'postgresql://u:p@h/db', BACKUP_BUCKET: 'b-1', AWS_LAMBDA_FUNCTION_NAME: 'fn' }, /DATABASE_URL is for the CLI and host mode only/],
    [{ DATABASE_URL: 'mysql://h/db', BACKUP_BUCKET: 'b-1' }, /DATABASE_URL must be a URL/],
    [{ DB_SECRET_ID: 'x' }, /BACKUP_BUCKET is required/],
    [{ ...base, BACKUP_BUCKET: 'Bad_Bucket' }, /BACKUP_BUCKET must be an S3 bucket name/],
    [{ ...base, BACKUP_PREFIX: 'backups' }, /BACKUP_PREFIX must be empty or a key prefix ending with "\/"/],
    [{ ...base, BACKUP_PREFIX: '/abs/' }, /BACKUP_PREFIX/],
    [{ ...base, DATABASES: 'a,,b' }, /DATABASES must be a comma-separated list/],
    [{ ...base, RETENTION_COUNT: '0' }, /RETENTION_COUNT must be a whole number from 1/],
    [{ ...base, RETENTION_COUNT: '7.5' }, /RETENTION_COUNT/],
    [{ ...base, ALERT_TOPIC_ARN: 'alerts' }, /ALERT_TOPIC_ARN must be an SNS topic ARN/],
    [{ ...base, PG_DUMP_COMPRESSION: 'zstd:1; rm -rf /' }, /PG_DUMP_COMPRESSION must be a pg_dump --compress spec/],
    [{ ...base, S3_FORCE_PATH_STYLE: 'yes' }, /S3_FORCE_PATH_STYLE must be "true" or "false"/],
    [{ ...base, DB_SSLMODE: 'verify' }, /DB_SSLMODE must be one of/],
    [{ ...base, PG_CONNECT_TIMEOUT: 'ten' }, /PG_CONNECT_TIMEOUT/],
  ])('rejects %j naming the variable', (env, pattern) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(pattern);
  });

  it('never echoes DATABASE_URL (it holds the password)', () => {
    try {
      loadConfig({ DATABASE_URL: 'postgresql://u:s3cr3t-pw@h/db', BACKUP_BUCKET: 'b-1', AWS_LAMBDA_FUNCTION_NAME: 'fn' });
      expect.unreachable();
    } catch (err) {
      expect((err as Error).message).not.toContain('s3cr3t-pw');
    }
  });

  it('accepts an empty prefix and DATABASE_URL outside Lambda', () => {
    const c = loadConfig({ DATABASE_URL: 'postgres://u:p@h:5433/db', BACKUP_BUCKET: 'b-1', BACKUP_PREFIX: '' });
    expect(c.prefix).toBe('');
    expect(c.credentials).toEqual({ kind: 'url', url: 'postgres://u:p@h:5433/db' });
  });

  it('lets commands that only read the bucket go without credentials, and fails them at the secret stage if used', async () => {
    const c = loadConfig({ BACKUP_BUCKET: 'b-1' }, { requireCredentials: false });
    expect(c.credentials).toEqual({ kind: 'none' });
    expect(() => loadConfig({ BACKUP_BUCKET: 'b-1' })).toThrow(/DB_SECRET_ID is required/);
    await expect(fetchCredentials(c.credentials, {} as SecretsManagerClient)).rejects.toThrow(/DB_SECRET_ID is required/);
  });
});

describe('one schema for the engine and the CDK app', () => {
  it('reports every problem at once, each naming its variable', () => {
    const message = (() => {
      try {
        loadConfig({ BACKUP_BUCKET: 'Bad_Bucket', RETENTION_COUNT: 'x', PG_DUMP_COMPRESSION: 'fast', DB_SSLMODE: 'on' });
      } catch (err) {
        return (err as Error).message;
      }
      return '';
    })();
    for (const name of ['DB_SECRET_ID', 'BACKUP_BUCKET', 'RETENTION_COUNT', 'PG_DUMP_COMPRESSION', 'DB_SSLMODE']) expect(message).toContain(name);
  });

  // Each value is judged by the same field schema on both sides: the function's environment and the CDK context.
  it.each([
    ['BACKUP_PREFIX', 'backupPrefix', 'a b/', false],
    ['BACKUP_PREFIX', 'backupPrefix', 'pg/nightly/', true],
    ['PG_DUMP_COMPRESSION', 'pgDumpCompression', '6', true],
    ['PG_DUMP_COMPRESSION', 'pgDumpCompression', 'gzip:level=6', true],
    ['PG_DUMP_COMPRESSION', 'pgDumpCompression', 'zstd:1; rm -rf /', false],
    ['RETENTION_COUNT', 'retentionCount', '1001', false],
    ['RETENTION_COUNT', 'retentionCount', '30', true],
  ] as const)('%s / %s = %j: valid in both or in neither', (variable, contextKey, value, valid) => {
    const engineOk = (() => {
      try {
        loadConfig({ ...base, [variable]: value });
        return true;
      } catch {
        return false;
      }
    })();
    const infraOk = (() => {
      try {
        parseConfig({ dbSecretArn: 'arn:aws:secretsmanager:eu-west-3:123456789012:secret:prod/db-AbCdEf', [contextKey]: value });
        return true;
      } catch {
        return false;
      }
    })();
    expect([engineOk, infraOk]).toEqual([valid, valid]);
  });

  it('toEnvironment writes the function environment through the same schema, naming a bad variable', () => {
    expect(toEnvironment({ RETENTION_COUNT: 7, NOTIFY_ON_SUCCESS: false, DATABASES: ['app', 'billing'] })).toEqual({ RETENTION_COUNT: '7', NOTIFY_ON_SUCCESS: 'false', DATABASES: 'app,billing' });
    expect(() => toEnvironment({ PG_DUMP_COMPRESSION: 'fast' })).toThrow(/PG_DUMP_COMPRESSION must be/);
    expect(toEnvironment({ BACKUP_BUCKET: '${Token[TOKEN.1]}' }, { isDeployTimeValue: (v) => v.startsWith('${Token') })).toEqual({ BACKUP_BUCKET: '${Token[TOKEN.1]}' });
  });
});

describe('docs/configuration.md and the schema agree', () => {
  it('every range the variable table states is the range loadConfig accepts (RETENTION_COUNT said 1–100000, the code took 1000)', () => {
    const doc = readFileSync(join(REPO_ROOT, 'docs', 'configuration.md'), 'utf8');
    const ranges = [...doc.matchAll(/^\| `([A-Z_0-9]+)` \| ([^|]*?)\b(\d+)–(\d+)\b/gm)].map((m) => ({ name: m[1]!, min: Number(m[3]), max: Number(m[4]) }));
    expect(ranges.map((r) => r.name)).toEqual(expect.arrayContaining(['RETENTION_COUNT', 'STORAGE_MAX_PARTS', 'HEARTBEAT_TIMEOUT_SECONDS']));
    for (const { name, min, max } of ranges) {
      const accepts = (v: number) => {
        try {
          loadConfig({ ...base, [name]: String(v) });
          return true;
        } catch (err) {
          if (!(err instanceof ConfigError)) throw err;
          return false;
        }
      };
      expect({ name, min: accepts(min), max: accepts(max), below: accepts(min - 1), above: accepts(max + 1) }).toEqual({ name, min: true, max: true, below: false, above: false });
    }
  });
});
