/**
 * What the engine reports, as one typed union: backup, prune, alert and heartbeat delivery,
 * restore/verify progress, drill. The engine emits through one sink (`Deps.events`,
 * `RestoreDeps.events`); front doors choose the adapter: Powertools logs and metrics in Lambda
 * (lambda/powertools.ts `powertoolsEvents`), progress lines and JSON lines in the CLI
 * (cli/events.ts). The CLI's JSON `event` is the `event` tag below, never a log message: a log
 * line can be reworded without changing the CLI's output, and a new or renamed event is a
 * declared change (ENGINE_EVENTS, test/cli/events.test.ts).
 */
import type { Stage } from './errors.ts';

type Ev<Name extends string, Fields> = { readonly event: Name } & Readonly<Fields>;

/** The backup pipeline (engine/backup/backup.ts), in the order a run emits them. */
export type BackupEvent =
  | Ev<'backup.started', { stage: 'config'; reason: string; dryRun: boolean; requestId: string | undefined; bucket: string; prefix: string }>
  | Ev<'backup.connecting', { stage: 'connect'; database: string; host: string; port: number; sslmode: string | undefined }>
  | Ev<'backup.dump.started', { stage: 'dump'; database: string; key: string; serverVersion: string; pgDumpVersion: string; compression: string; databaseBytes: number | undefined }>
  /** pg_dump's bytes streamed so far (per chunk: adapters throttle). */
  | Ev<'backup.dump.progress', { database: string; key: string; bytes: number }>
  | Ev<'backup.row-counts.incomplete', { stage: 'dump'; database: string; key: string; warning: string }>
  /** Something the upload's clean-up found worth telling (S3 completed an upload it answered with an error). */
  | Ev<'backup.upload.notice', { stage: 'upload'; message: string; [detail: string]: unknown }>
  | Ev<'backup.dump.uploaded', { stage: 'upload'; database: string; key: string; bytes: number; sha256: string; durationMs: number; bytesPerSecond: number }>
  | Ev<'backup.complete', { stage: 'manifest'; database: string; key: string; bytes: number; sha256: string; durationMs: number }>
  | Ev<'backup.failed', { database: string; stage: Stage; key: string | undefined; hint: string | undefined; requestId: string | undefined; error: string }>
  | Ev<'backup.not-started', { databases: readonly string[]; stage: Stage; error: string }>
  /** One per database and run, succeeded or not: the metrics (BackupSucceeded…) the alarms watch. */
  | Ev<'backup.measured', { database: string; succeeded: boolean; bytes: number; durationMs: number }>
  | Ev<'backup.globals.uploaded', { stage: 'upload'; key: string; bytes: number; sha256: string; encrypted?: boolean }>
  /** What the store can do (STORAGE_PROFILE, a cached or fresh probe), once per run. */
  | Ev<'store.capabilities', { stage: 'upload'; profile: string; source: string; conditionalWrites: boolean; checksumSha256: boolean; maxParts: number }>
  /** The probe's own report (cached, probed, failed), in its words. */
  | Ev<'store.probe', { stage: 'upload'; message: string; [detail: string]: unknown }>
  | Ev<'store.feature-refused', { stage: 'upload'; database: string; error: string }>
  | Ev<'backup.finished', { status: 'succeeded' | 'failed'; backups: number; failures: number; pruned: number; dryRun: boolean }>
  | Ev<'backup.fan-out.summary', { succeeded: number; failed: number; published: boolean }>;

/** Retention and the stale-upload sweep (engine/backup/retention.ts, stale-uploads.ts). */
export type PruneEvent =
  | Ev<'prune.unreadable-manifest', { stage: 'prune'; database: string; key: string; problem: string }>
  | Ev<'prune.locked', { stage: 'prune'; database: string; locked: number; keys: readonly string[] }>
  | Ev<'prune.done' | 'prune.dry-run', { stage: 'prune'; database: string; kept: number; unreadable?: number; locked?: number; deleted: number; keys: readonly string[] }>
  | Ev<'prune.stale-uploads.aborted' | 'prune.stale-uploads.dry-run', { stage: 'prune'; prefix: string; aborted: number; uploads: readonly string[]; keptYounger: number }>;

