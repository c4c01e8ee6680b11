/**
 * CDK context → validated, readonly deployment configuration. Parsed once at synth; every error
 * names the context key and the expected form, and all errors are reported together.
 *
 * Context comes from cdk.json (JSON values) or from `-c key=value` (always strings), so numbers,
 * booleans and lists accept both forms: `-c alertEmails=a@example.com,b@example.com`.
 * Keys starting with `//` or `_` are comments; keys containing `:` or starting with `@` belong to
 * the CDK itself (feature flags, lookup caches) and are ignored. Any other unknown key is an error,
 * so a typo never silently falls back to a default.
 */
import { z } from 'zod';
import type { DeployedValue, RunnerChoice } from '../engine/config.ts';
import { SETTINGS, SETTING_NAMES, defaultOf, type ParsedSetting, type SettingDeclaration, type SettingName } from '../engine/settings/settings.ts';
import { ARCHITECTURES, type Architecture } from '../layers/pg-dump/paths.ts';
import { checkDailyTime, formatHourMinute, isValidTimeZone, proposeSafeTimes } from './dst.ts';

export class InfraConfigError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'InfraConfigError';
  }
}

/**
 * The lifecycle backstop. The engine's pruning is the retention; the rule only catches what
 * pruning missed (a database dropped from `databases`, a function that stopped running), so it
 * must give a stopped backup time to be noticed and fixed: with one backup a night, the newest
 * complete backup of every database stays listed for `backstopExpirationDays` failed nights
 * (S3 expires objects at the first midnight UTC after creation + N days, never before), then its
 * versions stay recoverable for `noncurrentVersionDays` more days.
 */
export const DEFAULT_BACKSTOP_EXPIRATION_DAYS = 100;
export const DEFAULT_NONCURRENT_VERSION_DAYS = 30;
/**
 * The backstop must never remove a backup pruning keeps: with one backup a night the oldest kept
 * one is `retentionCount` days old when the next run prunes it; two days of slack cover a run
 * delivered late (Scheduler retries for up to 4 h, a 25-hour fall-back night).
 */
export const BACKSTOP_MARGIN_DAYS = 2;
/**
 * The oldest backup pruning keeps, in days, with one backup a night: RETENTION_COUNT nights, the
 * daily rule's days, a week per weekly backup, a month (31 days at most) per monthly one. The
 * backstop must outlive it, or the lifecycle would expire backups the rules keep.
 */
export function longestKeepDays(r: { readonly retentionCount: number; readonly daily: number; readonly weekly: number; readonly monthly: number }): { days: number; key: string; formula: string } {
  const candidates = [
    { days: r.retentionCount, key: 'retentionCount', formula: `retentionCount ${r.retentionCount}` },
    { days: r.daily, key: 'retentionDaily', formula: `retentionDaily ${r.daily}` },
    { days: r.weekly * 7, key: 'retentionWeekly', formula: `retentionWeekly ${r.weekly} × 7` },
    { days: r.monthly * 31, key: 'retentionMonthly', formula: `retentionMonthly ${r.monthly} × 31` },
  ];
  return candidates.reduce((a, b) => (b.days > a.days ? b : a));
}
/** How often the restore drill runs: every night, once a week (Sundays), or never (no drill function). */
export const DRILL_SCHEDULES = ['nightly', 'weekly', 'off'] as const;
export type DrillFrequency = Exclude<(typeof DRILL_SCHEDULES)[number], 'off'>;
/** The throwaway server and pg_restore share the function's memory: below 2 GB a mid-size restore swaps into failure. */
export const DRILL_MIN_MEMORY_MB = 2048;

/** Fargate's CPU sizes (vCPU units). */
const FARGATE_CPU = [256, 512, 1024, 2048, 4096, 8192, 16384] as const;

/** Log retention values CloudWatch Logs accepts. */
const LOG_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653] as const;

const fromString = (v: unknown): unknown => (typeof v === 'string' ? v.trim() : v);

const int = (min: number, max: number) => {
  const expected = `an integer from ${min} to ${max}`;
  return z.preprocess(
    (v) => (typeof v === 'string' && /^-?\d+$/.test(v.trim()) ? Number(v.trim()) : v),
    z.number({ error: expected }).int(expected).min(min, expected).max(max, expected),
  );
};

const bool = z.preprocess(
  (v) => (v === 'true' ? true : v === 'false' ? false : v),
  z.boolean({ error: '`true` or `false`' }),
);

/** A JSON array of strings, or one comma-separated string. */
const list = (item: z.ZodType<string>) =>
  z.preprocess(
    (v) =>
      typeof v === 'string'
        ? v
            .split(',')
            .map((s) => s.trim())
            .filter((s) => s.length > 0)
        : v,
    z.array(item, { error: 'a JSON array of strings or a comma-separated string' }),
  );

const idOf = (prefix: string) => z.preprocess(fromString, z.string().regex(new RegExp(`^${prefix}-[0-9a-f]{8,17}$`), `an id like ${prefix}-0123456789abcdef0`));

