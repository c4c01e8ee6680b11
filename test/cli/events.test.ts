/**
 * The CLI's JSON lines are a declared interface (issue 12 §5): their `event` names and fields come
 * from the engine's typed events (engine/events.ts), never from log wording. The engine once
 * reported a backup only through log lines, and the CLI turned each line's message into its
 * `event`: rewording a log line silently changed the CLI's output. Listed here: every event name
 * the CLI may write, and the exact events and fields of a run, a restore and a verify.
 */
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../../engine/backup/backup.ts';
import { loadConfig } from '../../engine/config.ts';
import { createDeps, type Deps } from '../../engine/deps.ts';
import type { EngineEvent } from '../../engine/events.ts';
import { powertoolsEvents, type Log, type MetricsSink, lambdaDeps } from '../../lambda/powertools.ts';
import { CliContext } from '../../cli/context.ts';
import { CLI_EVENT_NAMES, cliEvent } from '../../cli/events.ts';
import { LOCAL_PG_TOOLS } from '../../cli/pg-tool.ts';
import { runCli, startCliServices, type CliServices } from '../support/cli.ts';

/** The declared interface: changing it is a visible change of the CLI's output (docs/operations.md). */
const DECLARED = [
  'backup.started', 'backup.connecting', 'backup.dump.started', 'backup.dump.progress', 'backup.row-counts.incomplete', 'backup.upload.notice', 'backup.dump.uploaded', 'backup.complete',
  'backup.failed', 'backup.not-started', 'backup.globals.uploaded', 'store.capabilities', 'store.probe',
  'store.feature-refused', 'backup.finished', 'backup.fan-out.summary',
  'prune.unreadable-manifest', 'prune.locked', 'prune.done', 'prune.dry-run',
  'prune.stale-uploads.aborted', 'prune.stale-uploads.dry-run',
  'alert.not-configured', 'alert.publish-failed', 'heartbeat.sent', 'heartbeat.refused', 'heartbeat.failed', 'metrics.not-sent',
  'restore.manifest', 'restore.download.progress', 'restore.sha256-verified', 'restore.identity-matched', 'restore.decrypted', 'verify.toc', 'restore.progress', 'restore.done', 'restore.not-restored', 'warning', 'verify.inspected', 'verify.problem', 'verify.server', 'verify.finished',
  'drill.stale-server-removed', 'drill.report-failed', 'drill.finished', 'drill.budget-exhausted',
  'result', 'error',
  // `invoke`'s start (cli/invoke.ts).
  'invoke.started',
  // `status`'s lines (cli/status.ts): one per database and alarm, before the result.
  'status.database', 'status.alarm',
  // restore --remote / verify --remote (cli/remote.ts): the Fargate task's status as it changes.
  'remote.task',
];

/**
 * Fields of each event of a run, a restore and a verify (`?`: not on every line). Every line also
 * has `time`; the output adds `bytesPerSecond`/`etaSeconds` to lines with bytes while a transfer moves.
 */
const FIELDS: Record<string, readonly string[]> = {
  'backup.started': ['stage', 'reason', 'dryRun', 'bucket', 'prefix'],
  'backup.connecting': ['stage', 'database', 'host', 'port', 'sslmode'],
  'store.capabilities': ['stage', 'profile', 'source', 'conditionalWrites', 'checksumSha256', 'maxParts'],
  'backup.dump.started': ['stage', 'database', 'key', 'serverVersion', 'pgDumpVersion', 'compression', 'databaseBytes'],
  'backup.dump.progress': ['database', 'key', 'bytes', 'streaming'],
  'backup.dump.uploaded': ['stage', 'database', 'key', 'bytes', 'sha256', 'durationMs'],
  'backup.complete': ['stage', 'database', 'key', 'bytes', 'sha256', 'durationMs'],
  'prune.done': ['stage', 'database', 'kept', 'unreadable', 'locked?', 'deleted', 'keys'],
  'backup.finished': ['status', 'backups', 'failures', 'pruned', 'dryRun'],
  'restore.manifest': ['key', 'database', 'bytes', 'startedAt'],
  'restore.download.progress': ['key', 'bytes', 'total', 'done?', 'ms?'],
  'restore.sha256-verified': ['sha256', 'bytes'],
  'verify.toc': ['entries', 'tablesWithData'],
  'restore.progress': ['database', 'jobs', 'tablesTotal', 'tablesDone', 'table?', 'elapsedMs?'],
  'restore.done': ['database', 'tables', 'ms', 'errors'],
  'verify.inspected': ['tables', 'ms'],
  'verify.finished': ['status', 'tables', 'rows', 'ms'],
};
const OUTPUT_FIELDS = new Set(['time', 'bytesPerSecond', 'etaSeconds', 'message']);

