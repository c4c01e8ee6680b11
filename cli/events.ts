/**
 * The CLI's adapter of the engine's events (engine/events.ts): a JSON line per event, or in text
 * mode a sentence (and a redrawn progress line for what moves). The JSON `event` is the union's
 * tag, so the CLI's output is a declared interface (CLI_EVENT_NAMES, test/cli/events.test.ts): the
 * engine's log wording (its `message`) never decides it. Text mode shows sentences written here,
 * never an identifier, and names the globals files as such, not as a database.
 */
import { ENGINE_EVENTS, EVENT_MESSAGES, type EngineEvent, type EngineEventName, type EventSink } from '../engine/events.ts';
import { GLOBALS_FOLDER } from '../engine/store/backup-key.ts';
import { formatBytes, formatDuration, printable, type HumanText, type Output, type ProgressEvent } from './output.ts';

/** What the CLI itself writes besides the engine's events: the result (last), an error, a warning; `invoke`'s start; `status`'s lines; `--remote`'s task. */
export const CLI_OWN_EVENTS = ['result', 'error', 'warning', 'invoke.started', 'status.database', 'status.alarm', 'remote.task'] as const;

/** Every `event` a JSON line of the CLI can carry: the engine's (all but metrics-only ones) and the CLI's own. */
export const CLI_EVENT_NAMES: readonly string[] = [
  ...(Object.keys(ENGINE_EVENTS) as EngineEventName[]).filter((name) => ENGINE_EVENTS[name] !== 'metric'),
  ...CLI_OWN_EVENTS.filter((name) => !(name in ENGINE_EVENTS)),
];

/** The JSON line the CLI writes for one engine event (undefined: not shown). */
export function cliEvent(e: EngineEvent): ProgressEvent | undefined {
  const kind = ENGINE_EVENTS[e.event];
  if (kind === 'metric') return undefined;
  // The wording beside the identifier; an event with words of its own (a notice, a warning) keeps them.
  const line = { ...e, message: 'message' in e && typeof e.message === 'string' ? e.message : EVENT_MESSAGES[e.event] };
  // pg_dump's output has bytes and a rate but no total: its size is known only when it ends.
  if (e.event === 'backup.dump.progress') return { ...line, streaming: true };
  return kind === 'warn' || kind === 'error' ? { ...line, level: kind } : line;
}