const secretArn = z.preprocess(
  fromString,
  z
    .string({ error: 'required: the complete ARN of the Secrets Manager secret with the database credentials' })
    .regex(
      /^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@!-]+-[A-Za-z0-9]{6}$/,
      'the complete secret ARN, ending with the 6-character suffix, e.g. arn:aws:secretsmanager:eu-west-3:123456789012:secret:prod/db-AbCdEf',
    ),
);


/**
 * Why `arn` is not the ARN of a KMS key an IAM policy can name, or undefined when it is one: a key
 * id is a UUID, or `mrk-` and 32 hex digits for a multi-Region key; an alias ARN names no key in
 * an IAM policy (a grant on it allows nothing).
 */
export function kmsKeyArnProblem(arn: string): string | undefined {
  if (/^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:alias\//.test(arn)) return 'is an alias ARN, which an IAM policy cannot grant: give the key\'s ARN (aws kms describe-key --key-id <alias> --query KeyMetadata.Arn)';
  if (!/^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})$/.test(arn)) {
    return 'is not a KMS key ARN (arn:aws:kms:<region>:<account>:key/<uuid or mrk-…>)';
  }
  return undefined;
}

/** A KMS key ARN, as kmsKeyArnProblem judges it (multi-Region keys included, alias ARNs refused saying why). */
const kmsKeyArnString = z.string().superRefine((arn, ctx) => {
  const problem = kmsKeyArnProblem(arn);
  if (problem) ctx.addIssue({ code: 'custom', message: `a KMS key ARN, but ${arn} ${problem}` });
});
const kmsKeyArn = z.preprocess(fromString, kmsKeyArnString);

/** S3 storage classes a replication rule may write replicas in. */
export const REPLICA_STORAGE_CLASSES = ['STANDARD', 'STANDARD_IA', 'ONEZONE_IA', 'INTELLIGENT_TIERING', 'GLACIER_IR', 'GLACIER', 'DEEP_ARCHIVE'] as const;