function expectDeclaredFields(line: Record<string, unknown>): void {
  const name = String(line.event);
  const declared = FIELDS[name];
  expect(declared, `fields of "${name}" are not declared`).toBeDefined();
  const keys = Object.keys(line).filter((k) => k !== 'event' && !OUTPUT_FIELDS.has(k)).sort();
  const all = declared!.map((f) => f.replace(/\?$/, ''));
  const required = declared!.filter((f) => !f.endsWith('?'));
  expect(keys.filter((k) => !all.includes(k)), `undeclared fields of "${name}"`).toEqual([]);
  expect(required.filter((k) => !keys.includes(k)), `missing fields of "${name}"`).toEqual([]);
  expect(typeof line.time).toBe('string');
}

/** Event names in order, a moving event's repeated lines counted once. */
function sequence(events: readonly Record<string, unknown>[]): string[] {
  return events.map((e) => String(e.event)).filter((name, i, all) => name !== all[i - 1]);
}

function sink(): { text: () => string; stream: Writable } {
  let text = '';
  return { text: () => text, stream: new Writable({ write: (chunk: Buffer, _enc, done) => { text += chunk.toString(); done(); } }) };
}

describe('the declared interface', () => {
  it('lists every event name a JSON line can carry', () => {
    expect([...CLI_EVENT_NAMES].sort()).toEqual([...DECLARED, 'warning'].filter((n, i, all) => all.indexOf(n) === i).sort());
  });

  it('a log line is never a CLI event: the CLI hands the engine an event sink, not a log to turn into output', () => {
    const out = sink();
    const ctx = new CliContext({ stdout: out.stream, stderr: sink().stream, env: { BACKUP_BUCKET: 'events-bucket', AWS_REGION: 'eu-west-1' } });
    const deps = ctx.deps() as Deps & { log?: Log };
    // What rewording the engine's "dump started" log line looked like to the CLI.
    deps.log?.info('dump started, reworded', { stage: 'dump', database: 'app' });
    expect(out.text()).toBe('');
    deps.events({ event: 'backup.dump.started', stage: 'dump', database: 'app', key: 'k', serverVersion: '18.1', pgDumpVersion: '18.1', compression: 'zstd:3', databaseBytes: 1 });
    expect(JSON.parse(out.text())).toMatchObject({ event: 'backup.dump.started', database: 'app', key: 'k' });
  });

  it('maps events to lines: warnings and errors marked with their level, the dump as a stream, metrics not shown', () => {
    expect(cliEvent({ event: 'heartbeat.failed', stage: 'notify', outcome: 'fail', heartbeat: 'https://hc.example', error: 'x' })).toMatchObject({ level: 'warn' });
    expect(cliEvent({ event: 'backup.failed', database: 'app', stage: 'dump', key: undefined, hint: undefined, requestId: undefined, error: 'x' })).toMatchObject({ level: 'error' });
    expect(cliEvent({ event: 'backup.dump.progress', database: 'app', key: 'k', bytes: 5 })).toEqual({ event: 'backup.dump.progress', message: 'dump', database: 'app', key: 'k', bytes: 5, streaming: true });
    expect(cliEvent({ event: 'backup.measured', database: 'app', succeeded: true, bytes: 5, durationMs: 1 })).toBeUndefined();
    expect(cliEvent({ event: 'prune.done', stage: 'prune', database: 'app', kept: 1, locked: 0, deleted: 0, keys: [] })).toEqual({ event: 'prune.done', message: 'pruned', stage: 'prune', database: 'app', kept: 1, locked: 0, deleted: 0, keys: [] });
    // An event with words of its own keeps them as its message.
    expect(cliEvent({ event: 'warning', message: 'transaction_timeout ignored' })).toMatchObject({ event: 'warning', message: 'transaction_timeout ignored', level: 'warn' });
  });

  it('the Lambda adapter logs the same events through Powertools and makes the metrics; progress is not logged', () => {
    const lines: { level: string; message: string; attributes: unknown }[] = [];
    const rec = (level: string) => (message: string, attributes?: unknown) => void lines.push({ level, message, attributes });
    const log: Log = { debug: rec('debug'), info: rec('info'), warn: rec('warn'), error: rec('error') };
    const measured: unknown[] = [];
    const drilled: unknown[] = [];
    const metrics: MetricsSink = { backupFinished: (m) => void measured.push(m), drillFinished: (m) => void drilled.push(m) };
    const emit = powertoolsEvents(log, metrics);
    emit({ event: 'backup.dump.progress', database: 'app', key: 'k', bytes: 5 });
    emit({ event: 'backup.measured', database: 'app', succeeded: true, bytes: 5, durationMs: 1 });
    emit({ event: 'backup.failed', database: 'app', stage: 'dump', key: undefined, hint: 'h', requestId: 'r', error: 'x' });
    emit({ event: 'backup.upload.notice', stage: 'upload', message: 'CompleteMultipartUpload failed but S3 had completed the upload: the dump is kept', key: 'k' });
    emit({ event: 'drill.finished', stage: 'drill', database: 'app', key: 'k', status: 'failed', failingTables: ['public.t'], durationMs: 4200 });
    expect(lines).toEqual([
      { level: 'error', message: 'backup failed', attributes: { database: 'app', stage: 'dump', key: undefined, hint: 'h', requestId: 'r', error: 'x' } },
      { level: 'warn', message: 'CompleteMultipartUpload failed but S3 had completed the upload: the dump is kept', attributes: { stage: 'upload', key: 'k' } },
      { level: 'info', message: 'drill finished', attributes: { stage: 'drill', database: 'app', key: 'k', status: 'failed', failingTables: ['public.t'], durationMs: 4200 } },
    ]);
    expect(measured).toEqual([{ database: 'app', succeeded: true, bytes: 5, durationMs: 1 }]);
    expect(drilled).toEqual([{ database: 'app', succeeded: false, failed: true, durationMs: 4200 }]);
  });
});

