/**
 * What the engine reports, as one typed union: backup, prune, alert and heartbeat delivery,
 * restore/verify progress, drill. The engine emits through one sink (`Deps.events`,
 * `RestoreDeps.events`); front doors choose the adapter: Powertools logs and metrics in Lambda
 * (engine/observability.ts `powertoolsEvents`), progress lines and JSON lines in the CLI
 * (cli/events.ts). The CLI's JSON `event` is the `event` tag below, never a log message: a log
 * line can be reworded without changing the CLI's output, and a new or renamed event is a
 * declared change (ENGINE_EVENTS, test/cli/events.test.ts).
 */
import type { Stage } from './errors.ts';

type Ev<Name extends string, Fields> = { readonly event: Name } & Readonly<Fields>;

/** The backup pipeline (engine/backup/backup.ts), in the order a run emits them. */
export type BackupEvent =
  | Ev<'run started', { stage: 'config'; reason: string; dryRun: boolean; requestId: string | undefined; bucket: string; prefix: string }>
  | Ev<'connecting', { stage: 'connect'; database: string; host: string; port: number; sslmode: string | undefined }>
  | Ev<'dump started', { stage: 'dump'; database: string; key: string; serverVersion: string; pgDumpVersion: string; compression: string; databaseBytes: number | undefined }>
  /** pg_dump's bytes streamed so far (per chunk: adapters throttle). */
  | Ev<'dump', { database: string; key: string; bytes: number }>
  | Ev<'row counts', { stage: 'dump'; database: string; key: string; warning: string }>
  /** Something the upload's clean-up found worth telling (S3 completed an upload it answered with an error). */
  | Ev<'upload notice', { stage: 'upload'; message: string; [detail: string]: unknown }>
  | Ev<'dump uploaded', { stage: 'upload'; database: string; key: string; bytes: number; sha256: string; durationMs: number; bytesPerSecond: number }>
  | Ev<'backup complete', { stage: 'manifest'; database: string; key: string; bytes: number; sha256: string; durationMs: number }>
  | Ev<'backup failed', { database: string; stage: Stage; key: string | undefined; hint: string | undefined; requestId: string | undefined; error: string }>
  | Ev<'backup not started', { databases: readonly string[]; stage: Stage; error: string }>
  /** One per database and run, succeeded or not: the metrics (BackupSucceeded…) the alarms watch. */
  | Ev<'backup measured', { database: string; succeeded: boolean; bytes: number; durationMs: number }>
  | Ev<'globals uploaded', { stage: 'upload'; key: string; bytes: number; sha256: string; encrypted?: boolean }>
  /** What the store can do (STORAGE_PROFILE, a cached or fresh probe), once per run. */
  | Ev<'store capabilities', { stage: 'upload'; profile: string; source: string; conditionalWrites: boolean; checksumSha256: boolean; maxParts: number }>
  /** The probe's own report (cached, probed, failed), in its words. */
  | Ev<'store probe', { stage: 'upload'; message: string; [detail: string]: unknown }>
  | Ev<'the store refused a feature the engine assumed it has: probing the store, then taking the database again', { stage: 'upload'; database: string; error: string }>
  | Ev<'run finished', { status: 'succeeded' | 'failed'; backups: number; failures: number; pruned: number; dryRun: boolean }>
  | Ev<'fan-out summary', { succeeded: number; failed: number; published: boolean }>;

/** Retention and the stale-upload sweep (engine/backup/retention.ts, stale-uploads.ts). */
export type PruneEvent =
  | Ev<'backup with an unreadable manifest: not counted by retention', { stage: 'prune'; database: string; key: string; problem: string }>
  | Ev<'backups under Object Lock: left in place until their lock ends', { stage: 'prune'; database: string; locked: number; keys: readonly string[] }>
  | Ev<'pruned' | 'prune (dry run): would delete', { stage: 'prune'; database: string; kept: number; unreadable?: number; locked?: number; deleted: number; keys: readonly string[] }>
  | Ev<'stale multipart uploads aborted' | 'stale multipart uploads (dry run): would abort', { stage: 'prune'; prefix: string; aborted: number; uploads: readonly string[]; keptYounger: number }>;

