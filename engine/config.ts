/**
 * Configuration, parsed once from the environment into a frozen object. The Lambda, the CLI and
 * host mode share it. Every error names the variable and the form it expects; nothing here ever
 * echoes a value that could be a secret (DATABASE_URL is reported by name only).
 */
import { z } from 'zod';
import { ConfigError } from './errors.ts';
import { ROW_COUNT_MODES, type RowCountMode } from './store/manifest.ts';
import { STORAGE_PROFILE_SETTINGS, type StorageProfileSetting } from './store/capabilities.ts';
import { recipientProblem, type IdentitySource } from './encryption.ts';
import { isTimeZone } from './backup/gfs.ts';

export const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type SslMode = (typeof SSL_MODES)[number];

export type CredentialSource =
  | { readonly kind: 'secret'; readonly secretId: string }
  | { readonly kind: 'url'; readonly url: string }
  /** Neither is set, and the caller said it only reads the bucket (`list`, `restore`, `verify`, `prune`). */
  | { readonly kind: 'none' };

export interface Config {
  /** Where the database credentials come from: the Secrets Manager secret, or DATABASE_URL (CLI/host mode). */
  readonly credentials: CredentialSource;
  /** DATABASES; undefined means "the secret's (or URL's) database", or discovery when `discover` is set. */
  readonly databases: readonly string[] | undefined;
  /** DATABASES=*: the databases are listed on the server at run time, filtered by DATABASE_INCLUDE / DATABASE_EXCLUDE. */
  readonly discover: { readonly include: readonly string[]; readonly exclude: readonly string[] } | undefined;
  /** RUNNER: where the fan-out's plan sends each database (lambda, fargate, or auto from the last backup's duration). */
  readonly runner: RunnerChoice;
  /** Where this process runs: the Lambda function, the Fargate task, or a host (CLI, cron). */
  readonly runningOn: RunningOn;
  readonly bucket: string;
  /** BACKUP_PREFIX, empty or ending with `/`. */
  readonly prefix: string;
  readonly retentionCount: number;
  /**
   * RETENTION_DAILY / _WEEKLY / _MONTHLY and RETENTION_TIME_ZONE: grandfather-father-son retention
   * beside RETENTION_COUNT (engine/backup/gfs.ts); 0 turns a rule off. Periods are calendar days,
   * ISO weeks and months in the IANA zone.
   */
  readonly gfs: { readonly daily: number; readonly weekly: number; readonly monthly: number; readonly timeZone: string };
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
  /** PG_SERVER_LAYER: the pg-server layer of the drill's throwaway server; undefined: /opt/pg-server. */
  readonly serverLayerRoot: string | undefined;
  /** ROW_COUNTS: per-table row counts in the dump's snapshot, recorded in the manifest (issue 13). */
  readonly rowCounts: RowCountMode;
  /**
   * DUMP_JOBS: data-only pg_dumps run side by side in the dump's snapshot, each streamed to its
   * own object (issue 24, engine/backup/shards.ts); 1: one archive, as before. Default: the
   * Lambda function's vCPUs by memory, else 1 (defaultDumpJobs).
   */
  readonly dumpJobs: number;
  /** DB_SSLMODE: overrides the secret's sslmode. */
  readonly sslMode: SslMode | undefined;
  /** DB_SSLROOTCERT: CA bundle for verify-ca / verify-full. */
  readonly sslRootCert: string | undefined;
  /**
   * RDS_CA_BUNDLE: the RDS CA bundle shipped with a runner outside Lambda (the Fargate image's):
   * TLS then defaults to verify-full against it, as in Lambda.
   */
  readonly rdsCaBundle: string | undefined;
  /** CLOUDWATCH_METRICS: off Lambda, send the backup metrics with PutMetricData (the Fargate runner sets it). */
  readonly cloudwatchMetrics: boolean;
  /** PG_CONNECT_TIMEOUT (seconds): bounds how long an unreachable server can hold a run. */
  readonly connectTimeoutSeconds: number;
  /** TIME_MARGIN_SECONDS: stop the dump when the Lambda has less than this left. */
  readonly timeMarginMs: number;
  /** Running inside AWS Lambda (AWS_LAMBDA_FUNCTION_NAME set): TLS defaults to verify-full. */
  readonly inLambda: boolean;
  /**
   * HEARTBEAT_URL (CLI and host mode): a dead-man's switch such as healthchecks.io, pinged after
   * each `run` (`<url>` on success, `<url>/fail` on failure), so a backup that never ran is noticed.
   */
  readonly heartbeatUrl: string | undefined;
  /** HEARTBEAT_TIMEOUT_SECONDS: a ping never holds a run longer than this. */
  readonly heartbeatTimeoutMs: number;
  /** Bounds of every AWS SDK call (S3, Secrets Manager, SNS): see `AwsTimeouts`. */
  readonly aws: AwsTimeouts;
  /** ALERT_TIMEOUT_SECONDS: the longest one alert may take to publish (all its attempts). */
  readonly alertTimeoutMs: number;
  /** RUN_TIMEOUT_SECONDS: the whole run's deadline off Lambda (in Lambda the smaller of it and the remaining time). */
  readonly runTimeoutMs: number;
  /** PG_LOCK_WAIT_TIMEOUT (seconds): pg_dump's `--lock-wait-timeout`, so a held lock fails the dump instead of hanging it. */
  readonly lockWaitTimeoutSeconds: number;
  /** DUMP_STALL_TIMEOUT_SECONDS: no dump bytes for this long stops pg_dump and aborts the upload. */
  readonly dumpStallMs: number;
  /** STALE_UPLOAD_AGE_SECONDS: prune aborts multipart uploads under the prefix older than this (by S3's clock). */
  readonly staleUploadAgeMs: number;
  /**
   * STORAGE_PROFILE: a store's name (its documented capabilities, engine/store/capabilities.ts,
   * never probed), `auto` (the bucket is probed at the first run, then cached), or undefined
   * (AWS's capabilities until the store refuses one: then probed, cached, and the database retried).
   */
  readonly storageProfile: StorageProfileSetting | undefined;
  /** STORAGE_MAX_PARTS: the store's cap on the parts of one upload, instead of the profile's. */
  readonly storageMaxParts: number | undefined;
  /**
   * ENCRYPT_RECIPIENTS: age X25519 public keys (`age1…`); when set, every dump (and the globals) is
   * encrypted to them while it streams. Undefined: stored as pg_dump wrote it (SSE-KMS only).
   */
  readonly encryptRecipients: readonly string[] | undefined;
  /** AGE_IDENTITY_FILE or AGE_IDENTITY_SECRET_ARN: where restore, verify and the drill find the identity of encrypted backups. */
  readonly identity: IdentitySource | undefined;
}