/** A database as text mode names it: escaped for the terminal; the globals files are not a database. */
export function databaseLabel(name: string): string {
  return name === GLOBALS_FOLDER ? 'roles and tablespaces (globals)' : printable(name);
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/**
 * How an engine event reads on a terminal. No `line`: not shown (the result says it, or only
 * --verbose wants it). Every event has its case: a new event is a compile error here until it
 * is given words.
 */
export function humanText(e: EngineEvent): HumanText {
  switch (e.event) {
    case 'backup.started':
      return { line: `backing up to s3://${printable(e.bucket)}/${printable(e.prefix)} (reason: ${printable(e.reason)})${e.dryRun ? '; dry run: pruning only reports' : ''}` };
    case 'backup.connecting':
      return { line: `${databaseLabel(e.database)}: connecting to ${printable(e.host)}:${e.port}${e.sslmode ? ` (sslmode ${e.sslmode})` : ''}` };
    case 'backup.dump.started':
      return { line: `${databaseLabel(e.database)}: pg_dump ${e.pgDumpVersion} of PostgreSQL ${e.serverVersion}, ${e.compression}${e.databaseBytes !== undefined ? `, database ${formatBytes(e.databaseBytes)}` : ''}` };
    case 'backup.dump.progress':
      return { label: `${databaseLabel(e.database)}: dumped` };
    case 'backup.row-counts.incomplete':
      return { line: `${databaseLabel(e.database)}: ${e.warning}`, level: 'warn' };
    case 'backup.upload.notice':
    case 'store.probe':
      return e.event === 'backup.upload.notice' ? { line: e.message, level: 'warn' } : {};
    case 'backup.dump.uploaded':
      return { line: `${databaseLabel(e.database)}: uploaded ${formatBytes(e.bytes)} in ${formatDuration(e.durationMs)} (${formatBytes(e.bytesPerSecond)}/s)` };
    case 'backup.complete':
      return { line: `${databaseLabel(e.database)}: backup complete, ${printable(e.key)}` };
    case 'backup.failed':
      return { line: `${databaseLabel(e.database)}: backup FAILED (${e.stage}): ${e.error}${e.hint ? `\n    what to do: ${e.hint}` : ''}`, level: 'error' };
    case 'backup.not-started':
      return { line: `no backup started (${e.stage}): ${e.error}`, level: 'error' };
    case 'backup.measured':
    case 'store.capabilities':
    case 'backup.finished':
      return {};
    case 'backup.globals.uploaded':
      return { line: `${databaseLabel(GLOBALS_FOLDER)}: uploaded ${formatBytes(e.bytes)}${e.encrypted ? ' (encrypted)' : ''}` };
    case 'store.feature-refused':
      return { line: `${databaseLabel(e.database)}: the store refused a feature it was assumed to have (${e.error}): probing the store, then taking the database again`, level: 'warn' };
    case 'backup.fan-out.summary':
      return { line: `fan-out: ${e.succeeded} succeeded, ${e.failed} failed${e.published ? '' : ' (summary not published)'}` };
    case 'prune.unreadable-manifest':
      return { line: `${databaseLabel(e.database)}: ${printable(e.key)}: unreadable manifest (${e.problem}): not counted by retention, left in place`, level: 'warn' };
    case 'prune.locked':
      return { line: `${databaseLabel(e.database)}: ${plural(e.locked, 'backup')} under Object Lock, left in place until their lock ends`, level: 'warn' };
    case 'prune.done':
    case 'prune.dry-run':
      return { line: `${databaseLabel(e.database)}: kept ${e.kept}, ${e.event === 'prune.done' ? 'deleted' : 'would delete'} ${plural(e.deleted, 'object')}${e.locked ? `, ${e.locked} under Object Lock` : ''}` };
    case 'prune.stale-uploads.aborted':
    case 'prune.stale-uploads.dry-run':
      return e.aborted === 0 ? {} : { line: `${e.event === 'prune.stale-uploads.aborted' ? 'aborted' : 'would abort'} ${plural(e.aborted, 'stale multipart upload')} under ${printable(e.prefix)}` };
    case 'alert.not-configured':
      return { line: `no ALERT_TOPIC_ARN: alert "${e.subject}" not sent`, level: 'warn' };
    case 'alert.publish-failed':
      return { line: `could not publish the alert "${e.subject}" to SNS: ${e.error}`, level: 'error' };
    case 'heartbeat.sent':
      return { line: `heartbeat sent (${e.outcome})` };
    case 'heartbeat.refused':
      return { line: `heartbeat ping refused: HTTP ${e.status}`, level: 'warn' };
    case 'heartbeat.failed':
      return { line: `heartbeat ping failed: ${e.error}`, level: 'warn' };
    case 'metrics.not-sent':
      return { line: `${databaseLabel(e.database)}: CloudWatch metrics not sent: ${e.error}`, level: 'warn' };
    case 'restore.manifest':
      return { line: `backup of ${databaseLabel(e.database)} taken ${e.startedAt}, ${formatBytes(e.bytes)}: ${printable(e.key)}` };
    case 'restore.download.progress':
      return { label: 'downloaded' };
    case 'restore.sha256-verified':
      return { line: `SHA-256 verified (${formatBytes(e.bytes)})` };
    case 'restore.identity-matched':
      return { line: 'age identity matched' };
    case 'restore.decrypted':
      return { line: `decrypted ${formatBytes(e.bytes)}, SHA-256 verified` };
    case 'verify.toc':
      return { line: `archive: ${plural(e.entries, 'entry', 'entries')}, data for ${plural(e.tablesWithData, 'table')}` };
    case 'restore.progress':
      return { label: `restoring into ${printable(e.database)}` };
    case 'restore.done':
      return { line: `restored ${plural(e.tables, 'table')} into ${printable(e.database)} in ${formatDuration(e.ms)}${e.errors ? `, ${plural(e.errors, 'error')}` : ''}` };
    case 'restore.not-restored':
      return { line: `not restored: ${e.message}` };
    case 'warning':
      return { line: e.message, level: 'warn' };
    case 'verify.inspected':
      return { line: `counted the rows of ${plural(e.tables, 'table')} in ${formatDuration(e.ms)}` };
    case 'verify.problem':
      return { line: `(${e.stage}) ${e.message}`, level: 'error' };
    case 'verify.server':
      return { line: e.status === 'starting' ? 'starting a throwaway PostgreSQL server' : `throwaway PostgreSQL server started${e.ms !== undefined ? ` in ${formatDuration(e.ms)}` : ''}` };
    case 'verify.finished':
      return {};
    case 'drill.stale-server-removed':
      return { line: `removed a throwaway server left by an earlier run (${e.dir})`, level: 'warn' };
    case 'drill.report-failed':
      return { line: `${databaseLabel(e.database)}: could not write the drill report: ${e.error}`, level: 'error' };
    case 'drill.finished':
      return { line: `${databaseLabel(e.database)}: drill ${e.status}${e.failingTables.length ? `, failing: ${e.failingTables.map(printable).join(', ')}` : ''} (${formatDuration(e.durationMs)})` };
    case 'drill.budget-exhausted':
      return { line: `drill stopped at its time budget; not reached: ${e.notReached.map(databaseLabel).join(', ')}`, level: 'warn' };
  }
}

/**
 * The sink the CLI gives the engine. pg_dump's progress arrives per chunk: at most five redraws a
 * second (Output throttles JSON lines further).
 */
export function cliEvents(out: Output, now: () => number = Date.now): EventSink {
  let lastDump = 0;
  return (e) => {
    if (e.event === 'backup.dump.progress') {
      const t = now();
      if (t - lastDump < 200) return;
      lastDump = t;
    }
    const line = cliEvent(e);
    if (line) out.progress(line, humanText(e));
  };
}