/** Alerts and heartbeats (engine/notify.ts, heartbeat.ts). */
export type DeliveryEvent =
  | Ev<'alert.not-configured', { subject: string; alert: string }>
  | Ev<'alert.publish-failed', { stage: 'notify'; topicArn: string; subject: string; error: string; alert: string }>
  | Ev<'heartbeat.sent', { stage: 'notify'; outcome: string; heartbeat: string }>
  | Ev<'heartbeat.refused', { stage: 'notify'; outcome: string; heartbeat: string; status: number }>
  | Ev<'heartbeat.failed', { stage: 'notify'; outcome: string; heartbeat: string; error: string }>
  /** Off Lambda with CLOUDWATCH_METRICS: PutMetricData failed (the dead-man alarm will say so too). */
  | Ev<'metrics.not-sent', { stage: 'notify'; database: string; error: string }>;

/** Restore and verify (engine/restore/): what an operator watches while it runs. */
export type RestoreEvent =
  | Ev<'restore.manifest', { key: string; database: string; bytes: number; startedAt: string }>
  /** Moving: bytes of `total`; the last one says `done` and `ms`. */
  | Ev<'restore.download.progress', { key: string; bytes: number; total: number; done?: true; ms?: number }>
  | Ev<'restore.sha256-verified', { sha256: string; bytes: number }>
  /** An encrypted dump (age): which identity opened it, then the plaintext archive checked against the manifest. */
  | Ev<'restore.identity-matched', { key: string }>
  | Ev<'restore.decrypted', { sha256: string; bytes: number }>
  | Ev<'verify.toc', { entries: number; tablesWithData: number }>
  /** Counted: tables restored so far. */
  | Ev<'restore.progress', { database: string; jobs: number; tablesTotal: number | undefined; tablesDone: number; table?: string | undefined; elapsedMs?: number }>
  | Ev<'restore.done', { database: string; tables: number; ms: number; errors: number }>
  | Ev<'restore.not-restored', { message: string }>
  | Ev<'warning', { message: string }>
  /** Every restored table counted (the rows are then compared with the manifest's). */
  | Ev<'verify.inspected', { tables: number; ms: number }>
  | Ev<'verify.problem', { stage: string; message: string }>
  | Ev<'verify.server', { status: 'starting' | 'started'; ms?: number }>
  | Ev<'verify.finished', { status: 'ok' | 'failed'; tables: number; rows: number; ms: number }>;

/** The restore drill (engine/restore/drill.ts). `drill finished` also carries its metrics. */
export type DrillEvent =
  | Ev<'drill.stale-server-removed', { stage: 'drill'; dir: string }>
  | Ev<'drill.report-failed', { stage: 'drill'; database: string; key: string | undefined; error: string }>
  | Ev<'drill.finished', { stage: 'drill'; database: string; key: string | undefined; status: 'ok' | 'failed' | 'skipped'; failingTables: readonly string[]; durationMs: number }>
  /** The drill's time budget ran out before these databases were started: the next run starts with them. */
  | Ev<'drill.budget-exhausted', { stage: 'drill'; notReached: readonly string[]; budgetMs: number }>;

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
  'backup.started': 'info',
  'backup.connecting': 'info',
  'backup.dump.started': 'info',
  'backup.dump.progress': 'progress',
  'backup.row-counts.incomplete': 'warn',
  'backup.upload.notice': 'warn',
  'backup.dump.uploaded': 'info',
  'backup.complete': 'info',
  'backup.failed': 'error',
  'backup.not-started': 'error',
  'backup.measured': 'metric',
  'backup.globals.uploaded': 'info',
  'store.capabilities': 'info',
  'store.probe': 'info',
  'store.feature-refused': 'warn',
  'backup.finished': 'info',
  'backup.fan-out.summary': 'info',
  'prune.unreadable-manifest': 'warn',
  'prune.locked': 'warn',
  'prune.done': 'info',
  'prune.dry-run': 'info',
  'prune.stale-uploads.aborted': 'info',
  'prune.stale-uploads.dry-run': 'info',
  'alert.not-configured': 'warn',
  'alert.publish-failed': 'error',
  'heartbeat.sent': 'info',
  'heartbeat.refused': 'warn',
  'heartbeat.failed': 'warn',
  'metrics.not-sent': 'warn',
  'restore.manifest': 'info',
  'restore.download.progress': 'progress',
  'restore.sha256-verified': 'info',
  'restore.identity-matched': 'info',
  'restore.decrypted': 'info',
  'verify.toc': 'info',
  'restore.progress': 'progress',
  'restore.done': 'info',
  'restore.not-restored': 'info',
  warning: 'warn',
  'verify.inspected': 'info',
  'verify.problem': 'error',
  'verify.server': 'info',
  'verify.finished': 'info',
  'drill.stale-server-removed': 'warn',
  'drill.report-failed': 'error',
  'drill.finished': 'info',
  'drill.budget-exhausted': 'warn',
} as const satisfies Record<EngineEventName, 'info' | 'warn' | 'error' | 'progress' | 'metric'>;