/** Alerts and heartbeats (engine/notify.ts, heartbeat.ts). */
export type DeliveryEvent =
  | Ev<'no ALERT_TOPIC_ARN: alert only logged', { subject: string; alert: string }>
  | Ev<'could not publish to SNS', { stage: 'notify'; topicArn: string; subject: string; error: string; alert: string }>
  | Ev<'heartbeat sent', { stage: 'notify'; outcome: string; heartbeat: string }>
  | Ev<'heartbeat ping refused', { stage: 'notify'; outcome: string; heartbeat: string; status: number }>
  | Ev<'heartbeat ping failed', { stage: 'notify'; outcome: string; heartbeat: string; error: string }>
  /** Off Lambda with CLOUDWATCH_METRICS: PutMetricData failed (the dead-man alarm will say so too). */
  | Ev<'metrics not sent', { stage: 'notify'; database: string; error: string }>;

/** Restore and verify (engine/restore/): what an operator watches while it runs. */
export type RestoreEvent =
  | Ev<'manifest', { key: string; database: string; bytes: number; startedAt: string }>
  /** Moving: bytes of `total`; the last one says `done` and `ms`. */
  | Ev<'download', { key: string; bytes: number; total: number; done?: true; ms?: number }>
  | Ev<'sha256-verified', { sha256: string; bytes: number }>
  /** An encrypted dump (age): which identity opened it, then the plaintext archive checked against the manifest. */
  | Ev<'identity-matched', { key: string }>
  | Ev<'decrypted', { sha256: string; bytes: number }>
  | Ev<'toc', { entries: number; tablesWithData: number }>
  /** Counted: tables restored so far. */
  | Ev<'restore', { database: string; jobs: number; tablesTotal: number | undefined; tablesDone: number; table?: string | undefined; elapsedMs?: number }>
  | Ev<'restored', { database: string; tables: number; ms: number; errors: number }>
  | Ev<'not-restored', { message: string }>
  | Ev<'warning', { message: string }>
  | Ev<'problem', { stage: string; message: string }>
  | Ev<'server', { status: 'starting' | 'started'; ms?: number }>
  | Ev<'verified', { status: 'ok' | 'failed'; tables: number; rows: number; ms: number }>;

/** The restore drill (engine/restore/drill.ts). `drill finished` also carries its metrics. */
export type DrillEvent =
  | Ev<'removed a throwaway server left by an earlier run', { stage: 'drill'; dir: string }>
  | Ev<'could not write the drill report', { stage: 'drill'; database: string; key: string | undefined; error: string }>
  | Ev<'drill finished', { stage: 'drill'; database: string; key: string | undefined; status: 'ok' | 'failed' | 'skipped'; failingTables: readonly string[]; durationMs: number }>
  /** The drill's time budget ran out before these databases were started: the next run starts with them. */
  | Ev<'drill stopped at its time budget', { stage: 'drill'; notReached: readonly string[]; budgetMs: number }>;

export type EngineEvent = BackupEvent | PruneEvent | DeliveryEvent | RestoreEvent | DrillEvent;
export type EngineEventName = EngineEvent['event'];

/** The one sink the engine emits through. It must not throw (adapters swallow their own failures). */
export type EventSink = (event: EngineEvent) => void;

/**
 * How each event is meant: `info`/`warn`/`error` are log levels (and the CLI marks warn/error
 * lines with `level`); `progress` moves (a bar on a terminal, throttled JSON lines, not logged in
 * Lambda); `metric` feeds metrics only (not shown by the CLI). Every event of the union must be
 * here and nothing else (`satisfies`): this table is the declared list of events.
 */