/**
 * The AWS SDK's own defaults wait forever on a server that accepts the connection and never
 * answers; these bound each attempt, and `maxAttempts` the retries.
 */
export interface AwsTimeouts {
  /** AWS_CONNECT_TIMEOUT_SECONDS: TCP (and TLS) connection set-up. */
  readonly connectTimeoutMs: number;
  /** AWS_REQUEST_TIMEOUT_SECONDS: from sending a request to its response's headers (an upload's part included). */
  readonly requestTimeoutMs: number;
  /** AWS_SOCKET_TIMEOUT_SECONDS: the longest silence on an open connection, response bodies (downloads) included. */
  readonly socketTimeoutMs: number;
  /** AWS_MAX_ATTEMPTS: attempts per call, the first included (the SDK's standard retry mode). */
  readonly maxAttempts: number;
}

export type Env = Readonly<Record<string, string | undefined>>;

export const RUNNER_CHOICES = ['lambda', 'fargate', 'auto'] as const;
export type RunnerChoice = (typeof RUNNER_CHOICES)[number];
export type RunningOn = 'lambda' | 'fargate' | 'host';

/** Lambda's vCPUs: one per 1,769 MB of memory, at most 6 (at 10,240 MB). */
export const LAMBDA_MB_PER_VCPU = 1769;
export const LAMBDA_MAX_VCPUS = 6;

/**
 * DUMP_JOBS when it is not set. Lambda: its vCPUs by memory (1 up to 1,769 MB: a second pg_dump on
 * the same core only adds switching). Elsewhere 1: a host shares its cores with other work (and, in
 * the measurements of docs/performance.md, often with the server itself), and the Fargate task
 * gets DUMP_JOBS from its size through infra; an operator sets DUMP_JOBS for more.
 */
