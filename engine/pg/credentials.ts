/**
 * Database credentials: the Secrets Manager secret in RDS format, fetched at every run so that
 * rotation just works, or DATABASE_URL (CLI and host mode). Error messages never quote the
 * secret's content. Beside the connection it feeds (connection.ts): what to log in with is part
 * of reaching PostgreSQL.
 */
import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { z } from 'zod';
import { MISSING_CREDENTIALS, SSL_MODES, type CredentialSource } from '../config.ts';
import { ConfigError, SecretError, type PgS3BackupError } from '../errors.ts';
import { parsePgUrl, type DbCredentials, type PgUrl } from './connection.ts';

export type { DbCredentials } from './connection.ts';

/** RDS's secret JSON (`engine`, `dbClusterIdentifier`… may be there too and are ignored). */
const RdsSecretSchema = z.object({
  host: z.string().min(1),
  port: z.union([z.number().int(), z.string().regex(/^\d+$/).transform(Number)]).pipe(z.number().int().min(1).max(65535)).optional(),
  username: z.string().min(1),
  password: z.string().min(1),
  dbname: z.string().min(1).optional(),
  sslmode: z.enum(SSL_MODES).optional(),
  sslrootcert: z.string().min(1).optional(),
});

/** `signal`: the run's (time budget, interruption), which cancels the Secrets Manager request. */
export async function fetchCredentials(source: CredentialSource, secrets: SecretsManagerClient, signal?: AbortSignal): Promise<DbCredentials> {
  switch (source.kind) {
    case 'url':
      return credentialsFromUrl(source.url);
    case 'secret':
      return fetchSecret(secrets, source.secretId, signal);
    case 'none':
      throw new ConfigError(MISSING_CREDENTIALS);
  }
}

export async function fetchSecret(client: SecretsManagerClient, secretId: string, signal?: AbortSignal): Promise<DbCredentials> {
  let text: string | undefined;
  try {
    const res = await client.send(new GetSecretValueCommand({ SecretId: secretId }), signal ? { abortSignal: signal } : {});
    text = res.SecretString;
  } catch (err) {
    const name = (err as { name?: string }).name ?? 'Error';
    const hint =
      name === 'ResourceNotFoundException'
        ? 'Check DB_SECRET_ID (ARN or name) and the region.'
        : name === 'AccessDeniedException'
          ? "Grant the function secretsmanager:GetSecretValue on the secret (and kms:Decrypt on its key)."
          : 'Check that Secrets Manager is reachable from the function (VPC endpoint or NAT).';
    throw new SecretError(`could not read secret ${secretId}: ${name}: ${(err as Error).message}`, { cause: err, hint });
  }
  return parseSecret(secretId, text);
}

/** Pure: the secret's text → credentials. The error names the fields at fault, never their values. */
export function parseSecret(secretId: string, text: string | undefined): DbCredentials {
  const hint = 'Store the secret in RDS JSON format: {"host","port","username","password","dbname"} (optional "sslmode").';
  if (text === undefined) throw new SecretError(`secret ${secretId} has no SecretString (binary secrets are not supported)`, { hint });
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new SecretError(`secret ${secretId} is not JSON`, { hint });
  }
  const parsed = RdsSecretSchema.safeParse(json);
  if (!parsed.success) {
    const fields = [...new Set(parsed.error.issues.map((i) => i.path.join('.') || '(root)'))];
    throw new SecretError(`secret ${secretId} is missing or has invalid fields: ${fields.join(', ')}`, { hint });
  }
  const s = parsed.data;
  return { host: s.host, port: s.port ?? 5432, username: s.username, password: s.password, dbname: s.dbname, sslmode: s.sslmode, sslrootcert: s.sslrootcert };
}

/** Pure: `postgresql://user:password@host:port/db?sslmode=…&sslrootcert=…` → credentials (the one URL parser). */
export function credentialsFromUrl(url: string): DbCredentials {
  let u: PgUrl;
  try {
    u = parsePgUrl(url, 'DATABASE_URL');
  } catch (err) {
    const e = err as PgS3BackupError;
    throw new SecretError(e.message, { cause: err, ...(e.hint ? { hint: e.hint } : {}) });
  }
  // The parser defaults the host to localhost, as libpq does; the backup wants it said.
  if (!u.user || (new URL(url).hostname === '' && !/[?&]host=/.test(url))) {
    throw new SecretError('DATABASE_URL must name a host and a user', { hint: 'Use postgresql://user:password@host:port/database' });
  }
  return {
    host: u.host,
    port: u.port,
    username: u.user,
    password: u.password ?? '',
    dbname: u.database,
    sslmode: u.sslmode,
    sslrootcert: u.sslrootcert,
  };
}
