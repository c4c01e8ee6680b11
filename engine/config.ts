/**
 * Configuration, parsed once from the environment into a frozen object. The Lambda, the CLI and
 * host mode share it. Every error names the variable and the form it expects; nothing here ever
 * echoes a value that could be a secret (DATABASE_URL is reported by name only).
 *
 * Nothing here declares a setting: `Config`, the schema and the defaults derive from
 * engine/settings/settings.ts; this file adds only the fields composed from several variables
 * (credentials, databases and discovery, identity, where the process runs) and their cross-checks.
 */
import { z } from 'zod';
import { ConfigError } from './errors.ts';
import { SETTINGS, SETTING_NAMES, defaultOf, type SettingDeclaration, type SettingFields, type SettingGroup, type SettingName } from './settings/settings.ts';
import type { IdentitySource } from './settings/values.ts';

export { RUNNER_CHOICES, SSL_MODES, type RunnerChoice, type SslMode } from './settings/values.ts';

export type CredentialSource =
  | { readonly kind: 'secret'; readonly secretId: string }
  | { readonly kind: 'url'; readonly url: string }
  /** Neither is set, and the caller said it only reads the bucket (`list`, `restore`, `verify`, `prune`). */
  | { readonly kind: 'none' };

/** Every setting read from one variable (engine/settings/settings.ts), and the fields composed from several. */
export type Config = SettingFields & {
  /** Where the database credentials come from: the Secrets Manager secret, or DATABASE_URL (CLI/host mode). */
  readonly credentials: CredentialSource;
  /** DATABASES; undefined means "the secret's (or URL's) database", or discovery when `discover` is set. */
  readonly databases: readonly string[] | undefined;
  /** DATABASES=*: the databases are listed on the server at run time, filtered by DATABASE_INCLUDE / DATABASE_EXCLUDE. */
  readonly discover: { readonly include: readonly string[]; readonly exclude: readonly string[] } | undefined;
  /**
   * DUMP_JOBS: data-only pg_dumps run side by side in the dump's snapshot, each streamed to its
   * own object (issue 24, engine/backup/shards.ts); 1: one archive, as before. Default: the
   * Lambda function's vCPUs by memory, else 1 (defaultDumpJobs).
   */
  readonly dumpJobs: number;
  /** Where this process runs: the Lambda function, the Fargate task, or a host (CLI, cron). */
  readonly runningOn: RunningOn;
  /** Running inside AWS Lambda (AWS_LAMBDA_FUNCTION_NAME set): TLS defaults to verify-full. */
  readonly inLambda: boolean;
  /** RETENTION_DAILY / _WEEKLY / _MONTHLY and RETENTION_TIME_ZONE: grandfather-father-son retention beside RETENTION_COUNT (engine/backup/gfs.ts). */
  readonly gfs: SettingGroup<'gfs'>;
  /** Bounds of every AWS SDK call (S3, Secrets Manager, SNS): the SDK's own defaults wait forever on a server that never answers. */
  readonly aws: AwsTimeouts;
  /** AGE_IDENTITY_FILE or AGE_IDENTITY_SECRET_ARN: where restore, verify and the drill find the identity of encrypted backups. */
  readonly identity: IdentitySource | undefined;
};

/** AWS_CONNECT_TIMEOUT_SECONDS, AWS_REQUEST_TIMEOUT_SECONDS, AWS_SOCKET_TIMEOUT_SECONDS (as milliseconds) and AWS_MAX_ATTEMPTS. */
export type AwsTimeouts = SettingGroup<'aws'>;

export type Env = Readonly<Record<string, string | undefined>>;

export type RunningOn = 'lambda' | 'fargate' | 'host';

/** The function's timeout (Lambda's maximum): infra sets it, the fan-out's plan sizes runners against it. */
export const LAMBDA_TIMEOUT_SECONDS = 900;

