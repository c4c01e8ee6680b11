/**
 * Every setting of the engine, declared once: its environment variable (the key), its schema, its
 * default, a one-line doc, where loadConfig puts it in `Config`, and whether the CDK stack deploys
 * it (`context`: the context key it is deployed from; `deployedBy`: the stack sets it itself).
 * engine/config.ts derives `Config`, `loadConfig` and `toEnvironment` from this table, infra/config.ts
 * the context keys of the deployed settings and the function's environment;
 * test/engine/settings.test.ts holds docs/configuration.md and cdk.json's `//` block to it.
 *
 * A new setting: one entry here and one row in docs/configuration.md (README.md's "A new setting").
 */
import { z } from 'zod';
import { MAX_TASK_TIMEOUT_SECONDS } from './limits.ts';
import { COMPRESSION, databaseList, flag, keyPrefix, matching, oneOf, patternList, recipientList, text, wholeNumber } from './fields.ts';
import { ROW_COUNT_MODES, RUNNER_CHOICES, SSL_MODES, STORAGE_PROFILE_SETTINGS, isTimeZone } from './values.ts';

export interface SettingDeclaration {
  /** Parses the variable's string (and a context value); output `undefined` when unset. */
  readonly schema: z.ZodType;
  /** One line: what it does (the full story is its row in docs/configuration.md). */
  readonly doc: string;
  /** The value when unset (docs/configuration.md's default column says the same; a test checks it). */
  readonly default?: unknown;
  /** Where loadConfig puts it in `Config`: a field, or `group.field`. Absent: read by a composite field (credentials, databases, identity, where it runs). */
  readonly config?: string;
  /** Seconds in the environment, milliseconds in `Config`. */
  readonly ms?: true;
  /** Missing is an error with this message (the variable named first). */
  readonly required?: string;
  /** May hold a password: never echoed in a message. */
  readonly secret?: true;
  /** Set by the platform, not by you (Lambda, ECS). */
  readonly platform?: string;
  /**
   * Deployed by the CDK stack from this context key (with the same schema: a value synth accepts is
   * a value the function accepts); `schema` when cdk.json's JSON form needs its own check, `pinned`
   * when the stack writes the default too.
   */
  readonly context?: { readonly key: string; readonly schema?: z.ZodType; readonly pinned?: true };
  /** Deployed by the CDK stack from its own resources or other keys (what it is set from). */
  readonly deployedBy?: string;
}

/** Seconds-valued whole numbers for timeouts, all in `Config` as milliseconds. */
const seconds = (min: number, max: number) => wholeNumber(min, max);

