/**
 * `pg-s3-backup status`: one screen for the whole bucket. Per database: the newest complete backup
 * and its age (S3's clock), the size trend, the last restore drill, backups taken with a wrong clock
 * and manifests that cannot be trusted; and, when the stack is deployed and readable, its alarms'
 * states and the schedule the allowed age comes from. The verdict is engine/status.ts's (pure);
 * this module only reads. Exit 0 when every database is fresh, 1 when one is older than its
 * schedule allows (or has no complete backup), 2 on a usage error.
 */
import { CloudFormationClient, DescribeStacksCommand, type Stack } from '@aws-sdk/client-cloudformation';
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { GetScheduleCommand, SchedulerClient } from '@aws-sdk/client-scheduler';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { describeError } from '../engine/check/check.ts';
import { awsClientOptions } from '../engine/deps.ts';
import { ManifestGoneError } from '../engine/errors.ts';
import { computeStatus, DAILY_MAX_AGE_HOURS, formatHours, maxAgeForRuns, SIZE_WINDOW, type DatabaseFacts, type DatabaseStatus, type ReadBackup, type StatusReport } from '../engine/status.ts';
import type { StoredBackup } from '../engine/store/s3-store.ts';
import type { BackupSource } from '../engine/store/store.ts';
import type { CliContext } from './context.ts';
import { DEFAULT_STACK_NAME } from './options.ts';
import { listResources, stackAlarms, type DoctorClients } from './doctor-aws.ts';
import { nextRuns } from './next-run.ts';
import { EXIT, ExitCode } from './options.ts';
import { formatBytes, formatDuration, printable } from './output.ts';

interface StatusOpts {
  readonly maxAgeHours?: number;
  /** false with --no-stack. */
  readonly stack: string | false;
}

/** Databases read at once: a bucket of twenty databases is one screen in a few seconds, not twenty round trips in a row. */
const CONCURRENCY = 4;

function hours(value: string): number {
  const n = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value.trim()) || !(n > 0) || n > 24 * 400) throw new InvalidArgumentError('expected a number of hours above 0 (e.g. 26 or 0.5), at most 9600');
  return n;
}

export function registerStatus(program: Command, ctx: CliContext): void {
  program
    .command('status')
    .description('one screen for the whole bucket: each database\'s newest complete backup and its age, size trend, last drill, clock skew and unreadable manifests, and the deployed stack\'s alarms; exit 1 when a database is older than its schedule allows')
    .option('--max-age-hours <hours>', `how old the newest complete backup may be (default: the deployed schedule's interval + 2 h; without a readable stack ${DAILY_MAX_AGE_HOURS} h, a daily schedule)`, hours)
    .addOption(new Option('--stack <name>', 'CloudFormation stack name, for its alarms and schedule (the context key stackName)').env('PG_S3_BACKUP_STACK').default(DEFAULT_STACK_NAME))
    .option('--no-stack', 'do not look for the deployed stack (host mode, another S3-compatible store)')
    .action(async (opts: StatusOpts) => {
      const config = ctx.cfg({ needsCredentials: false });
      const store = ctx.store();
      const now = new Date(ctx.now());
      const [facts, deployed] = await Promise.all([
        bucketFacts(store),
        opts.stack !== false ? readStack(ctx, opts.stack, config.aws, now) : Promise.resolve<Deployed>({ stack: '-', state: 'not checked', detail: '--no-stack' }),
      ]);
      const maxAge =
        opts.maxAgeHours !== undefined ? { hours: opts.maxAgeHours, source: '--max-age-hours' }
          : deployed.schedule?.maxAgeHours !== undefined ? { hours: deployed.schedule.maxAgeHours, source: `schedule ${deployed.schedule.expression} in ${deployed.schedule.timeZone}` }
            : { hours: DAILY_MAX_AGE_HOURS, source: 'daily (no deployed schedule read)' };
      const expected = config.databases && !config.discover ? config.databases : [];
      const report = computeStatus({ databases: facts, expected, now, maxAgeHours: maxAge.hours });
      const result = {
        ok: report.stale.length === 0,
        bucket: store.bucket,
        prefix: store.prefix,
        maxAgeHours: maxAge.hours,
        maxAgeFrom: maxAge.source,
        databases: report.databases.length,
        stale: report.stale,
        attention: report.databases.filter((d) => d.verdict === 'attention').map((d) => d.database),
        stack: { name: deployed.stack, state: deployed.state, ...(deployed.detail ? { detail: deployed.detail } : {}), ...(deployed.dashboardUrl ? { dashboardUrl: deployed.dashboardUrl } : {}) },
        alarmsInAlarm: (deployed.alarms ?? []).filter((a) => a.state === 'ALARM').map((a) => a.name),
      };
      // JSON: one line per database and alarm, then the result; text: the screen.
      for (const d of report.databases) ctx.out.event({ event: 'status.database', ...d });
      for (const a of deployed.alarms ?? []) ctx.out.event({ event: 'status.alarm', ...a });
      ctx.out.result(result, formatStatus(report, { bucket: store.bucket, prefix: store.prefix, maxAgeFrom: maxAge.source, deployed }));
      if (!result.ok) throw new ExitCode(EXIT.failure);
    });
}