/** Some declared defaults under the names their callers used before the table (engine/settings/settings.ts holds the values). */
export const DEFAULTS = {
  prefix: defaultOf('BACKUP_PREFIX'),
  retentionCount: defaultOf('RETENTION_COUNT'),
  retentionDaily: defaultOf('RETENTION_DAILY'),
  retentionWeekly: defaultOf('RETENTION_WEEKLY'),
  retentionMonthly: defaultOf('RETENTION_MONTHLY'),
  retentionTimeZone: defaultOf('RETENTION_TIME_ZONE'),
  compression: defaultOf('PG_DUMP_COMPRESSION'),
  rowCounts: defaultOf('ROW_COUNTS'),
  connectTimeoutSeconds: defaultOf('PG_CONNECT_TIMEOUT'),
  timeMarginSeconds: defaultOf('TIME_MARGIN_SECONDS'),
  heartbeatTimeoutSeconds: defaultOf('HEARTBEAT_TIMEOUT_SECONDS'),
  awsConnectTimeoutSeconds: defaultOf('AWS_CONNECT_TIMEOUT_SECONDS'),
  awsRequestTimeoutSeconds: defaultOf('AWS_REQUEST_TIMEOUT_SECONDS'),
  awsSocketTimeoutSeconds: defaultOf('AWS_SOCKET_TIMEOUT_SECONDS'),
  awsMaxAttempts: defaultOf('AWS_MAX_ATTEMPTS'),
  alertTimeoutSeconds: defaultOf('ALERT_TIMEOUT_SECONDS'),
  runTimeoutSeconds: defaultOf('RUN_TIMEOUT_SECONDS'),
  lockWaitTimeoutSeconds: defaultOf('PG_LOCK_WAIT_TIMEOUT'),
  dumpStallTimeoutSeconds: defaultOf('DUMP_STALL_TIMEOUT_SECONDS'),
  staleUploadAgeSeconds: defaultOf('STALE_UPLOAD_AGE_SECONDS'),
} as const;

/*
 * One schema for every setting of the engine, keyed by its environment variable, derived from the
 * declarations (engine/settings/settings.ts). The function, the CLI and host mode parse the
 * environment with it; the CDK app validates the context keys of deployed settings with the same
 * field schemas and writes the function's environment through `toEnvironment()`, so a value cannot
 * be valid in one place and invalid in the other.
 */
type Schemas = { readonly [N in SettingName]: (typeof SETTINGS)[N]['schema'] };
export const ENGINE_SETTINGS = Object.fromEntries(SETTING_NAMES.map((n) => [n, SETTINGS[n].schema])) as unknown as Schemas;

export type EngineVariable = SettingName;

const EnvSchema = z.object(ENGINE_SETTINGS);
type Parsed = z.output<typeof EnvSchema>;

const declaration = (name: string): SettingDeclaration | undefined => (SETTINGS as Record<string, SettingDeclaration>)[name];

/** The message for one problem with one variable, in the engine's words. */
function describeEnvIssue(issue: z.core.$ZodIssue, env: Env): string {
  const name = String(issue.path[0] ?? '(environment)');
  const raw = env[name];
  // A variable that may hold a password is never echoed.
  const got = declaration(name)?.secret || raw === undefined ? '' : `; got ${JSON.stringify(raw.trim())}`;
  return `${name} must be ${issue.message}${got}`;
}

/** A setting's value as the CDK app holds it (a list is written comma-separated). */
export type DeployedValue = string | number | boolean | readonly string[];

/**
 * The function's environment from settings the CDK app holds: every literal value is checked by
 * the same field schema the engine parses it with (throws naming the variable); values for which
 * `isDeployTimeValue` is true (CloudFormation tokens such as a bucket name) are passed through.
 */