/** `replication` (an object in cdk.json, a JSON string with `-c`): the second copy by S3 Replication. */
const replicationSchema = z.preprocess(
  (v) => {
    if (typeof v !== 'string') return v;
    try {
      return JSON.parse(v) as unknown;
    } catch {
      return v;
    }
  },
  z
    .object(
      {
        destinationBucketArn: z.string().regex(/^arn:aws[a-z-]*:s3:::[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'a bucket ARN such as arn:aws:s3:::my-backups-replica'),
        destinationKmsKeyArn: kmsKeyArn,
        destinationAccount: z.string().regex(/^\d{12}$/, 'a 12-digit AWS account id').optional(),
        storageClass: z.enum(REPLICA_STORAGE_CLASSES, { error: `one of ${REPLICA_STORAGE_CLASSES.join(', ')}` }).optional(),
      },
      { error: 'an object {"destinationBucketArn": …, "destinationKmsKeyArn": …, "destinationAccount"?: …, "storageClass"?: …} (a JSON string with -c)' },
    )
    .strict(),
);

/** One context key the stack itself reads (not an engine variable): its schema, default and one-line doc. */
export interface ContextDeclaration {
  readonly schema: z.ZodType;
  readonly default?: unknown;
  /** Documented in cdk.json's `//` and docs/configuration.md; a test holds both to this table. */
  readonly doc: string;
  /** No default: synth fails without it. */
  readonly required?: true;
}

/**
 * The stack's own context keys, declared once. The engine's settings the stack deploys from the
 * context (retentionCount, encryptRecipients, …) are declared with the engine's variable
 * (engine/settings/settings.ts, `context`) and join these in `ContextSchema`.
 */
export const CONTEXT_SETTINGS = {
  stackName: { schema: z.preprocess(fromString, z.string().regex(/^[A-Za-z][A-Za-z0-9-]{0,127}$/, 'a CloudFormation stack name (letters, digits, hyphens)')), default: 'PgS3Backup', doc: 'CloudFormation stack name' },
  account: { schema: z.preprocess(fromString, z.string().regex(/^\d{12}$/, 'a 12-digit AWS account id')), doc: 'pins the stack to an account (default: environment-agnostic)' },
  region: { schema: z.preprocess(fromString, z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'an AWS region such as eu-west-3')), doc: 'pins the stack to a region (default: environment-agnostic)' },

  dbSecretArn: { schema: secretArn, required: true, doc: 'complete ARN of the Secrets Manager secret in RDS JSON format (host, port, username, password, dbname)' },
  dbSecretKmsKeyArn: { schema: kmsKeyArn, doc: 'the secret\'s customer-managed KMS key, if it has one (omit for aws/secretsmanager)' },
  dbPort: { schema: int(1, 65535), default: 5432, doc: 'PostgreSQL port' },

  vpcId: { schema: idOf('vpc'), doc: 'the database\'s VPC (omit only for a database reachable from the internet)' },
  subnetIds: { schema: list(z.string().regex(/^subnet-[0-9a-f]{8,17}$/, 'subnet ids like subnet-0123456789abcdef0')), doc: 'the function\'s subnets, imported by id (synth stays offline)' },
  subnetType: {
    schema: z.enum(['PRIVATE_WITH_EGRESS', 'PRIVATE_ISOLATED'], { error: '`PRIVATE_WITH_EGRESS` or `PRIVATE_ISOLATED`' }),
    doc: 'instead of subnetIds: the VPC is looked up (needs account, region, credentials once; cached in cdk.context.json)',
  },
  dbSecurityGroupId: { schema: idOf('sg'), doc: 'the database\'s security group: gets an ingress rule from the function\'s group on dbPort' },

  scheduleHour: { schema: int(0, 23), default: 2, doc: 'local hour of the nightly backup' },
  scheduleMinute: { schema: int(0, 59), default: 0, doc: 'its minute' },
  timeZone: {
    schema: z.preprocess(fromString, z.string().refine(isValidTimeZone, 'an IANA time zone such as UTC, Europe/Paris or America/New_York')),
    default: 'UTC',
    doc: 'IANA zone of the schedule (and of the GFS retention\'s calendar); synth rejects a time that falls into a DST gap',
  },
  allowDstSkip: { schema: bool, default: false, doc: 'accept a time inside a DST gap (one skipped night a year)' },

  alertEmails: { schema: list(z.email('e-mail addresses')), default: [], doc: 'e-mail subscriptions of the alert topic (each address confirms once)' },
  slackWorkspaceId: {
    schema: z.preprocess(fromString, z.string().regex(/^[A-Z0-9]{9,11}$/, 'the Slack workspace (team) id, e.g. T0123ABCD, as AWS Chatbot shows it')),
    doc: 'AWS Chatbot Slack workspace, with slackChannelId (authorise the workspace in the AWS Chatbot console first)',
  },
  slackChannelId: { schema: z.preprocess(fromString, z.string().regex(/^[A-Z0-9]{9,11}$/, 'the Slack channel id, e.g. C0123ABCD')), doc: 'the Slack channel, with slackWorkspaceId' },

  architecture: { schema: z.enum(ARCHITECTURES, { error: '`arm64` or `x86_64`' }), default: 'arm64', doc: 'arm64 or x86_64 (the layer must be built for it)' },
  memorySize: { schema: int(128, 10240), default: 1024, doc: 'function memory, MB (CPU grows with it)' },
  logRetentionDays: {
    schema: z.preprocess(
      (v) => (typeof v === 'string' && /^\d+$/.test(v.trim()) ? Number(v.trim()) : v),
      z.number().refine((n) => (LOG_RETENTION_DAYS as readonly number[]).includes(n), `one of ${LOG_RETENTION_DAYS.join(', ')}`),
    ),
    default: 90,
    doc: 'log retention of the functions (a CloudWatch Logs value: 30, 90, 365…)',
  },

  bucketName: {
    schema: z.preprocess(fromString, z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'an S3 bucket name (3-63 lowercase letters, digits, dots, hyphens)')),
    doc: 'use this existing bucket instead of creating one',
  },
  bucketKmsKeyArn: { schema: kmsKeyArn, doc: 'the imported bucket\'s SSE-KMS key (with bucketName only)' },
  objectLockDays: { schema: int(1, 36500), doc: 'Object Lock (WORM) default retention of the created bucket, days' },
  objectLockMode: { schema: z.enum(['GOVERNANCE', 'COMPLIANCE'], { error: '`GOVERNANCE` or `COMPLIANCE`' }), default: 'GOVERNANCE', doc: 'GOVERNANCE or COMPLIANCE' },
  backstopExpirationDays: {
    schema: int(BACKSTOP_MARGIN_DAYS + 1, 36500),
    doc: `lifecycle backstop: days before a backup pruning never removed expires (${DEFAULT_BACKSTOP_EXPIRATION_DAYS}, or the longest keep + ${BACKSTOP_MARGIN_DAYS} if larger)`,
  },
  replication: { schema: replicationSchema, doc: 'a second copy by S3 Replication (created bucket only): {"destinationBucketArn", "destinationKmsKeyArn", "destinationAccount"?, "storageClass"?}' },
  noncurrentVersionDays: { schema: int(1, 36500), default: DEFAULT_NONCURRENT_VERSION_DAYS, doc: 'pruned or expired backups stay recoverable (noncurrent versions) this long' },

  // Fleets and long dumps (docs/architecture.md, "Fan-out and the Fargate runner").
  fanOut: { schema: bool, doc: 'a Step Functions state machine runs one backup per database (default: on with databases=* or runner other than lambda)' },
  maxConcurrency: { schema: int(1, 40), default: 4, doc: 'backups running at once in the fan-out' },
  fargateCpu: {
    schema: z.preprocess((v) => (typeof v === 'string' && /^\d+$/.test(v.trim()) ? Number(v.trim()) : v), z.number().refine((n) => FARGATE_CPU.includes(n as never), `one of ${FARGATE_CPU.join(', ')} (vCPU units)`)),
    default: 1024,
    doc: 'the Fargate task\'s CPU (vCPU units)',
  },
  fargateMemoryMiB: { schema: int(512, 122880), default: 2048, doc: 'the Fargate task\'s memory, MiB' },
  fargateEphemeralGiB: { schema: int(21, 200), default: 21, doc: 'the Fargate task\'s storage, GiB' },
  fargateTimeoutHours: { schema: int(1, 22), default: 6, doc: 'the bound of one Fargate backup, hours' },

  // The restore drill (issue 13): its own function and schedule, an hour after the backup.
  drillSchedule: {
    schema: z.enum(DRILL_SCHEDULES, { error: '`nightly`, `weekly` or `off`' }),
    doc: 'the restore drill function, an hour after the backup: nightly, weekly (Sundays) or off (default: nightly; off with encryptRecipients and no drillIdentitySecretArn); needs npm run build:layer:server -- <architecture> before synth',
  },
  drillEphemeralStorageMiB: { schema: int(512, 10240), default: 10240, doc: 'the drill\'s /tmp, MiB: the dump and the restored database must fit' },
  // Encrypted backups drill too when the drill may read an age identity from this secret (its
  // value is the identity; the function reads it at run time, it is never in the environment).
  drillIdentitySecretArn: { schema: secretArn, doc: 'the Secrets Manager secret holding the age identity, so that the drill restores encrypted backups' },
  drillIdentitySecretKmsKeyArn: { schema: kmsKeyArn, doc: 'that secret\'s customer-managed KMS key, if it has one' },
  drillMemorySize: { schema: int(DRILL_MIN_MEMORY_MB, 10240), default: DRILL_MIN_MEMORY_MB, doc: 'the drill function\'s memory, MB: the throwaway server and pg_restore share it' },

  // restore --remote (with the Fargate runner): the customer-managed keys of its secrets.
  restoreSecretKmsKeyArns: {
    schema: list(kmsKeyArnString),
    default: [],
    doc: 'KMS key ARNs the restore task may decrypt its secrets (<stackName>/restore/…) with, through Secrets Manager only (omit for aws/secretsmanager)',
  },
} as const satisfies Record<string, ContextDeclaration>;

