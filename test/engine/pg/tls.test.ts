/**
 * The TLS defaults: in Lambda, verify-full against the runtime's CA bundle joined with the RDS
 * bundle shipped beside the handler (the runtime's may lack RDS's 2024 CAs); elsewhere libpq's.
 */
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../engine/config.ts';
import { connectionFor } from '../../../engine/pg/connection.ts';
import { LAMBDA_CA_BUNDLE, lambdaCaSources, nodePgSsl, prepareTls, RDS_CA_BUNDLE_FILE, writeCaBundle } from '../../../engine/pg/tls.ts';
import type { DbCredentials } from '../../../engine/pg/connection.ts';
import { rdsCaBundlePem } from '../../../infra/rds-ca-bundle.mjs';

const dir = mkdtempSync(join(tmpdir(), 'pgs3b-tls-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  // The Lambda default is written where the function writes it; this test leaves it behind nowhere.
  rmSync(dirname(LAMBDA_CA_BUNDLE), { recursive: true, force: true });
});

const creds: DbCredentials = { host: 'db.cluster-x.eu-west-3.rds.amazonaws.com', port: 5432, username: 'backup', password: 'pw', dbname: 'app', sslmode: undefined, sslrootcert: undefined };
const lambda = { sslMode: undefined, sslRootCert: undefined, inLambda: true, connectTimeoutSeconds: 10 };
const subjects = (pem: string) => [...pem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)].map((m) => new X509Certificate(m[0]).subject);

describe('the Lambda default CA file', () => {
  it('trusts the RDS CAs of 2024 (rds-ca-rsa2048-g1 and its siblings) as well as the runtime bundle', () => {
    const taskRoot = join(dir, 'task');
    mkdirSync(taskRoot);
    writeFileSync(join(taskRoot, RDS_CA_BUNDLE_FILE), rdsCaBundlePem());
    const conn = connectionFor(creds, 'app', lambda);
    expect(conn).toMatchObject({ sslmode: 'verify-full' });
    prepareTls(conn, { LAMBDA_TASK_ROOT: taskRoot });
    const trusted = subjects(readFileSync(conn.sslrootcert!, 'utf8'));
    expect(trusted.some((s) => s.includes('CN=Amazon RDS eu-west-3 Root CA RSA2048 G1'))).toBe(true);
    expect(trusted.some((s) => s.includes('CN=Amazon RDS eu-west-3 Root CA ECC384 G1'))).toBe(true);
    // The runtime's own bundle comes first (Amazon's public CAs, for RDS Proxy and the like).
    expect(lambdaCaSources({ LAMBDA_TASK_ROOT: taskRoot })).toEqual(['/var/runtime/ca-cert.pem', join(taskRoot, RDS_CA_BUNDLE_FILE)]);
  });

  it('is the parts that exist, joined in order', () => {
    const a = join(dir, 'a.pem');
    const b = join(dir, 'b.pem');
    writeFileSync(a, '-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n');
    writeFileSync(b, '# comment\n-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----');
    const target = join(dir, 'out', 'bundle.pem');
    writeCaBundle([a, join(dir, 'missing.pem'), b], target);
    expect(readFileSync(target, 'utf8')).toBe('-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n# comment\n-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n');
    writeCaBundle([join(dir, 'missing.pem')], join(dir, 'none.pem'));
    expect(existsSync(join(dir, 'none.pem'))).toBe(false);
  });
});

describe('node-postgres options from sslmode', () => {
  const base = { ...connectionFor(creds, 'app', { ...lambda, inLambda: false }), sslrootcert: undefined };
  it('verifies the chain only under verify-ca, chain and host name under verify-full, nothing below', () => {
    expect(nodePgSsl({ ...base, sslmode: 'disable' })).toBe(false);
    expect(nodePgSsl({ ...base, sslmode: 'require' })).toEqual({ rejectUnauthorized: false });
    const ca = nodePgSsl({ ...base, sslmode: 'verify-ca', sslrootcert: 'system' });
    expect(ca).toMatchObject({ rejectUnauthorized: true });
    expect((ca as { checkServerIdentity?: unknown }).checkServerIdentity).toBeTypeOf('function');
    const full = nodePgSsl({ ...base, sslmode: 'verify-full', sslrootcert: 'system' });
    expect(full).toEqual({ rejectUnauthorized: true });
  });
});


describe('the default off Lambda', () => {
  const env = { BACKUP_BUCKET: 'backups-bucket', DB_SECRET_ID: 'arn:aws:secretsmanager:eu-west-3:123456789012:secret:db' };
  it('is verify-full against RDS_CA_BUNDLE where a runner ships it (the Fargate image), as in Lambda; the secret and DB_SSLMODE still decide first', () => {
    const fargate = loadConfig({ ...env, RDS_CA_BUNDLE: '/app/rds-ca-bundle.pem', ECS_CONTAINER_METADATA_URI_V4: 'http://169.254.170.2/v4/x' });
    expect(connectionFor(creds, 'app', fargate)).toMatchObject({ sslmode: 'verify-full', sslrootcert: '/app/rds-ca-bundle.pem' });
    expect(connectionFor({ ...creds, sslmode: 'require' }, 'app', fargate)).toMatchObject({ sslmode: 'require', sslrootcert: undefined });
    expect(connectionFor(creds, 'app', loadConfig({ ...env, RDS_CA_BUNDLE: '/app/rds-ca-bundle.pem', DB_SSLMODE: 'verify-ca' }))).toMatchObject({ sslmode: 'verify-ca', sslrootcert: '/app/rds-ca-bundle.pem' });
    // A host without a shipped bundle keeps libpq's default.
    expect(connectionFor(creds, 'app', loadConfig(env))).toMatchObject({ sslmode: 'prefer', sslrootcert: undefined });
  });
});