export const SETTINGS = {
  // The stack's environments list their variables in this order.
  DB_SECRET_ID: {
    schema: text,
    doc: 'Secrets Manager secret (ARN or name) with the database credentials in RDS JSON format, read at every run',
    deployedBy: 'dbSecretArn',
  },
  BACKUP_BUCKET: {
    schema: matching(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'an S3 bucket name (3-63 characters: lowercase letters, digits, dots, hyphens)'),
    doc: 'the bucket that receives the backups',
    config: 'bucket',
    required: 'BACKUP_BUCKET is required: the name of the bucket that receives the backups',
    deployedBy: 'the stack\'s bucket (bucketName)',
  },
  BACKUP_PREFIX: {
    schema: keyPrefix,
    doc: 'key prefix of every object: empty, or ending with /',
    default: 'pg-s3-backup/',
    config: 'prefix',
    context: { key: 'backupPrefix', pinned: true },
  },
  RETENTION_COUNT: {
    schema: wholeNumber(1, 1000),
    doc: 'complete backups kept per database',
    default: 7,
    config: 'retentionCount',
    context: { key: 'retentionCount', pinned: true },
  },
  RETENTION_DAILY: {
    schema: wholeNumber(0, 1000),
    doc: 'also keep the newest backup of each of the newest N days that hold one; 0: off',
    default: 0,
    config: 'gfs.daily',
    context: { key: 'retentionDaily', pinned: true },
  },
  RETENTION_WEEKLY: {
    schema: wholeNumber(0, 520),
    doc: 'also keep the newest backup of each of the newest N ISO weeks that hold one; 0: off',
    default: 0,
    config: 'gfs.weekly',
    context: { key: 'retentionWeekly', pinned: true },
  },
  RETENTION_MONTHLY: {
    schema: wholeNumber(0, 1200),
    doc: 'also keep the newest backup of each of the newest N months that hold one; 0: off',
    default: 0,
    config: 'gfs.monthly',
    context: { key: 'retentionMonthly', pinned: true },
  },
  RETENTION_TIME_ZONE: {
    schema: text.pipe(z.string().refine(isTimeZone, 'an IANA time zone such as UTC, Europe/Paris or Pacific/Auckland').optional()),
    doc: 'IANA zone whose calendar the retention days, weeks and months are taken in',
    default: 'UTC',
    config: 'gfs.timeZone',
    deployedBy: 'timeZone (the schedule\'s zone), with a GFS rule on',
  },
  ALERT_TOPIC_ARN: {
    schema: matching(/^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$/, 'an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>)'),
    doc: 'SNS topic of failure alerts and success notices',
    config: 'alertTopicArn',
    deployedBy: 'the stack\'s alert topic',
  },
  NOTIFY_ON_SUCCESS: {
    schema: flag,
    doc: 'also publish a notice when a run succeeds',
    default: false,
    config: 'notifyOnSuccess',
    context: { key: 'notifyOnSuccess', pinned: true },
  },
  DATABASES: {
    schema: databaseList,
    doc: 'comma-separated databases to back up; * lists them on the server at run time',
    context: {
      key: 'databases',
      // A JSON array in cdk.json: each entry checked, since a comma inside one would split it in the variable.
      schema: z.preprocess(
        (v) => (typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter((s) => s.length > 0) : v),
        z.array(z.string().min(1).refine((d) => !d.includes(','), 'database names without commas (DATABASES is comma-separated)'), { error: 'a JSON array of strings or a comma-separated string' }),
      ).optional(),
    },
  },
  PG_DUMP_COMPRESSION: {
    schema: matching(COMPRESSION, 'a pg_dump --compress spec such as "zstd:1", "gzip:6", "lz4" or "none"'),
    doc: 'pg_dump --compress spec',
    default: 'zstd:1',
    config: 'compression',
    context: { key: 'pgDumpCompression' },
  },
  ENCRYPT_RECIPIENTS: {
    schema: recipientList,
    doc: 'age public keys (age1…) every dump is encrypted to while it streams',
    config: 'encryptRecipients',
    secret: true,
    context: { key: 'encryptRecipients' },
  },
  DATABASE_INCLUDE: {
    schema: patternList,
    doc: 'with DATABASES=*: name patterns (* and ?) of the databases kept',
    default: ['*'],
    context: { key: 'databaseInclude' },
  },
  DATABASE_EXCLUDE: {
    schema: patternList,
    doc: 'with DATABASES=*: name patterns (* and ?) of the databases dropped (drop wins)',
    context: { key: 'databaseExclude' },
  },
  RUNNER: {
    schema: oneOf(RUNNER_CHOICES, '"lambda", "fargate" or "auto"'),
    doc: 'where the fan-out runs each database: lambda, fargate, or auto (Fargate once the last backup took > 60 % of the Lambda timeout)',
    default: 'lambda',
    config: 'runner',
    context: { key: 'runner', pinned: true },
  },
  STORAGE_PROFILE: {
    schema: oneOf(STORAGE_PROFILE_SETTINGS),
    doc: 'the S3-compatible store (its documented capabilities), or auto (probed at the first run)',
    config: 'storageProfile',
    deployedBy: 'the stack (aws: its bucket is S3)',
  },
  PG_SERVER_LAYER: { schema: text, doc: 'the drill: root of the pg-server layer (throwaway PostgreSQL)', config: 'serverLayerRoot', deployedBy: 'the drill function\'s pg-server layer' },
  AGE_IDENTITY_SECRET_ARN: {
    schema: matching(/^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$/, 'a Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>)'),
    doc: 'the same identity, from a Secrets Manager secret (the drill function\'s way)',
    deployedBy: 'drillIdentitySecretArn (the drill function)',
  },
  DATABASE_URL: {
    schema: matching(/^postgres(?:ql)?:\/\//, 'a URL of the form postgresql://user:password@host:port/database'),
    doc: 'postgresql:// URL instead of the secret (CLI and host mode only)',
    secret: true,
  },
  PG_DUMP_BIN: { schema: text, doc: 'the pg_dump to run (pg_dumpall from the same folder)', config: 'pgDumpBin' },
  ROW_COUNTS: {
    schema: oneOf(ROW_COUNT_MODES),
    doc: 'per-table row counts in the manifest, taken in the dump\'s snapshot: exact, estimate or off',
    default: 'exact',
    config: 'rowCounts',
  },
  DUMP_JOBS: {
    schema: wholeNumber(1, 16),
    doc: 'data-only pg_dumps side by side in the dump\'s one snapshot, each streamed to its own object (default: the Lambda function\'s vCPUs by memory, the Fargate task\'s, else 1)',
    context: { key: 'dumpJobs' },
  },
  BACKUP_GLOBALS: { schema: flag, doc: 'also store roles and tablespaces (pg_dumpall --globals-only) once per run', default: false, config: 'backupGlobals' },
  AGE_IDENTITY_FILE: { schema: text, doc: 'restore, verify, the drill: the age identity file that opens encrypted backups' },
  DB_SSLMODE: { schema: oneOf(SSL_MODES), doc: 'libpq sslmode, overriding the secret\'s', config: 'sslMode' },
  RUN_TIMEOUT_SECONDS: {
    schema: seconds(1, 7 * 86_400),
    doc: 'the whole run\'s deadline (six hours: beyond any dump this tool is meant for, never overlapping the next night)',
    default: 6 * 3600,
    config: 'runTimeoutMs',
    ms: true,
    deployedBy: 'the Fargate runner (fargateTimeoutHours)',
  },
  TASK_TIMEOUT_SECONDS: {
    schema: seconds(1, MAX_TASK_TIMEOUT_SECONDS),
    doc: 'the restore task\'s own deadline: the command stops this long after it started (pg_restore stopped, a --create\'d database dropped) and exits 124',
    deployedBy: 'the restore task (86400), and restore/verify --remote per task (their --timeout)',
  },
  RDS_CA_BUNDLE: { schema: text, doc: 'the RDS CA bundle a runner ships off Lambda: TLS then defaults to verify-full against it', config: 'rdsCaBundle', deployedBy: 'the Fargate runner (its image\'s bundle)' },
  CLOUDWATCH_METRICS: { schema: flag, doc: 'off Lambda: send the backup metrics with PutMetricData', default: false, config: 'cloudwatchMetrics', deployedBy: 'the Fargate runner' },
  DB_SSLROOTCERT: { schema: text, doc: 'CA bundle for verify-ca / verify-full', config: 'sslRootCert' },
  PG_CONNECT_TIMEOUT: { schema: wholeNumber(1, 600), doc: 'seconds to wait for the server to answer', default: 10, config: 'connectTimeoutSeconds' },
  TIME_MARGIN_SECONDS: { schema: seconds(0, 900), doc: 'stop the run when the Lambda has less than this left', default: 30, config: 'timeMarginMs', ms: true },
  AWS_CONNECT_TIMEOUT_SECONDS: { schema: seconds(1, 300), doc: 'each AWS call: TCP/TLS connection set-up', default: 5, config: 'aws.connectTimeoutMs', ms: true },
  AWS_REQUEST_TIMEOUT_SECONDS: { schema: seconds(1, 3600), doc: 'each AWS call: from the request (an upload part included) to the response\'s headers', default: 120, config: 'aws.requestTimeoutMs', ms: true },
  AWS_SOCKET_TIMEOUT_SECONDS: { schema: seconds(1, 3600), doc: 'each AWS call: the longest silence on an open connection, downloads included', default: 30, config: 'aws.socketTimeoutMs', ms: true },
  AWS_MAX_ATTEMPTS: { schema: wholeNumber(1, 10), doc: 'attempts per AWS call, the first included', default: 3, config: 'aws.maxAttempts' },
  ALERT_TIMEOUT_SECONDS: {
    schema: seconds(1, 300),
    doc: 'the longest one alert may take to publish, every attempt included (with the clean-up\'s 20 s, fits in the default TIME_MARGIN_SECONDS)',
    default: 10,
    config: 'alertTimeoutMs',
    ms: true,
  },
  PG_LOCK_WAIT_TIMEOUT: { schema: wholeNumber(1, 86_400), doc: 'seconds pg_dump waits for each table lock (--lock-wait-timeout)', default: 60, config: 'lockWaitTimeoutSeconds' },
  DUMP_STALL_TIMEOUT_SECONDS: { schema: seconds(1, 86_400), doc: 'no dump byte for this long stops pg_dump and aborts the upload', default: 300, config: 'dumpStallMs', ms: true },
  STALE_UPLOAD_AGE_SECONDS: {
    schema: seconds(0, 365 * 86_400),
    doc: 'prune aborts multipart uploads under the prefix older than this, by S3\'s clock (a day: no upload of a running backup is that old)',
    default: 86_400,
    config: 'staleUploadAgeMs',
    ms: true,
  },
  S3_FORCE_PATH_STYLE: { schema: flag, doc: 'path-style S3 requests, for S3-compatible servers', default: false, config: 'forcePathStyle' },
  STORAGE_MAX_PARTS: { schema: wholeNumber(1, 10_000), doc: 'the store\'s cap on the parts of one multipart upload, instead of the profile\'s', config: 'storageMaxParts' },
  HEARTBEAT_URL: {
    schema: matching(/^https?:\/\/[^\s/?#]+(?:\/[^\s?#]*)?$/, 'an http(s) URL without query string, such as https://hc-ping.com/<uuid>'),
    doc: 'CLI and host mode: a dead-man\'s switch pinged after each run (<url>, or <url>/fail)',
    config: 'heartbeatUrl',
    secret: true,
  },
  HEARTBEAT_TIMEOUT_SECONDS: { schema: seconds(1, 120), doc: 'how long a ping may take before it is given up', default: 10, config: 'heartbeatTimeoutMs', ms: true },
  LOG_LEVEL: { schema: text, doc: 'Powertools log level (read by Powertools itself)', default: 'INFO' },
  AWS_LAMBDA_FUNCTION_MEMORY_SIZE: { schema: wholeNumber(128, 10_240), doc: 'set in every Lambda function: its memory, which gives its vCPUs (DUMP_JOBS\'s default)', platform: 'Lambda' },
  AWS_LAMBDA_FUNCTION_NAME: { schema: text, doc: 'set in every Lambda function: the engine runs with Lambda\'s defaults (TLS verify-full, its time budget)', platform: 'Lambda' },
  ECS_CONTAINER_METADATA_URI_V4: { schema: text, doc: 'set in every ECS task: the engine runs on Fargate, without Lambda\'s time budget', platform: 'ECS' },
} as const satisfies Record<string, SettingDeclaration>;

export type SettingName = keyof typeof SETTINGS;
type Declarations = typeof SETTINGS;

/** The parsed value of a variable: `undefined` when unset. */
export type ParsedSetting<N extends SettingName> = z.output<Declarations[N]['schema']>;

/** The value `Config` holds for a variable: its default applied, seconds as milliseconds, lists frozen. */
export type SettingValue<N extends SettingName> = Declarations[N] extends { ms: true }
  ? number
  : Frozen<Declarations[N] extends { default: unknown } | { required: string } ? NonNullable<ParsedSetting<N>> : ParsedSetting<N>>;
type Frozen<T> = T extends readonly (infer E)[] ? readonly E[] : T;

type ConfigPath<N extends SettingName> = Declarations[N] extends { config: infer P extends string } ? P : never;

/** The `Config` fields read straight from one variable each, at the top level. */
export type SettingFields = { readonly [N in SettingName as ConfigPath<N> extends `${string}.${string}` ? never : ConfigPath<N>]: SettingValue<N> };
/** The `Config` fields of one group (`gfs`, `aws`). */
export type SettingGroup<G extends string> = { readonly [N in SettingName as GroupField<ConfigPath<N>, G>]: SettingValue<N> };
/** Distributive over `P`, so that a setting with no `config` path (never) adds no key. */
type GroupField<P, G extends string> = P extends `${G}.${infer F}` ? F : never;

/** Each declared default is a value its schema accepts (a type error here names the setting). */
type DefaultsFit = { [N in SettingName]: Declarations[N] extends { default: infer D } ? (D extends ParsedSetting<N> | readonly string[] ? true : N) : true }[SettingName];
const defaultsFit: DefaultsFit = true;
void defaultsFit;

/** A declared default, typed. */
export function defaultOf<N extends SettingName>(name: N): Declarations[N] extends { default: infer D } ? D : undefined {
  return (SETTINGS[name] as SettingDeclaration).default as Declarations[N] extends { default: infer D } ? D : undefined;
}

export const SETTING_NAMES = Object.keys(SETTINGS) as SettingName[];