type ContextSettings = typeof CONTEXT_SETTINGS;
/** The engine settings deployed from a context key, by that key. */
type DeployedByContext = { [N in SettingName as (typeof SETTINGS)[N] extends { context: { key: infer K extends string } } ? K : never]: N };
type ContextValue<N extends SettingName> = (typeof SETTINGS)[N] extends { context: { pinned: true } } ? NonNullable<ParsedSetting<N>> : ParsedSetting<N>;
type ContextValues = { readonly [K in keyof ContextSettings]: ContextSettings[K] extends { default: unknown } | { required: true } ? z.output<ContextSettings[K]['schema']> : z.output<ContextSettings[K]['schema']> | undefined } & {
  readonly [K in keyof DeployedByContext]: ContextValue<DeployedByContext[K]>;
};

/** The engine settings the stack deploys from the context: context key → variable. */
export const CONTEXT_DEPLOYED = Object.fromEntries(
  SETTING_NAMES.flatMap((n) => {
    const key = (SETTINGS[n] as SettingDeclaration).context?.key;
    return key ? [[key, n]] : [];
  }),
) as Readonly<Record<string, SettingName>>;

/** A context value as the engine variable would hold it: numbers, booleans and lists from cdk.json taken as their text. */
const asVariable = (v: unknown): unknown => (typeof v === 'number' || typeof v === 'boolean' ? String(v) : Array.isArray(v) ? v.join(',') : v);

const ContextSchema = z
  .object({
    ...(Object.fromEntries(
      Object.entries(CONTEXT_SETTINGS).map(([key, d]: [string, ContextDeclaration]) => [
        key,
        'required' in d ? d.schema : d.default !== undefined ? d.schema.default(d.default as never) : d.schema.optional(),
      ]),
    ) as Record<string, z.ZodType>),
    // The engine's own field schemas: a value synth accepts is a value the function accepts (and the other way round).
    ...(Object.fromEntries(
      Object.entries(CONTEXT_DEPLOYED).map(([key, name]) => {
        const d = SETTINGS[name] as SettingDeclaration;
        const schema = d.context?.schema ?? z.preprocess(asVariable, d.schema);
        return [key, d.context?.pinned ? schema.transform((v) => v ?? d.default) : schema];
      }),
    ) as Record<string, z.ZodType>),
  })
  .strict();

const ScheduleSchema = ContextSchema.pick({ scheduleHour: true, scheduleMinute: true, timeZone: true, allowDstSkip: true });

export interface VpcConfig {
  readonly vpcId: string;
  /** Explicit subnets: imported by id, no lookup, synth stays offline. */
  readonly subnetIds?: readonly string[];
  /** Subnet type: needs a VPC lookup (credentials once, then cdk.context.json). */
  readonly subnetType?: 'PRIVATE_WITH_EGRESS' | 'PRIVATE_ISOLATED';
  readonly dbSecurityGroupId?: string;
}