describe('a run, a restore and a verify, as the CLI writes them', () => {
  let svc: CliServices;
  beforeAll(async () => {
    svc = await startCliServices({ retentionCount: 1 });
  });
  afterAll(async () => {
    await svc?.stop();
  });

  it('the engine reports a run through the one event sink, typed, and never writes a log line itself', async () => {
    const events: EngineEvent[] = [];
    const logged: string[] = [];
    const log: Log = { debug: (m) => void logged.push(m), info: (m) => void logged.push(m), warn: (m) => void logged.push(m), error: (m) => void logged.push(m) };
    const config = loadConfig(svc.env);
    const deps = createDeps(config, lambdaDeps({ s3: svc.clients.s3, secrets: svc.clients.secrets, sns: svc.clients.sns, pgTools: LOCAL_PG_TOOLS, log, events: (e) => void events.push(e) }));
    const result = await runBackup({ reason: 'events test' }, config, deps);
    expect(result.status).toBe('succeeded');
    expect(logged).toEqual([]);
    expect(sequence(events as unknown as Record<string, unknown>[])).toEqual(['backup.started', 'backup.connecting', 'store.capabilities', 'backup.dump.started', 'backup.dump.progress', 'backup.dump.uploaded', 'backup.complete', 'backup.measured', 'prune.done', 'backup.finished']);
    expect(events.find((e) => e.event === 'backup.complete')).toMatchObject({ database: 'app', key: result.backups[0]!.key, sha256: result.backups[0]!.sha256 });
  });

  it('run, restore and verify write exactly the declared events and fields, the result last', async () => {
    const run = await runCli(['backup', '--reason', 'events'], svc.env);
    expect(run.code, run.stderr).toBe(0);
    expect(sequence(run.events)).toEqual(['backup.started', 'backup.connecting', 'store.capabilities', 'backup.dump.started', 'backup.dump.progress', 'backup.dump.uploaded', 'backup.complete', 'prune.done', 'backup.finished', 'result']);

    const restore = await runCli(['restore', '--latest', '--database', 'app', '--target-url', svc.pg.urlFor('events_copy'), '--create'], svc.env);
    expect(restore.code, restore.stderr).toBe(0);
    expect(sequence(restore.events)).toEqual(['restore.manifest', 'restore.download.progress', 'restore.sha256-verified', 'restore.progress', 'restore.done', 'result']);

    const verify = await runCli(['verify', '--latest', '--database', 'app', '--scratch-url', svc.pg.url], svc.env);
    expect(verify.code, verify.stderr).toBe(0);
    expect(sequence(verify.events)).toEqual(['restore.manifest', 'restore.download.progress', 'restore.sha256-verified', 'verify.toc', 'restore.progress', 'restore.done', 'verify.inspected', 'verify.finished', 'result']);

    for (const line of [...run.events, ...restore.events, ...verify.events]) {
      expect(CLI_EVENT_NAMES).toContain(line.event);
      if (line.event !== 'result') expectDeclaredFields(line);
    }
  });
});
