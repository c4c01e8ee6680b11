/**
 * Configuration, parsed once from the environment into a frozen object. The Lambda, the CLI and
 * host mode share it. Every error names the variable and the form it expects; nothing here ever
 * echoes a value that could be a secret (DATABASE_URL is reported by name only).
 */
import { ConfigError } from './errors.ts';

export const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type SslMode = (typeof SSL_MODES)[number];

/** Lambda Node.js runtimes ship Amazon's CA bundle here (RDS certificates included). */
export const LAMBDA_CA_BUNDLE = '/var/runtime/ca-cert.pem';

export type CredentialSource =
  | { readonly kind: 'secret'; readonly secretId: string }
  | { readonly kind: 'url'; readonly url: string }
  /** Neither is set, and the caller said it only reads the bucket (`list`, `restore`, `verify`, `prune`). */
  | { readonly kind: 'none' };

export interface Config {
  /** Where the database credentials come from: the Secrets Manager secret, or DATABASE_URL (CLI/host mode). */
  readonly credentials: CredentialSource;
  /** DATABASES; undefined means "the secret's (or URL's) database". */
  readonly databases: readonly string[] | undefined;
  readonly bucket: string;
  /** BACKUP_PREFIX, empty or ending with `/`. */
  readonly prefix: string;
  readonly retentionCount: number;
  readonly alertTopicArn: string | undefined;
  /** pg_dump `--compress` spec. */
  readonly compression: string;
  /** PG_DUMP_BIN; undefined means the layer's, under /opt. */
  readonly pgDumpBin: string | undefined;
  readonly forcePathStyle: boolean;
  /** NOTIFY_ON_SUCCESS: also publish a notice when a run succeeds. */
  readonly notifyOnSuccess: boolean;
  /** BACKUP_GLOBALS: also store `pg_dumpall --globals-only --no-role-passwords`. */
  readonly backupGlobals: boolean;
  /** DB_SSLMODE: overrides the secret's sslmode. */
  readonly sslMode: SslMode | undefined;
  /** DB_SSLROOTCERT: CA bundle for verify-ca / verify-full. */
  readonly sslRootCert: string | undefined;
  /** PG_CONNECT_TIMEOUT (seconds): bounds how long an unreachable server can hold a run. */
  readonly connectTimeoutSeconds: number;
  /** TIME_MARGIN_SECONDS: stop the dump when the Lambda has less than this left. */
  readonly timeMarginMs: number;
  /** Running inside AWS Lambda (AWS_LAMBDA_FUNCTION_NAME set): TLS defaults to verify-full. */
  readonly inLambda: boolean;
}

export type Env = Readonly<Record<string, string | undefined>>;

export const DEFAULTS = {
  prefix: 'pg-s3-backup/',
  retentionCount: 7,
  compression: 'zstd:1',
  connectTimeoutSeconds: 10,
  timeMarginSeconds: 30,
} as const;

/** pg_dump's `--compress` forms: a level, or `method[:detail]` (e.g. `zstd:1`, `gzip:level=6`, `zstd:long`). */
const COMPRESSION = /^(?:\d|(?:none|gzip|lz4|zstd)(?::[A-Za-z0-9=,_]+)?)$/;

export interface LoadConfigOptions {
  /** false for commands that only read the bucket: then DB_SECRET_ID / DATABASE_URL may be absent. */
  readonly requireCredentials?: boolean;
}

export const MISSING_CREDENTIALS =
  'DB_SECRET_ID is required (Secrets Manager secret ARN or name, RDS JSON format), or DATABASE_URL for the CLI and host mode';