export function toEnvironment(
  values: Partial<Record<EngineVariable, DeployedValue | undefined>>,
  options: { readonly isDeployTimeValue?: (value: string) => boolean } = {},
): Record<string, string> {
  const out: Record<string, string> = {};
  const problems: string[] = [];
  // In the declarations' order, whatever the caller's: the template does not change with it.
  for (const name of SETTING_NAMES) {
    const value = values[name];
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
  const v: Partial<Parsed> = parsed.success ? parsed.data : fieldsThatParse(env);
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

  for (const name of SETTING_NAMES) {
    const required = declaration(name)?.required;
    const raw = env[name];
    if (required && (raw === undefined || raw.trim() === '')) problems.push(required);
  }

  if (problems.length > 0) throw new ConfigError(problems.join('\n'));
  const c = v as Parsed;

  const discover = c.DATABASES?.length === 1 && c.DATABASES[0] === '*';
  if (!discover && (c.DATABASE_INCLUDE || c.DATABASE_EXCLUDE)) {
    throw new ConfigError('DATABASE_INCLUDE and DATABASE_EXCLUDE filter discovered databases: they need DATABASES=*');
  }
  return Object.freeze({
    ...settingFields(c),
    credentials: Object.freeze(credentials),
    databases: discover ? undefined : c.DATABASES && Object.freeze([...new Set(c.DATABASES)]),
    discover: discover ? Object.freeze({ include: Object.freeze(c.DATABASE_INCLUDE ?? defaultOf('DATABASE_INCLUDE')), exclude: Object.freeze(c.DATABASE_EXCLUDE ?? []) }) : undefined,
    runningOn: inLambda ? 'lambda' : c.ECS_CONTAINER_METADATA_URI_V4 !== undefined ? 'fargate' : 'host',
    dumpJobs: c.DUMP_JOBS ?? defaultDumpJobs(inLambda ? c.AWS_LAMBDA_FUNCTION_MEMORY_SIZE : undefined),
    inLambda,
    identity: c.AGE_IDENTITY_FILE !== undefined
      ? Object.freeze({ kind: 'file' as const, path: c.AGE_IDENTITY_FILE })
      : c.AGE_IDENTITY_SECRET_ARN !== undefined ? Object.freeze({ kind: 'secret' as const, secretId: c.AGE_IDENTITY_SECRET_ARN }) : undefined,
  } as Config);
}

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

/**
 * Each declaration's `config` field: the parsed value or its default, seconds as milliseconds,
 * lists frozen with each entry once; `group.field` paths make frozen groups (gfs, aws).
 */
function settingFields(c: Parsed): SettingFields & { readonly gfs: SettingGroup<'gfs'>; readonly aws: AwsTimeouts } {
  const out: Record<string, unknown> = {};
  for (const name of SETTING_NAMES) {
    const d = SETTINGS[name] as SettingDeclaration;
    if (d.config === undefined) continue;
    let value = c[name] ?? d.default;
    if (d.ms && typeof value === 'number') value *= 1000;
    if (Array.isArray(value)) value = Object.freeze([...new Set(value)]);
    const [group, field] = d.config.includes('.') ? d.config.split('.') : [undefined, d.config];
    if (group === undefined) out[field!] = value;
    else out[group] = { ...(out[group] as Record<string, unknown> | undefined), [field!]: value };
  }
  for (const value of Object.values(out)) if (value !== null && typeof value === 'object') Object.freeze(value);
  return out as SettingFields & { readonly gfs: SettingGroup<'gfs'>; readonly aws: AwsTimeouts };
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
    heartbeatTimeoutMs: (field('HEARTBEAT_TIMEOUT_SECONDS') ?? defaultOf('HEARTBEAT_TIMEOUT_SECONDS')) * 1000,
    alertTimeoutMs: (field('ALERT_TIMEOUT_SECONDS') ?? defaultOf('ALERT_TIMEOUT_SECONDS')) * 1000,
  };
}

/** When some variables are wrong, the ones that parse (so the cross-checks still report). */
function fieldsThatParse(env: Env): Partial<Parsed> {
  const out: Record<string, unknown> = {};
  for (const [name, schema] of Object.entries(ENGINE_SETTINGS)) {
    const r = (schema as z.ZodType).safeParse(env[name]);
    if (r.success) out[name] = r.data;
  }
  return out as Partial<Parsed>;
}