/** Each database's listing, the manifests of its newest backups and its newest drill report. */
async function bucketFacts(store: BackupSource): Promise<DatabaseFacts[]> {
  const names = await store.listDatabases();
  const out: DatabaseFacts[] = [];
  for (let i = 0; i < names.length; i += CONCURRENCY) {
    out.push(...(await Promise.all(names.slice(i, i + CONCURRENCY).map((name) => databaseFacts(store, name)))));
  }
  return out;
}

const storedAt = (b: StoredBackup) => (b.storedAt ?? b.lastModified ?? b.startedAt).getTime();

/**
 * One database's facts for the verdict: its listing, the manifests of its newest backups, and its
 * newest drill report that is still there (a prune at the same time may delete the one listed).
 */
export async function databaseFacts(store: BackupSource, database: string): Promise<DatabaseFacts> {
  const listing = await store.listBackups(database);
  const newestFirst = [...listing.complete].sort((a, b) => storedAt(b) - storedAt(a));
  // The newest SIZE_WINDOW + 1 manifests give the age and the size trend; past them, only as many
  // as it takes to find one readable (older unreadable ones: `list --all`).
  const read: ReadBackup[] = [];
  let readable = 0;
  for (let i = 0; i < newestFirst.length && (i <= SIZE_WINDOW || readable === 0); i++) {
    const { readable: ok, unreadable } = await store.readManifests([newestFirst[i]!]);
    read.push(...ok, ...unreadable);
    readable += ok.length;
  }
  const drilled = listing.complete.filter((b) => b.drillReport).sort((a, b) => (b.drillReport!.lastModified?.getTime() ?? 0) - (a.drillReport!.lastModified?.getTime() ?? 0));
  let drill: DatabaseFacts['drill'];
  for (const b of drilled) {
    try {
      drill = { key: b.key, summary: await store.readDrillSummary(b.drillReport!.key) };
    } catch (err) {
      // Deleted with its backup since the listing (a prune at the same time): not an unreadable
      // report, and not the last drill any more; the newest report still there is.
      if (err instanceof ManifestGoneError) continue;
      drill = { key: b.key, problem: (err as Error).message };
    }
    break;
  }
  return { database, complete: listing.complete, read, serverTime: listing.serverTime, drill };
}

export interface AlarmState {
  readonly name: string;
  readonly state: string;
  readonly reason: string;
  readonly since: string | null;
}

interface Deployed {
  readonly stack: string;
  /** found: outputs and alarms read; absent: no such stack; unreadable: it could not be asked; not checked: --no-stack. */
  readonly state: 'found' | 'absent' | 'unreadable' | 'not checked';
  readonly detail?: string;
  readonly alarms?: readonly AlarmState[];
  readonly schedule?: { readonly name: string; readonly expression: string; readonly timeZone: string; readonly maxAgeHours: number | undefined };
  readonly dashboardUrl?: string;
}

/**
 * The deployed stack, when there is one and the caller may read it: its alarms' states, the
 * schedule (the allowed age) and the dashboard's URL. Never fails the command: a bucket without
 * a stack (host mode, another store) is as normal as one with.
 */
async function readStack(ctx: CliContext, stackName: string, aws: Parameters<typeof awsClientOptions>[0], now: Date): Promise<Deployed> {
  // Bounded like every AWS call of the engine: a black-holed endpoint must not hold the screen.
  const options = awsClientOptions(aws);
  const given: Partial<DoctorClients> = ctx.aws ?? {};
  const clients = {
    cloudformation: given.cloudformation ?? new CloudFormationClient(options),
    cloudwatch: given.cloudwatch ?? new CloudWatchClient(options),
    scheduler: given.scheduler ?? new SchedulerClient(options),
  };
  let stack: Stack | undefined;
  try {
    stack = (await clients.cloudformation.send(new DescribeStacksCommand({ StackName: stackName }))).Stacks?.[0];
  } catch (err) {
    const d = describeError(err).detail;
    if (/does not exist/i.test(d)) return { stack: stackName, state: 'absent', detail: `no stack ${stackName} in this account and region` };
    return { stack: stackName, state: 'unreadable', detail: d };
  }
  if (!stack) return { stack: stackName, state: 'absent', detail: `no stack ${stackName} in this account and region` };
  const outputs = Object.fromEntries((stack.Outputs ?? []).map((o) => [o.OutputKey ?? '', o.OutputValue ?? '']));
  const problems: string[] = [];
  let alarms: AlarmState[] | undefined;
  try {
    alarms = (await stackAlarms(clients, () => listResources(clients, stackName), outputs.AlertTopicArn)).map((a) => ({
      name: a.AlarmName ?? '?',
      state: a.StateValue ?? 'UNKNOWN',
      reason: a.StateReason ?? '',
      since: a.StateUpdatedTimestamp?.toISOString() ?? null,
    }));
  } catch (err) {
    problems.push(`alarms not read: ${describeError(err).detail}`);
  }
  let schedule: Deployed['schedule'];
  if (outputs.ScheduleName) {
    try {
      const s = await clients.scheduler.send(new GetScheduleCommand({ Name: outputs.ScheduleName, ...(outputs.ScheduleGroupName ? { GroupName: outputs.ScheduleGroupName } : {}) }));
      const expression = s.ScheduleExpression ?? '?';
      const timeZone = s.ScheduleExpressionTimezone ?? 'UTC';
      schedule = { name: outputs.ScheduleName, expression, timeZone, maxAgeHours: maxAgeForRuns(nextRuns(expression, timeZone, now, 8)?.runs ?? []) };
    } catch (err) {
      problems.push(`schedule not read: ${describeError(err).detail}`);
    }
  }
  return {
    stack: stackName,
    state: 'found',
    ...(problems.length ? { detail: problems.join('; ') } : {}),
    ...(alarms ? { alarms } : {}),
    ...(schedule ? { schedule } : {}),
    ...(outputs.DashboardUrl ? { dashboardUrl: outputs.DashboardUrl } : {}),
  };
}