export interface BackupConfig {
  readonly stackName: string;
  /**
   * The engine settings deployed from the context (engine/settings/settings.ts, `context`), as the
   * backup function's environment takes them (`functionSettings`).
   */
  readonly functionSettings: Readonly<Partial<Record<SettingName, DeployedValue>>>;
  readonly env?: { readonly account?: string; readonly region?: string };
  readonly dbSecretArn: string;
  readonly dbSecretKmsKeyArn?: string;
  /** The customer-managed keys the restore task (restore --remote) may decrypt its secrets with. */
  readonly restoreSecretKmsKeyArns: readonly string[];
  /** Empty: the secret's `dbname`. */
  readonly databases: readonly string[];
  readonly dbPort: number;
  readonly vpc?: VpcConfig;
  readonly schedule: { readonly hour: number; readonly minute: number; readonly timeZone: string; readonly allowDstSkip: boolean };
  readonly retentionCount: number;
  /** RETENTION_DAILY / _WEEKLY / _MONTHLY (0: off); their calendar is the schedule's time zone. */
  readonly gfs: { readonly daily: number; readonly weekly: number; readonly monthly: number };
  readonly backupPrefix: string;
  readonly pgDumpCompression?: string;
  /** ENCRYPT_RECIPIENTS: dumps are encrypted to these age public keys; the stack never sees an identity. */
  readonly encryptRecipients?: readonly string[];
  readonly notifyOnSuccess: boolean;
  readonly alertEmails: readonly string[];
  readonly slack?: { readonly workspaceId: string; readonly channelId: string };
  readonly architecture: Architecture;
  readonly memorySize: number;
  readonly logRetentionDays: number;
  /** DATABASES=*: the function lists the databases at run time, filtered by these patterns. */
  readonly discover?: { readonly include: readonly string[]; readonly exclude: readonly string[] };
  /** The Step Functions fan-out (absent: the schedule invokes the function once for all databases). */
  readonly fanOut?: {
    readonly runner: RunnerChoice;
    readonly maxConcurrency: number;
    /** The Fargate runner's task (runner `fargate` or `auto`). */
    readonly fargate?: { readonly cpu: number; readonly memoryMiB: number; readonly ephemeralStorageGiB: number; readonly timeoutHours: number };
  };
  /** The restore drill's function and schedule (absent: drillSchedule=off). */
  readonly drill?: DrillConfig;
  readonly bucket: {
    readonly existingBucketName?: string;
    readonly existingBucketKmsKeyArn?: string;
    readonly objectLock?: { readonly days: number; readonly mode: 'GOVERNANCE' | 'COMPLIANCE' };
    /** The created bucket's lifecycle backstop (an imported bucket's rules are its owner's). */
    readonly lifecycle?: LifecycleConfig;
    /** A second copy of the prefix by S3 Replication (a created bucket only). */
    readonly replication?: ReplicationConfig;
  };
}

/** The second copy by S3 Replication (infra/constructs/backup-replication.ts). */
export interface ReplicationConfig {
  /** The destination bucket: versioning on, in another region or account (its policy is the destination owner's). */
  readonly destinationBucketArn: string;
  /** The KMS key replicas are encrypted with, in the destination bucket's region. */
  readonly destinationKmsKeyArn: string;
  /** Cross-account: the destination account, which then owns the replicas. */
  readonly destinationAccount?: string;
  /** The replicas' storage class (default: the source's). */
  readonly storageClass?: (typeof REPLICA_STORAGE_CLASSES)[number];
}

export interface DrillConfig {
  readonly frequency: DrillFrequency;
  /** Local time of the drill in `timeZone`: the backup's plus one hour (or the first hour after that which never falls into a DST gap). */
  readonly hour: number;
  readonly minute: number;
  readonly timeZone: string;
  readonly ephemeralStorageMiB: number;
  readonly memorySize: number;
  /** The age identity of encrypted backups (drillIdentitySecretArn), and its secret's customer-managed key. */
  readonly identitySecret?: IdentitySecret;
}

export interface IdentitySecret {
  readonly arn: string;
  readonly kmsKeyArn?: string;
}

export interface LifecycleConfig {
  /** Days after creation at which a current object under the prefix expires (becomes noncurrent). */
  readonly backstopExpirationDays: number;
  /** Days a noncurrent version (pruned or expired) stays recoverable. */
  readonly noncurrentVersionDays: number;
}

/** Context keys that are comments or belong to the CDK itself. */
function isForeignKey(key: string): boolean {
  return key.startsWith('//') || key.startsWith('_') || key.startsWith('@') || key.includes(':');
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const key = issue.path.length > 0 ? issue.path.join('.') : '(context)';
  if (issue.code === 'unrecognized_keys') {
    return `unknown context key(s) ${issue.keys.map((k) => `"${k}"`).join(', ')}: known keys are ${Object.keys(ContextSchema.shape).join(', ')}`;
  }
  return `context "${key}": expected ${issue.message}`;
}