export function defaultDumpJobs(lambdaMemoryMb: number | undefined): number {
  if (lambdaMemoryMb === undefined) return 1;
  return Math.max(1, Math.min(LAMBDA_MAX_VCPUS, Math.ceil(lambdaMemoryMb / LAMBDA_MB_PER_VCPU)));
}

/** The function's timeout (Lambda's maximum): infra sets it, the fan-out's plan sizes runners against it. */
export const LAMBDA_TIMEOUT_SECONDS = 900;

export const DEFAULTS = {
  prefix: 'pg-s3-backup/',
  retentionCount: 7,
  /** GFS rules off by default: RETENTION_COUNT alone, as before. */
  retentionDaily: 0,
  retentionWeekly: 0,
  retentionMonthly: 0,
  retentionTimeZone: 'UTC',
  compression: 'zstd:1',
  /** Measured at 1 GB (docs/performance.md, "Row counts"): counting runs beside the dump, in its snapshot. */
  rowCounts: 'exact',
  connectTimeoutSeconds: 10,
  timeMarginSeconds: 30,
  heartbeatTimeoutSeconds: 10,
  awsConnectTimeoutSeconds: 5,
  awsRequestTimeoutSeconds: 120,
  awsSocketTimeoutSeconds: 30,
  awsMaxAttempts: 3,
  /** With the clean-up's 20 s, fits in the Lambda's default 30 s TIME_MARGIN_SECONDS. */
  alertTimeoutSeconds: 10,
  /** Six hours: far beyond any dump this tool is meant for, short enough to never overlap the next night. */
  runTimeoutSeconds: 6 * 3600,
  lockWaitTimeoutSeconds: 60,
  dumpStallTimeoutSeconds: 300,
  /** A day, like orphan dumps: no upload of a running backup is that old. */
  staleUploadAgeSeconds: 86_400,
} as const;

/*
 * One schema for every setting of the engine, keyed by its environment variable. The function,
 * the CLI and host mode parse the environment with it; the CDK app validates its context values
 * with the same field schemas (`ENGINE_SETTINGS`) and writes the function's environment through
 * `toEnvironment()`, so a value cannot be valid in one place and invalid in the other. Each field's
 * message is the expected form ("a whole number from 1 to 1000"); the caller names the variable or
 * the context key around it.
 */

/** Environment values arrive as strings; blank means unset. */
const text = z.preprocess((v) => (typeof v === 'string' && v.trim() === '' ? undefined : typeof v === 'string' ? v.trim() : v), z.string().optional());

const wholeNumber = (min: number, max: number) => {
  const expected = `a whole number from ${min} to ${max}`;
  return z.preprocess(
    (v) => (typeof v === 'string' ? (v.trim() === '' ? undefined : /^\d+$/.test(v.trim()) ? Number(v.trim()) : v) : v),
    z.number({ error: expected }).int(expected).min(min, expected).max(max, expected).optional(),
  );
};

const flag = z.preprocess((v) => {
  if (typeof v !== 'string') return v;
  const t = v.trim().toLowerCase();
  return t === '' ? undefined : t === 'true' || t === '1' ? true : t === 'false' || t === '0' ? false : v;
}, z.boolean({ error: '"true" or "false"' }).optional());

const matching = (re: RegExp, expected: string) => text.pipe(z.string().regex(re, expected).optional());

/** pg_dump's `--compress` forms: a level, or `method[:detail]` (e.g. `zstd:1`, `gzip:level=6`, `zstd:long`). */
const COMPRESSION = /^(?:\d|(?:none|gzip|lz4|zstd)(?::[A-Za-z0-9=,_]+)?)$/;