/**
 * Each event's wording: the Lambda's log message (Powertools) and the `message` of the CLI's JSON
 * line (an event with its own `message` field keeps it). The `event` tag is the stable identifier
 * a program matches on; this wording is for people and may change. Double quotes on purpose: the
 * wording is not an identifier, and the rename script (notes/output-rename.sh) replaces only
 * single-quoted names.
 */
export const EVENT_MESSAGES = {
  'backup.started': "run started",
  'backup.connecting': "connecting",
  'backup.dump.started': "dump started",
  'backup.dump.progress': "dump",
  'backup.row-counts.incomplete': "row counts",
  'backup.upload.notice': "upload notice",
  'backup.dump.uploaded': "dump uploaded",
  'backup.complete': "backup complete",
  'backup.failed': "backup failed",
  'backup.not-started': "backup not started",
  'backup.measured': "backup measured",
  'backup.globals.uploaded': "globals uploaded",
  'store.capabilities': "store capabilities",
  'store.probe': "store probe",
  'store.feature-refused': "the store refused a feature the engine assumed it has: probing the store, then taking the database again",
  'backup.finished': "run finished",
  'backup.fan-out.summary': "fan-out summary",
  'prune.unreadable-manifest': "backup with an unreadable manifest: not counted by retention",
  'prune.locked': "backups under Object Lock: left in place until their lock ends",
  'prune.done': "pruned",
  'prune.dry-run': "prune (dry run): would delete",
  'prune.stale-uploads.aborted': "stale multipart uploads aborted",
  'prune.stale-uploads.dry-run': "stale multipart uploads (dry run): would abort",
  'alert.not-configured': "no ALERT_TOPIC_ARN: alert only logged",
  'alert.publish-failed': "could not publish to SNS",
  'heartbeat.sent': "heartbeat sent",
  'heartbeat.refused': "heartbeat ping refused",
  'heartbeat.failed': "heartbeat ping failed",
  'metrics.not-sent': "metrics not sent",
  'restore.manifest': "manifest",
  'restore.download.progress': "download",
  'restore.sha256-verified': "sha256-verified",
  'restore.identity-matched': "identity-matched",
  'restore.decrypted': "decrypted",
  'verify.toc': "toc",
  'restore.progress': "restore",
  'restore.done': "restored",
  'restore.not-restored': "not-restored",
  warning: "warning",
  'verify.inspected': "counted",
  'verify.problem': "problem",
  'verify.server': "server",
  'verify.finished': "verified",
  'drill.stale-server-removed': "removed a throwaway server left by an earlier run",
  'drill.report-failed': "could not write the drill report",
  'drill.finished': "drill finished",
  'drill.budget-exhausted': "drill stopped at its time budget",
} as const satisfies Record<EngineEventName, string>;

export type EventKind = (typeof ENGINE_EVENTS)[EngineEventName];

export const ignoreEvents: EventSink = () => {};