export interface ParseOptions {
  /** The day the DST check starts from (default: now). */
  readonly now?: Date;
}

/** Validates the whole context at once; throws an `InfraConfigError` listing every problem. */
export function parseConfig(context: Record<string, unknown>, options: ParseOptions = {}): BackupConfig {
  const own = Object.fromEntries(Object.entries(context).filter(([k]) => !isForeignKey(k)));
  const problems: string[] = [];
  const parsed = ContextSchema.safeParse(own);
  if (!parsed.success) problems.push(...parsed.error.issues.map(describeIssue));

  // The schedule is checked even when other keys are wrong, so that one run reports everything.
  const schedule = ScheduleSchema.safeParse({ scheduleHour: own.scheduleHour, scheduleMinute: own.scheduleMinute, timeZone: own.timeZone, allowDstSkip: own.allowDstSkip });
  if (schedule.success && !schedule.data.allowDstSkip) {
    const { scheduleHour: hour, scheduleMinute: minute, timeZone } = schedule.data as unknown as Pick<ContextValues, 'scheduleHour' | 'scheduleMinute' | 'timeZone'>;
    const when = { from: options.now ?? new Date() };
    const report = checkDailyTime(timeZone, hour, minute, when);
    if (report.skipped.length > 0) {
      const safe = proposeSafeTimes(timeZone, hour, minute, when);
      problems.push(
        `context "scheduleHour"/"scheduleMinute": ${formatHourMinute(hour, minute)} does not exist in ${timeZone} on the spring-forward night ` +
          `(${report.skipped.slice(0, 3).join(', ')}${report.skipped.length > 3 ? ', …' : ''}), and EventBridge Scheduler skips that night's backup. ` +
          `Choose a safe time such as ${safe.join(' or ')}, or set allowDstSkip=true to accept one skipped night a year.`,
      );
    }
  }
  if (!parsed.success) throw new InfraConfigError(`invalid CDK context:\n  - ${problems.join('\n  - ')}`);
  const c = parsed.data as ContextValues;

  if (!c.vpcId && (c.subnetIds || c.subnetType || c.dbSecurityGroupId)) {
    problems.push('context "subnetIds", "subnetType" and "dbSecurityGroupId" need "vpcId" (the VPC of the database)');
  }
  if (c.databases && new Set(c.databases).size !== c.databases.length) problems.push('context "databases": expected each database once');
  if (c.subnetIds && c.subnetType) problems.push('context "subnetIds" and "subnetType" are exclusive: give the subnets, or their type (looked up)');
  if (c.vpcId && !c.subnetIds && (!c.account || !c.region)) {
    problems.push(
      'context "vpcId" without "subnetIds" looks the VPC up to find its subnets, which needs "account" and "region" (and credentials once; the answer is cached in cdk.context.json): give them, or list "subnetIds" for an offline, environment-agnostic synth',
    );
  }
  if (c.subnetIds && c.subnetIds.length === 0) problems.push('context "subnetIds": expected at least one subnet id');
  if (c.bucketName && c.objectLockDays !== undefined) {
    problems.push('context "objectLockDays" applies to a bucket this stack creates, but "bucketName" imports an existing one: enable Object Lock on that bucket yourself, or drop "bucketName"');
  }
  if (c.bucketName && c.replication) {
    problems.push('context "replication" configures the replication of a bucket this stack creates, but "bucketName" imports an existing one: set up replication on that bucket yourself (README.md, "A second copy"), or drop "bucketName"');
  }
  if (c.replication?.destinationAccount && c.account && c.replication.destinationAccount === c.account) {
    problems.push('context "replication.destinationAccount" is this stack\'s "account": leave it out for a replica in the same account (it makes the destination account own the replicas)');
  }
  if (c.bucketKmsKeyArn && !c.bucketName) problems.push('context "bucketKmsKeyArn" describes an imported bucket\'s key: it needs "bucketName" (a created bucket gets its own key)');
  const longest = longestKeepDays({ retentionCount: c.retentionCount, daily: c.retentionDaily, weekly: c.retentionWeekly, monthly: c.retentionMonthly });
  const backstopDays = c.backstopExpirationDays ?? Math.max(DEFAULT_BACKSTOP_EXPIRATION_DAYS, longest.days + BACKSTOP_MARGIN_DAYS);
  if (c.bucketName && (own.backstopExpirationDays !== undefined || own.noncurrentVersionDays !== undefined)) {
    problems.push(
      `context "${own.backstopExpirationDays !== undefined ? 'backstopExpirationDays' : 'noncurrentVersionDays'}" configures the lifecycle rules of a bucket this stack creates, but "bucketName" imports an existing one: configure its lifecycle yourself (README.md, "Retention and the lifecycle backstop"), or drop "bucketName"`,
    );
  } else if (backstopDays < longest.days + BACKSTOP_MARGIN_DAYS) {
    problems.push(
      longest.key === 'retentionCount'
        ? `context "backstopExpirationDays": expected at least retentionCount + ${BACKSTOP_MARGIN_DAYS} = ${c.retentionCount + BACKSTOP_MARGIN_DAYS} days (retentionCount is ${c.retentionCount}): ` +
            `a shorter backstop would expire backups that pruning keeps. Raise it (default ${DEFAULT_BACKSTOP_EXPIRATION_DAYS}) or lower "retentionCount"`
        : `context "backstopExpirationDays": expected at least ${longest.days + BACKSTOP_MARGIN_DAYS} days (${longest.formula} = ${longest.days} days, + ${BACKSTOP_MARGIN_DAYS}), got ${backstopDays}: ` +
            `a shorter backstop would expire backups that "${longest.key}" keeps. Raise "backstopExpirationDays" (or leave it unset: it then follows the retention) or lower "${longest.key}"`,
    );
  }
  if ((c.slackWorkspaceId === undefined) !== (c.slackChannelId === undefined)) {
    problems.push('context "slackWorkspaceId" and "slackChannelId" go together: give both (AWS Chatbot needs the workspace authorised once in its console) or neither');
  }

  const discover = c.databases?.includes('*') ?? false;
  if (discover && c.databases && c.databases.length > 1) problems.push('context "databases": "*" (discover the databases on the server) stands alone; use "databaseInclude"/"databaseExclude" to narrow it');
  if (!discover && (c.databaseInclude || c.databaseExclude)) problems.push('context "databaseInclude" and "databaseExclude" filter discovered databases: they need databases="*"');
  const fanOut = c.fanOut ?? (discover || c.runner !== 'lambda');
  if (!fanOut && c.runner !== 'lambda') problems.push(`context "runner": \`${c.runner}\` runs through the Step Functions fan-out, but "fanOut" is false: drop "fanOut" or set runner=lambda`);
  if (c.runner !== 'lambda' && !c.vpcId) problems.push(`context "runner": \`${c.runner}\` needs "vpcId" (and "subnetIds"): a Fargate task always runs in a VPC, the function's`);

  if (c.encryptRecipients && !c.drillIdentitySecretArn && c.drillSchedule !== undefined && c.drillSchedule !== 'off') {
    problems.push(
      'context "drillSchedule": the drill function cannot restore encrypted backups without their age identity ("encryptRecipients" is set): set "drillIdentitySecretArn" to a Secrets Manager secret holding the identity (AGE-SECRET-KEY-1…), or drillSchedule=off and drill from a host with `pg-s3-backup verify --latest --local --identity-file <file>`',
    );
  }
  if (c.drillIdentitySecretKmsKeyArn && !c.drillIdentitySecretArn) problems.push('context "drillIdentitySecretKmsKeyArn" is the key of "drillIdentitySecretArn": set that too, or drop it');
  if (c.restoreSecretKmsKeyArns.length > 0 && (!fanOut || c.runner === 'lambda')) {
    problems.push('context "restoreSecretKmsKeyArns" is for the task of restore --remote, which comes with the Fargate runner: set runner=fargate or auto (with vpcId, subnetIds), or drop it');
  }
  if (c.drillIdentitySecretArn && c.drillSchedule === 'off') problems.push('context "drillIdentitySecretArn" is for the drill function, but drillSchedule=off: drop it or turn the drill on');
  if (problems.length > 0) throw new InfraConfigError(`invalid CDK context:\n  - ${problems.join('\n  - ')}`);

  const drillSchedule = c.drillSchedule ?? (c.encryptRecipients && !c.drillIdentitySecretArn ? 'off' : 'nightly');
  const drill: DrillConfig | undefined =
    drillSchedule === 'off'
      ? undefined
      : {
          frequency: drillSchedule,
          ...drillTime(c.timeZone, c.scheduleHour, c.scheduleMinute, c.allowDstSkip, options.now),
          timeZone: c.timeZone,
          ephemeralStorageMiB: c.drillEphemeralStorageMiB,
          memorySize: c.drillMemorySize,
          ...(c.drillIdentitySecretArn ? { identitySecret: { arn: c.drillIdentitySecretArn, ...(c.drillIdentitySecretKmsKeyArn ? { kmsKeyArn: c.drillIdentitySecretKmsKeyArn } : {}) } } : {}),
        };

  return {
    stackName: c.stackName,
    functionSettings: functionSettings(c, { discover, fanOut }),
    ...(c.account || c.region ? { env: { ...(c.account ? { account: c.account } : {}), ...(c.region ? { region: c.region } : {}) } } : {}),
    dbSecretArn: c.dbSecretArn,
    ...(c.dbSecretKmsKeyArn ? { dbSecretKmsKeyArn: c.dbSecretKmsKeyArn } : {}),
    restoreSecretKmsKeyArns: c.restoreSecretKmsKeyArns,
    databases: c.databases ?? [],
    dbPort: c.dbPort,
    ...(c.vpcId
      ? {
          vpc: {
            vpcId: c.vpcId,
            ...(c.subnetIds ? { subnetIds: c.subnetIds } : { subnetType: c.subnetType ?? 'PRIVATE_WITH_EGRESS' }),
            ...(c.dbSecurityGroupId ? { dbSecurityGroupId: c.dbSecurityGroupId } : {}),
          },
        }
      : {}),
    schedule: { hour: c.scheduleHour, minute: c.scheduleMinute, timeZone: c.timeZone, allowDstSkip: c.allowDstSkip },
    retentionCount: c.retentionCount,
    gfs: { daily: c.retentionDaily, weekly: c.retentionWeekly, monthly: c.retentionMonthly },
    backupPrefix: c.backupPrefix,
    ...(c.pgDumpCompression ? { pgDumpCompression: c.pgDumpCompression } : {}),
    ...(c.encryptRecipients ? { encryptRecipients: c.encryptRecipients } : {}),
    notifyOnSuccess: c.notifyOnSuccess,
    alertEmails: c.alertEmails,
    ...(c.slackWorkspaceId && c.slackChannelId ? { slack: { workspaceId: c.slackWorkspaceId, channelId: c.slackChannelId } } : {}),
    architecture: c.architecture,
    memorySize: c.memorySize,
    logRetentionDays: c.logRetentionDays,
    ...(discover ? { discover: { include: c.databaseInclude ?? ['*'], exclude: c.databaseExclude ?? [] } } : {}),
    ...(fanOut
      ? {
          fanOut: {
            runner: c.runner,
            maxConcurrency: c.maxConcurrency,
            ...(c.runner !== 'lambda'
              ? { fargate: { cpu: c.fargateCpu, memoryMiB: c.fargateMemoryMiB, ephemeralStorageGiB: c.fargateEphemeralGiB, timeoutHours: c.fargateTimeoutHours } }
              : {}),
          },
        }
      : {}),
    ...(drill ? { drill } : {}),
    bucket: {
      ...(c.bucketName ? { existingBucketName: c.bucketName } : {}),
      ...(c.bucketKmsKeyArn ? { existingBucketKmsKeyArn: c.bucketKmsKeyArn } : {}),
      ...(c.objectLockDays !== undefined ? { objectLock: { days: c.objectLockDays, mode: c.objectLockMode } } : {}),
      ...(c.bucketName ? {} : { lifecycle: { backstopExpirationDays: backstopDays, noncurrentVersionDays: c.noncurrentVersionDays } }),
      ...(c.replication
        ? {
            replication: {
              destinationBucketArn: c.replication.destinationBucketArn,
              destinationKmsKeyArn: c.replication.destinationKmsKeyArn,
              ...(c.replication.destinationAccount ? { destinationAccount: c.replication.destinationAccount } : {}),
              ...(c.replication.storageClass ? { storageClass: c.replication.storageClass } : {}),
            },
          }
        : {}),
    },
  };
}