export const ENGINE_EVENTS = {
  'run started': 'info',
  connecting: 'info',
  'dump started': 'info',
  dump: 'progress',
  'row counts': 'warn',
  'upload notice': 'warn',
  'dump uploaded': 'info',
  'backup complete': 'info',
  'backup failed': 'error',
  'backup not started': 'error',
  'backup measured': 'metric',
  'globals uploaded': 'info',
  'store capabilities': 'info',
  'store probe': 'info',
  'the store refused a feature the engine assumed it has: probing the store, then taking the database again': 'warn',
  'run finished': 'info',
  'fan-out summary': 'info',
  'backup with an unreadable manifest: not counted by retention': 'warn',
  'backups under Object Lock: left in place until their lock ends': 'warn',
  pruned: 'info',
  'prune (dry run): would delete': 'info',
  'stale multipart uploads aborted': 'info',
  'stale multipart uploads (dry run): would abort': 'info',
  'no ALERT_TOPIC_ARN: alert only logged': 'warn',
  'could not publish to SNS': 'error',
  'heartbeat sent': 'info',
  'heartbeat ping refused': 'warn',
  'heartbeat ping failed': 'warn',
  'metrics not sent': 'warn',
  manifest: 'info',
  download: 'progress',
  'sha256-verified': 'info',
  'identity-matched': 'info',
  decrypted: 'info',
  toc: 'info',
  restore: 'progress',
  restored: 'info',
  'not-restored': 'info',
  warning: 'warn',
  problem: 'error',
  server: 'info',
  verified: 'info',
  'removed a throwaway server left by an earlier run': 'warn',
  'could not write the drill report': 'error',
  'drill finished': 'info',
  'drill stopped at its time budget': 'warn',
} as const satisfies Record<EngineEventName, 'info' | 'warn' | 'error' | 'progress' | 'metric'>;

/**
 * Each event's wording: the Lambda's log message (Powertools) and the `message` of the CLI's JSON
 * line (an event with its own `message` field keeps it). The `event` tag is the stable identifier
 * a program matches on; this wording is for people and may change. Double quotes on purpose: the
 * wording is not an identifier, and the rename script (notes/output-rename.sh) replaces only
 * single-quoted names.
 */
export const EVENT_MESSAGES = {
  'run started': "run started",
  connecting: "connecting",
  'dump started': "dump started",
  dump: "dump",
  'row counts': "row counts",
  'upload notice': "upload notice",
  'dump uploaded': "dump uploaded",
  'backup complete': "backup complete",
  'backup failed': "backup failed",
  'backup not started': "backup not started",
  'backup measured': "backup measured",
  'globals uploaded': "globals uploaded",
  'store capabilities': "store capabilities",
  'store probe': "store probe",
  'the store refused a feature the engine assumed it has: probing the store, then taking the database again': "the store refused a feature the engine assumed it has: probing the store, then taking the database again",
  'run finished': "run finished",
  'fan-out summary': "fan-out summary",
  'backup with an unreadable manifest: not counted by retention': "backup with an unreadable manifest: not counted by retention",
  'backups under Object Lock: left in place until their lock ends': "backups under Object Lock: left in place until their lock ends",
  pruned: "pruned",
  'prune (dry run): would delete': "prune (dry run): would delete",
  'stale multipart uploads aborted': "stale multipart uploads aborted",
  'stale multipart uploads (dry run): would abort': "stale multipart uploads (dry run): would abort",
  'no ALERT_TOPIC_ARN: alert only logged': "no ALERT_TOPIC_ARN: alert only logged",
  'could not publish to SNS': "could not publish to SNS",
  'heartbeat sent': "heartbeat sent",
  'heartbeat ping refused': "heartbeat ping refused",
  'heartbeat ping failed': "heartbeat ping failed",
  'metrics not sent': "metrics not sent",
  manifest: "manifest",
  download: "download",
  'sha256-verified': "sha256-verified",
  'identity-matched': "identity-matched",
  decrypted: "decrypted",
  toc: "toc",
  restore: "restore",
  restored: "restored",
  'not-restored': "not-restored",
  warning: "warning",
  problem: "problem",
  server: "server",
  verified: "verified",
  'removed a throwaway server left by an earlier run': "removed a throwaway server left by an earlier run",
  'could not write the drill report': "could not write the drill report",
  'drill finished': "drill finished",
  'drill stopped at its time budget': "drill stopped at its time budget",
} as const satisfies Record<EngineEventName, string>;

export type EventKind = (typeof ENGINE_EVENTS)[EngineEventName];

export const ignoreEvents: EventSink = () => {};