export function loadConfig(env: Env = process.env, options: LoadConfigOptions = {}): Config {
  const get = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  };
  const inLambda = get('AWS_LAMBDA_FUNCTION_NAME') !== undefined;

  const secretId = get('DB_SECRET_ID');
  const url = get('DATABASE_URL');
  let credentials: CredentialSource;
  if (secretId && url) {
    throw new ConfigError('DB_SECRET_ID and DATABASE_URL are both set: set exactly one of them');
  } else if (secretId) {
    credentials = { kind: 'secret', secretId };
  } else if (url) {
    if (inLambda) {
      throw new ConfigError('DATABASE_URL is for the CLI and host mode only: in Lambda set DB_SECRET_ID (a Secrets Manager secret in RDS JSON format)');
    }
    if (!/^postgres(?:ql)?:\/\//.test(url)) {
      throw new ConfigError('DATABASE_URL must be a URL of the form postgresql://user:password@host:port/database');
    }
    credentials = { kind: 'url', url };
  } else if (options.requireCredentials === false) {
    credentials = { kind: 'none' };
  } else {
    throw new ConfigError(MISSING_CREDENTIALS);
  }

  const bucket = get('BACKUP_BUCKET');
  if (!bucket) throw new ConfigError('BACKUP_BUCKET is required: the name of the bucket that receives the backups');
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw new ConfigError(`BACKUP_BUCKET must be an S3 bucket name (3-63 characters: lowercase letters, digits, dots, hyphens), got ${JSON.stringify(bucket)}`);
  }

  const prefix = env.BACKUP_PREFIX ?? DEFAULTS.prefix;
  if (prefix !== '' && (!prefix.endsWith('/') || prefix.startsWith('/') || prefix.includes('//'))) {
    throw new ConfigError(`BACKUP_PREFIX must be empty or a key prefix ending with "/" (not starting with "/"), e.g. "pg-s3-backup/"; got ${JSON.stringify(prefix)}`);
  }

  const dbList = env.DATABASES;
  let databases: string[] | undefined;
  if (dbList !== undefined && dbList.trim() !== '') {
    databases = dbList.split(',').map((d) => d.trim());
    if (databases.some((d) => d === '')) {
      throw new ConfigError(`DATABASES must be a comma-separated list of database names without empty entries, got ${JSON.stringify(dbList)}`);
    }
    databases = [...new Set(databases)];
  }

  const compression = get('PG_DUMP_COMPRESSION') ?? DEFAULTS.compression;
  if (!COMPRESSION.test(compression)) {
    throw new ConfigError(`PG_DUMP_COMPRESSION must be a pg_dump --compress spec such as "zstd:1", "gzip:6", "lz4" or "none"; got ${JSON.stringify(compression)}`);
  }

  const sslModeRaw = get('DB_SSLMODE');
  if (sslModeRaw !== undefined && !(SSL_MODES as readonly string[]).includes(sslModeRaw)) {
    throw new ConfigError(`DB_SSLMODE must be one of ${SSL_MODES.join(', ')}; got ${JSON.stringify(sslModeRaw)}`);
  }

  return Object.freeze({
    credentials: Object.freeze(credentials),
    databases: databases && Object.freeze(databases),
    bucket,
    prefix,
    retentionCount: integer(get, 'RETENTION_COUNT', DEFAULTS.retentionCount, 1, 100_000),
    alertTopicArn: arn(get('ALERT_TOPIC_ARN')),
    compression,
    pgDumpBin: get('PG_DUMP_BIN'),
    forcePathStyle: boolean(get, 'S3_FORCE_PATH_STYLE'),
    notifyOnSuccess: boolean(get, 'NOTIFY_ON_SUCCESS'),
    backupGlobals: boolean(get, 'BACKUP_GLOBALS'),
    sslMode: sslModeRaw as SslMode | undefined,
    sslRootCert: get('DB_SSLROOTCERT'),
    connectTimeoutSeconds: integer(get, 'PG_CONNECT_TIMEOUT', DEFAULTS.connectTimeoutSeconds, 1, 600),
    timeMarginMs: integer(get, 'TIME_MARGIN_SECONDS', DEFAULTS.timeMarginSeconds, 0, 900) * 1000,
    inLambda,
  });
}

function integer(get: (n: string) => string | undefined, name: string, fallback: number, min: number, max: number): number {
  const raw = get(name);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new ConfigError(`${name} must be a whole number from ${min} to ${max}; got ${JSON.stringify(raw)}`);
  }
  return Number(raw);
}

function boolean(get: (n: string) => string | undefined, name: string): boolean {
  const raw = get(name)?.toLowerCase();
  if (raw === undefined || raw === 'false' || raw === '0') return false;
  if (raw === 'true' || raw === '1') return true;
  throw new ConfigError(`${name} must be "true" or "false"; got ${JSON.stringify(raw)}`);
}

function arn(value: string | undefined): string | undefined {
  if (value !== undefined && !/^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$/.test(value)) {
    throw new ConfigError(`ALERT_TOPIC_ARN must be an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>); got ${JSON.stringify(value)}`);
  }
  return value;
}