const short = (iso: string | null) => (iso ? iso.replace('T', ' ').replace(/:\d{2}(\.\d+)?Z$/, 'Z') : '-');

/** Pure: the screen. */
export function formatStatus(report: StatusReport, where: { readonly bucket: string; readonly prefix: string; readonly maxAgeFrom: string; readonly deployed: Deployed }): string {
  const lines = [`pg-s3-backup status: s3://${printable(where.bucket)}/${printable(where.prefix)} — ${report.databases.length} database(s), newest backup allowed ${formatHours(report.maxAgeHours)} old (${printable(where.maxAgeFrom)})`, ''];
  if (report.databases.length === 0) lines.push('no backups found');
  else lines.push(...table(report.databases));
  for (const d of report.databases) {
    if (d.problems.length === 0 && d.unreadable.length === 0) continue;
    lines.push('', `${d.verdict === 'stale' ? '✗' : '!'} ${printable(d.database)}:`);
    for (const p of d.problems) lines.push(`    ${printable(p)}`);
    for (const u of d.unreadable) lines.push(`    unreadable: ${printable(u.key)}: ${printable(u.problem)}`);
    for (const s of d.clockSkew.slice(0, 3)) lines.push(`    clock skew ${s.seconds > 0 ? '+' : ''}${formatHours(Math.abs(s.seconds) / 3600)}: ${printable(s.key)}`);
  }
  const dep = where.deployed;
  lines.push('');
  if (dep.state === 'found') {
    const alarms = dep.alarms ?? [];
    const count = (s: string) => alarms.filter((a) => a.state === s).length;
    lines.push(`stack ${dep.stack}: ${alarms.length} alarm(s): ${count('OK')} OK, ${count('ALARM')} in ALARM, ${count('INSUFFICIENT_DATA')} insufficient data${dep.detail ? ` (${dep.detail})` : ''}`);
    for (const a of alarms.filter((x) => x.state !== 'OK')) lines.push(`    ${a.state} ${printable(a.name)}${a.since ? ` since ${short(a.since)}` : ''}: ${printable(a.reason)}`);
    if (dep.dashboardUrl) lines.push(`dashboard: ${dep.dashboardUrl}`);
  } else {
    lines.push(`stack ${dep.stack}: ${dep.state === 'not checked' ? 'not checked' : dep.state === 'absent' ? 'not deployed' : 'not readable'}${dep.detail ? ` (${dep.detail})` : ''}: no alarm states`);
  }
  lines.push('', report.stale.length === 0 ? `every database has a complete backup younger than ${formatHours(report.maxAgeHours)}` : `STALE: ${report.stale.map(printable).join(', ')} — run a backup now (pg-s3-backup run, or the stack output InvokeCommand) and look at the alarms and the function's logs`);
  return lines.join('\n');
}

function table(rows: readonly DatabaseStatus[]): string[] {
  const cells = rows.map((d) => [
    printable(d.database),
    d.verdict.toUpperCase(),
    d.newest ? short(d.newest.storedAt ?? d.newest.startedAt) : '-',
    d.newest ? formatHours(d.newest.ageHours) : '-',
    d.newest ? formatBytes(d.newest.bytes) : '-',
    d.sizeTrend ? `${d.sizeTrend.changePercent >= 0 ? '+' : ''}${d.sizeTrend.changePercent} %` : '-',
    d.newest ? formatDuration(d.newest.durationMs) : '-',
    d.newest?.runner ?? '-',
    d.lastDrill ? `${d.lastDrill.status} ${short(d.lastDrill.drilledAt)}${d.lastDrill.ofNewest ? '' : ' (older backup)'}` : 'never',
  ]);
  const head = ['DATABASE', 'STATE', 'NEWEST (UTC)', 'AGE', 'SIZE', 'VS MEDIAN', 'DURATION', 'RUNNER', 'LAST DRILL'];
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: readonly string[]) => c.map((v, i) => (i === 3 || i === 4 || i === 5 ? v.padStart(widths[i]!) : v.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(head), ...cells.map(line)];
}
