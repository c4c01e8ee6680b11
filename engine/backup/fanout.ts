/**
 * The engine's side of the Step Functions fan-out: the first step plans the night (which
 * databases, and where each one runs), the last one reports it. The state machine itself (Map,
 * retries, Catch) is AWS's engine; nothing here orchestrates.
 */
import { LAMBDA_TIMEOUT_SECONDS, type Config, type RunnerChoice } from '../config.ts';
import type { Deps } from '../deps.ts';
import { SUBJECT_PREFIX, subjectText, type Message } from '../notify.ts';
import { fetchCredentials } from '../pg/credentials.ts';
import { createSource } from '../store/create.ts';
import { databasesToBackUp } from '../pg/discover.ts';

export type Runner = 'lambda' | 'fargate';

/** `auto` moves a database to Fargate once its last backup took more than this share of the Lambda timeout. */
export const AUTO_FARGATE_SHARE = 0.6;

export interface PlannedBackup {
  readonly database: string;
  readonly runner: Runner;
  /** Why this runner, in words (shown in the execution's history and the summary). */
  readonly why: string;
}

/** Pure: the runner for one database from the configured choice and its last backup's duration. */
export function chooseRunner(choice: RunnerChoice, lastDurationMs: number | undefined, lambdaTimeoutMs = LAMBDA_TIMEOUT_SECONDS * 1000): Omit<PlannedBackup, 'database'> {
  if (choice !== 'auto') return { runner: choice, why: `RUNNER=${choice}` };
  if (lastDurationMs === undefined) return { runner: 'lambda', why: 'auto: no previous backup, Lambda first' };
  const share = lastDurationMs / lambdaTimeoutMs;
  const pct = `${Math.round(share * 100)} %`;
  return share > AUTO_FARGATE_SHARE
    ? { runner: 'fargate', why: `auto: the last backup used ${pct} of the Lambda timeout (> ${AUTO_FARGATE_SHARE * 100} %)` }
    : { runner: 'lambda', why: `auto: the last backup used ${pct} of the Lambda timeout` };
}

/** The night's plan: the databases (configured or discovered) and the runner of each. */
export async function planRun(config: Config, deps: Pick<Deps, 's3' | 'secrets' | 'listDatabases'>): Promise<{ readonly backups: readonly PlannedBackup[] }> {
  const creds = await fetchCredentials(config.credentials, deps.secrets);
  const databases = await databasesToBackUp(undefined, config, creds, deps);
  const store = createSource(config, deps);
  const backups: PlannedBackup[] = [];
  for (const database of databases) {
    let last: number | undefined;
    if (config.runner === 'auto') {
      // The newest backup whose manifest reads and checks (an unreadable one gives no duration).
      last = (await store.latestBackup(database)).backup?.manifest.durationMs;
    }
    backups.push({ database, ...chooseRunner(config.runner, last) });
  }
  return { backups };
}

/** One database's outcome as the state machine's Map collects it. */
export interface FanOutOutcome {
  readonly database: string;
  readonly runner: Runner;
  readonly ok: boolean;
  /** The error name Step Functions caught (e.g. BackupRunError, States.TaskFailed, States.Timeout). */
  readonly error?: string | undefined;
  /** Its cause: the engine's message, or the task's. */
  readonly cause?: string | undefined;
}

export interface FanOutSummary {
  readonly succeeded: readonly string[];
  readonly failed: readonly { readonly database: string; readonly runner: Runner; readonly error: string }[];
  readonly published: boolean;
}

/** Pure: the one message of the night. */
export function formatFanOutSummary(outcomes: readonly FanOutOutcome[]): Message {
  const ok = outcomes.filter((o) => o.ok);
  const failed = outcomes.filter((o) => !o.ok);
  const head = failed.length === 0 ? `OK ${ok.length} of ${outcomes.length} databases backed up` : `FAILED ${failed.length} of ${outcomes.length} databases: ${failed.map((f) => f.database).join(', ')}`;
  return {
    subject: subjectText(`${SUBJECT_PREFIX} ${head}`),
    body: [
      `pg-s3-backup fan-out: ${ok.length} succeeded, ${failed.length} failed.`,
      '',
      ...ok.map((o) => `- ${o.database}: backed up (${o.runner})`),
      ...failed.map((o) => `- ${o.database}: FAILED (${o.runner}) ${o.error ?? 'error'}: ${summarizeCause(o.cause)}`),
      '',
      failed.length > 0
        ? "Each failed database also sent its own detailed alert (stage, error, what to do) just before, when the engine ran; a Fargate task that never started or a Lambda that timed out did not: read the execution's history in the Step Functions console."
        : 'Every backup is complete (dump and manifest in S3).',
    ].join('\n'),
  };
}

/**
 * A failed database's cause as the Map keeps it, in characters: with a 63-byte name, an error name
 * and the JSON around it, one failure stays under 500 bytes, so that a whole fleet failing stays
 * far below Step Functions' 256 KB state limit (README: the largest fleet per execution).
 */
export const FAILURE_CAUSE_LIMIT = 300;

/** What a Catch hands the state machine: the error's name and its cause (text, often JSON). */
export interface CaughtError {
  readonly Error?: string | undefined;
  readonly Cause?: string | undefined;
}

/**
 * Pure: one database's failure as the Map keeps it: the error's name and the cause's message
 * (a Lambda error's `errorMessage`, a stopped task's `StoppedReason`), bounded.
 */
export function describeFailure(database: string, runner: Runner, caught: CaughtError): FanOutOutcome {
  return { database, runner, ok: false, error: caught.Error || 'error', cause: summarizeCause(caught.Cause, FAILURE_CAUSE_LIMIT) };
}

/** Step Functions passes a task's error cause as JSON text: keep the message, bounded. */
function summarizeCause(cause: string | undefined, limit = 500): string {
  if (!cause) return '(no cause given)';
  let text = cause;
  try {
    const parsed = JSON.parse(cause) as { errorMessage?: unknown; StoppedReason?: unknown; Containers?: { ExitCode?: unknown }[] };
    if (typeof parsed.errorMessage === 'string') text = parsed.errorMessage;
    else if (typeof parsed.StoppedReason === 'string') {
      // "Essential container in task exited" says little without the exit code.
      const exit = Array.isArray(parsed.Containers) ? parsed.Containers.find((c) => typeof c?.ExitCode === 'number')?.ExitCode : undefined;
      text = exit === undefined ? parsed.StoppedReason : `${parsed.StoppedReason} (exit code ${String(exit)})`;
    }
  } catch {
    // not JSON: the text as it is
  }
  return text.length > limit ? `${text.slice(0, limit)}…` : text;
}

/** The last step: publishes the summary when a database failed (always with NOTIFY_ON_SUCCESS). */
export async function summarizeRun(outcomes: readonly FanOutOutcome[], config: Pick<Config, 'notifyOnSuccess'>, deps: Pick<Deps, 'alerts' | 'events'>): Promise<FanOutSummary> {
  const failed = outcomes.filter((o) => !o.ok);
  const message = formatFanOutSummary(outcomes);
  const published = failed.length > 0 || config.notifyOnSuccess ? (await deps.alerts.send({ kind: failed.length > 0 ? 'failed' : 'news', message })).sns === true : false;
  deps.events({ event: 'backup.fan-out.summary', succeeded: outcomes.length - failed.length, failed: failed.length, published });
  return {
    succeeded: outcomes.filter((o) => o.ok).map((o) => o.database),
    failed: failed.map((o) => ({ database: o.database, runner: o.runner, error: `${o.error ?? 'error'}: ${summarizeCause(o.cause)}` })),
    published,
  };
}