/**
 * The backup function's settings from the context: every engine setting deployed from a context
 * key whose value is set (given, or `pinned` to its default), and the stack's three rules.
 */
function functionSettings(c: ContextValues, stack: { readonly discover: boolean; readonly fanOut: boolean }): Partial<Record<SettingName, DeployedValue>> {
  const out: Partial<Record<SettingName, DeployedValue>> = {};
  for (const [key, name] of Object.entries(CONTEXT_DEPLOYED)) {
    const value = (c as unknown as Record<string, DeployedValue | undefined>)[key];
    if (value !== undefined && !(Array.isArray(value) && value.length === 0)) out[name] = value;
  }
  // GFS only when a rule is on (a count-only deployment's environment stays as it was), its
  // calendar the schedule's zone.
  if (c.retentionDaily + c.retentionWeekly + c.retentionMonthly > 0) out.RETENTION_TIME_ZONE = c.timeZone;
  else for (const name of ['RETENTION_DAILY', 'RETENTION_WEEKLY', 'RETENTION_MONTHLY'] as const) delete out[name];
  // Discovery takes every database unless told otherwise; the filters need it (checked above).
  if (stack.discover) out.DATABASE_INCLUDE ??= defaultOf('DATABASE_INCLUDE');
  // The runner is the fan-out's plan: without the fan-out the schedule invokes the function itself.
  if (!stack.fanOut) delete out.RUNNER;
  return out;
}

/**
 * The drill's local time: one hour after the backup, so that it proves the night's backup (a
 * Lambda backup ends within 15 minutes). When that hour falls into a DST gap (a backup at 01:30 in
 * Europe/Paris), the first later hour that never does: a skipped drill night would trip the
 * drill's dead-man alarm. With allowDstSkip the operator has accepted a skipped night already.
 */
export function drillTime(timeZone: string, hour: number, minute: number, allowDstSkip: boolean, now?: Date): { hour: number; minute: number } {
  for (let d = 1; d < 24; d++) {
    const h = (hour + d) % 24;
    if (allowDstSkip || checkDailyTime(timeZone, h, minute, now ? { from: now } : {}).skipped.length === 0) return { hour: h, minute };
  }
  return { hour: (hour + 1) % 24, minute };
}