/** Characters S3 documents as safe in keys, segments ending with `/`: no spaces, no `//`. */
const PREFIX = /^(?:[A-Za-z0-9!_.*'()-]+\/)*$/;

/** Glob patterns (`*`, `?`) over database names, comma-separated. */
const patternList = z.preprocess(
  (v) => (typeof v === 'string' ? (v.trim() === '' ? undefined : v.split(',').map((d) => d.trim())) : v),
  z.array(z.string().regex(/^[^,\s]+$/), { error: 'a comma-separated list of database name patterns (* and ? wildcards)' }).optional(),
);

const databaseList = z.preprocess(
  (v) => (typeof v === 'string' ? (v.trim() === '' ? undefined : v.split(',').map((d) => d.trim())) : v),
  z
    .array(z.string(), { error: 'a comma-separated list of database names' })
    .refine((l) => l.every((d) => d !== '' && !d.includes(',')), 'a comma-separated list of database names without empty entries')
    .optional(),
);

/** age recipients, comma-separated: each one checked (shape and bech32 checksum), the entry named by its position. */
const recipientList = z.preprocess(
  (v) => (typeof v === 'string' ? (v.trim() === '' ? undefined : v.split(',').map((d) => d.trim())) : v),
  z
    .array(z.string(), { error: 'a comma-separated list of age recipients (age1…)' })
    .superRefine((list, ctx) => {
      list.forEach((r, i) => {
        const problem = r === '' ? 'is empty' : recipientProblem(r);
        // A recipient is public and may be quoted; anything else (an identity pasted by mistake) is not.
        const shown = /^age1[a-z0-9]*$/.test(r) ? ` (${r})` : '';
        if (problem) ctx.addIssue({ code: 'custom', message: `a comma-separated list of age X25519 recipients (age1…, from age-keygen): entry ${i + 1}${shown} ${problem}` });
      });
    })
    .optional(),
);

export const ENGINE_SETTINGS = {
  DB_SECRET_ID: text,
  DATABASE_URL: matching(/^postgres(?:ql)?:\/\//, 'a URL of the form postgresql://user:password@host:port/database'),
  DATABASES: databaseList,
  DATABASE_INCLUDE: patternList,
  DATABASE_EXCLUDE: patternList,
  RUNNER: text.pipe(z.enum(RUNNER_CHOICES, { error: '"lambda", "fargate" or "auto"' }).optional()),
  BACKUP_BUCKET: matching(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'an S3 bucket name (3-63 characters: lowercase letters, digits, dots, hyphens)'),
  BACKUP_PREFIX: z.preprocess(
    (v) => (typeof v === 'string' ? v.trim() : v),
    z.string().regex(PREFIX, 'empty or a key prefix ending with "/" (not starting with "/"), of letters, digits and !_.*\'()- , e.g. "pg-s3-backup/"').optional(),
  ),
  RETENTION_COUNT: wholeNumber(1, 1000),
  RETENTION_DAILY: wholeNumber(0, 1000),
  RETENTION_WEEKLY: wholeNumber(0, 520),
  RETENTION_MONTHLY: wholeNumber(0, 1200),
  RETENTION_TIME_ZONE: text.pipe(z.string().refine(isTimeZone, 'an IANA time zone such as UTC, Europe/Paris or Pacific/Auckland').optional()),
  ALERT_TOPIC_ARN: matching(/^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$/, 'an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>)'),
  PG_DUMP_COMPRESSION: matching(COMPRESSION, 'a pg_dump --compress spec such as "zstd:1", "gzip:6", "lz4" or "none"'),
  PG_DUMP_BIN: text,
  S3_FORCE_PATH_STYLE: flag,
  NOTIFY_ON_SUCCESS: flag,
  BACKUP_GLOBALS: flag,
  DB_SSLMODE: text.pipe(z.enum(SSL_MODES, { error: `one of ${SSL_MODES.join(', ')}` }).optional()),
  PG_SERVER_LAYER: text,
  ROW_COUNTS: text.pipe(z.enum(ROW_COUNT_MODES, { error: `one of ${ROW_COUNT_MODES.join(', ')}` }).optional()),
  DB_SSLROOTCERT: text,
  RDS_CA_BUNDLE: text,
  CLOUDWATCH_METRICS: flag,
  PG_CONNECT_TIMEOUT: wholeNumber(1, 600),
  TIME_MARGIN_SECONDS: wholeNumber(0, 900),
  AWS_LAMBDA_FUNCTION_NAME: text,
  /** Set by Lambda: the function's memory, which gives its vCPUs (DUMP_JOBS's default). */
  AWS_LAMBDA_FUNCTION_MEMORY_SIZE: wholeNumber(128, 10_240),
  DUMP_JOBS: wholeNumber(1, 16),
  HEARTBEAT_URL: matching(/^https?:\/\/[^\s/?#]+(?:\/[^\s?#]*)?$/, 'an http(s) URL without query string, such as https://hc-ping.com/<uuid>'),
  HEARTBEAT_TIMEOUT_SECONDS: wholeNumber(1, 120),
  /** Set by ECS in every Fargate task: the engine then runs without Lambda's time budget. */
  ECS_CONTAINER_METADATA_URI_V4: text,
  AWS_CONNECT_TIMEOUT_SECONDS: wholeNumber(1, 300),
  AWS_REQUEST_TIMEOUT_SECONDS: wholeNumber(1, 3600),
  AWS_SOCKET_TIMEOUT_SECONDS: wholeNumber(1, 3600),
  AWS_MAX_ATTEMPTS: wholeNumber(1, 10),
  ALERT_TIMEOUT_SECONDS: wholeNumber(1, 300),
  RUN_TIMEOUT_SECONDS: wholeNumber(1, 7 * 86_400),
  PG_LOCK_WAIT_TIMEOUT: wholeNumber(1, 86_400),
  DUMP_STALL_TIMEOUT_SECONDS: wholeNumber(1, 86_400),
  STALE_UPLOAD_AGE_SECONDS: wholeNumber(0, 365 * 86_400),
  STORAGE_PROFILE: text.pipe(z.enum(STORAGE_PROFILE_SETTINGS, { error: `one of ${STORAGE_PROFILE_SETTINGS.join(', ')}` }).optional()),
  STORAGE_MAX_PARTS: wholeNumber(1, 10_000),
  ENCRYPT_RECIPIENTS: recipientList,
  /** A path: restore, verify and the drill read the identity from it (never the backup). */
  AGE_IDENTITY_FILE: text,
  AGE_IDENTITY_SECRET_ARN: matching(/^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$/, 'a Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>)'),
} as const;

export type EngineVariable = keyof typeof ENGINE_SETTINGS;

const EnvSchema = z.object(ENGINE_SETTINGS);

/** Variables whose values may hold a password: never echoed in a message. */
const SECRET_VARIABLES: ReadonlySet<string> = new Set(['DATABASE_URL', 'HEARTBEAT_URL', 'ENCRYPT_RECIPIENTS']);

/** The message for one problem with one variable, in the engine's words. */
function describeEnvIssue(issue: z.core.$ZodIssue, env: Env): string {
  const name = String(issue.path[0] ?? '(environment)');
  const raw = env[name];
  const got = SECRET_VARIABLES.has(name) || raw === undefined ? '' : `; got ${JSON.stringify(raw.trim())}`;
  return `${name} must be ${issue.message}${got}`;
}

/**
 * The function's environment from settings the CDK app holds: every literal value is checked by
 * the same field schema the engine parses it with (throws naming the variable); values for which
 * `isDeployTimeValue` is true (CloudFormation tokens such as a bucket name) are passed through.
 */
export function toEnvironment(
  values: Partial<Record<EngineVariable, string | number | boolean | readonly string[] | undefined>>,
  options: { readonly isDeployTimeValue?: (value: string) => boolean } = {},
): Record<string, string> {
  const out: Record<string, string> = {};
  const problems: string[] = [];
  for (const [name, value] of Object.entries(values) as [EngineVariable, string | number | boolean | readonly string[] | undefined][]) {
    if (value === undefined) continue;
    const str = Array.isArray(value) ? value.join(',') : String(value);
    if (!options.isDeployTimeValue?.(str)) {
      const checked = ENGINE_SETTINGS[name].safeParse(str);
      if (!checked.success) problems.push(...checked.error.issues.map((i) => describeEnvIssue({ ...i, path: [name] }, { [name]: str })));
    }
    out[name] = str;
  }
  if (problems.length > 0) throw new ConfigError(problems.join('\n'));
  return out;
}

export interface LoadConfigOptions {
  /** false for commands that only read the bucket: then DB_SECRET_ID / DATABASE_URL may be absent. */
  readonly requireCredentials?: boolean;
}

export const MISSING_CREDENTIALS =
  'DB_SECRET_ID is required (Secrets Manager secret ARN or name, RDS JSON format), or DATABASE_URL for the CLI and host mode';

export function loadConfig(env: Env = process.env, options: LoadConfigOptions = {}): Config {
  const parsed = EnvSchema.safeParse(env);
  // Every problem at once, each naming its variable: a deploy with three typos needs one fix, not three.
  const problems: string[] = parsed.success ? [] : parsed.error.issues.map((i) => describeEnvIssue(i, env));
  const v: Partial<z.output<typeof EnvSchema>> = parsed.success ? parsed.data : fieldsThatParse(env);
  const inLambda = v.AWS_LAMBDA_FUNCTION_NAME !== undefined;

  let credentials: CredentialSource = { kind: 'none' };
  const secretId = v.DB_SECRET_ID;
  const url = v.DATABASE_URL;
  const urlSet = typeof env.DATABASE_URL === 'string' && env.DATABASE_URL.trim() !== '';
  if (secretId && urlSet) {
    problems.push('DB_SECRET_ID and DATABASE_URL are both set: set exactly one of them');
  } else if (secretId) {
    credentials = { kind: 'secret', secretId };
  } else if (urlSet && inLambda) {
    problems.push('DATABASE_URL is for the CLI and host mode only: in Lambda set DB_SECRET_ID (a Secrets Manager secret in RDS JSON format)');
  } else if (url) {
    credentials = { kind: 'url', url };
  } else if (!urlSet && options.requireCredentials !== false) {
    problems.push(MISSING_CREDENTIALS);
  }

  if (v.AGE_IDENTITY_FILE !== undefined && v.AGE_IDENTITY_SECRET_ARN !== undefined) {
    problems.push('AGE_IDENTITY_FILE and AGE_IDENTITY_SECRET_ARN are both set: set at most one of them');
  }

  const rawBucket = env.BACKUP_BUCKET;
  if (rawBucket === undefined || rawBucket.trim() === '') problems.push('BACKUP_BUCKET is required: the name of the bucket that receives the backups');

  if (problems.length > 0) throw new ConfigError(problems.join('\n'));
  const c = v as z.output<typeof EnvSchema>;

  const discover = c.DATABASES?.length === 1 && c.DATABASES[0] === '*';
  if (!discover && (c.DATABASE_INCLUDE || c.DATABASE_EXCLUDE)) {
    throw new ConfigError('DATABASE_INCLUDE and DATABASE_EXCLUDE filter discovered databases: they need DATABASES=*');
  }
  return Object.freeze({
    credentials: Object.freeze(credentials),
    databases: discover ? undefined : c.DATABASES && Object.freeze([...new Set(c.DATABASES)]),
    discover: discover ? Object.freeze({ include: Object.freeze(c.DATABASE_INCLUDE ?? ['*']), exclude: Object.freeze(c.DATABASE_EXCLUDE ?? []) }) : undefined,
    runner: c.RUNNER ?? 'lambda',
    runningOn: inLambda ? 'lambda' : c.ECS_CONTAINER_METADATA_URI_V4 !== undefined ? 'fargate' : 'host',
    bucket: c.BACKUP_BUCKET ?? '',
    prefix: c.BACKUP_PREFIX ?? DEFAULTS.prefix,
    retentionCount: c.RETENTION_COUNT ?? DEFAULTS.retentionCount,
    gfs: Object.freeze({
      daily: c.RETENTION_DAILY ?? DEFAULTS.retentionDaily,
      weekly: c.RETENTION_WEEKLY ?? DEFAULTS.retentionWeekly,
      monthly: c.RETENTION_MONTHLY ?? DEFAULTS.retentionMonthly,
      timeZone: c.RETENTION_TIME_ZONE ?? DEFAULTS.retentionTimeZone,
    }),
    alertTopicArn: c.ALERT_TOPIC_ARN,
    compression: c.PG_DUMP_COMPRESSION ?? DEFAULTS.compression,
    pgDumpBin: c.PG_DUMP_BIN,
    forcePathStyle: c.S3_FORCE_PATH_STYLE ?? false,
    notifyOnSuccess: c.NOTIFY_ON_SUCCESS ?? false,
    backupGlobals: c.BACKUP_GLOBALS ?? false,
    sslMode: c.DB_SSLMODE,
    rowCounts: c.ROW_COUNTS ?? DEFAULTS.rowCounts,
    dumpJobs: c.DUMP_JOBS ?? defaultDumpJobs(inLambda ? c.AWS_LAMBDA_FUNCTION_MEMORY_SIZE : undefined),
    serverLayerRoot: c.PG_SERVER_LAYER,
    sslRootCert: c.DB_SSLROOTCERT,
    rdsCaBundle: c.RDS_CA_BUNDLE,
    cloudwatchMetrics: c.CLOUDWATCH_METRICS ?? false,
    connectTimeoutSeconds: c.PG_CONNECT_TIMEOUT ?? DEFAULTS.connectTimeoutSeconds,
    timeMarginMs: (c.TIME_MARGIN_SECONDS ?? DEFAULTS.timeMarginSeconds) * 1000,
    inLambda,
    heartbeatUrl: c.HEARTBEAT_URL,
    heartbeatTimeoutMs: (c.HEARTBEAT_TIMEOUT_SECONDS ?? DEFAULTS.heartbeatTimeoutSeconds) * 1000,
    aws: Object.freeze({
      connectTimeoutMs: (c.AWS_CONNECT_TIMEOUT_SECONDS ?? DEFAULTS.awsConnectTimeoutSeconds) * 1000,
      requestTimeoutMs: (c.AWS_REQUEST_TIMEOUT_SECONDS ?? DEFAULTS.awsRequestTimeoutSeconds) * 1000,
      socketTimeoutMs: (c.AWS_SOCKET_TIMEOUT_SECONDS ?? DEFAULTS.awsSocketTimeoutSeconds) * 1000,
      maxAttempts: c.AWS_MAX_ATTEMPTS ?? DEFAULTS.awsMaxAttempts,
    }),
    alertTimeoutMs: (c.ALERT_TIMEOUT_SECONDS ?? DEFAULTS.alertTimeoutSeconds) * 1000,
    runTimeoutMs: (c.RUN_TIMEOUT_SECONDS ?? DEFAULTS.runTimeoutSeconds) * 1000,
    lockWaitTimeoutSeconds: c.PG_LOCK_WAIT_TIMEOUT ?? DEFAULTS.lockWaitTimeoutSeconds,
    dumpStallMs: (c.DUMP_STALL_TIMEOUT_SECONDS ?? DEFAULTS.dumpStallTimeoutSeconds) * 1000,
    staleUploadAgeMs: (c.STALE_UPLOAD_AGE_SECONDS ?? DEFAULTS.staleUploadAgeSeconds) * 1000,
    storageProfile: c.STORAGE_PROFILE,
    storageMaxParts: c.STORAGE_MAX_PARTS,
    encryptRecipients: c.ENCRYPT_RECIPIENTS && Object.freeze([...new Set(c.ENCRYPT_RECIPIENTS)]),
    identity: c.AGE_IDENTITY_FILE !== undefined
      ? Object.freeze({ kind: 'file' as const, path: c.AGE_IDENTITY_FILE })
      : c.AGE_IDENTITY_SECRET_ARN !== undefined ? Object.freeze({ kind: 'secret' as const, secretId: c.AGE_IDENTITY_SECRET_ARN }) : undefined,
  });
}

/** Where a failure can be reported. */
export interface AlertChannels {
  readonly alertTopicArn: string | undefined;
  readonly heartbeatUrl: string | undefined;
  readonly heartbeatTimeoutMs: number;
  readonly alertTimeoutMs: number;
}

/**
 * The alert topic and heartbeat, each taken if it parses on its own: a configuration error
 * elsewhere (or none loaded at all, as when host mode fails before the backup starts) must still
 * be reported wherever it can be.
 */
export function alertChannels(env: Env): AlertChannels {
  const field = <N extends EngineVariable>(name: N) => {
    const r = ENGINE_SETTINGS[name].safeParse(env[name]);
    return r.success ? (r.data as z.output<(typeof ENGINE_SETTINGS)[N]>) : undefined;
  };
  return {
    alertTopicArn: field('ALERT_TOPIC_ARN'),
    heartbeatUrl: field('HEARTBEAT_URL'),
    heartbeatTimeoutMs: (field('HEARTBEAT_TIMEOUT_SECONDS') ?? DEFAULTS.heartbeatTimeoutSeconds) * 1000,
    alertTimeoutMs: (field('ALERT_TIMEOUT_SECONDS') ?? DEFAULTS.alertTimeoutSeconds) * 1000,
  };
}

/** When some variables are wrong, the ones that parse (so the cross-checks still report). */
function fieldsThatParse(env: Env): Partial<z.output<typeof EnvSchema>> {
  const out: Record<string, unknown> = {};
  for (const [name, schema] of Object.entries(ENGINE_SETTINGS)) {
    const r = (schema as z.ZodType).safeParse(env[name]);
    if (r.success) out[name] = r.data;
  }
  return out as Partial<z.output<typeof EnvSchema>>;
}
