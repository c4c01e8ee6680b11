/**
 * `restore --remote` and `verify --remote`: the same command, run by the same CLI inside the
 * stack's VPC as a Fargate task (engine/restore/remote-task.ts), for databases this machine cannot
 * reach. What goes to ECS is the command line the operator typed minus what only makes sense here
 * (--remote, --stack, --timeout) and never a credential: the target is named by a Secrets Manager
 * secret (`--target-secret`, `--scratch-secret`) under the stack's restore prefix, which the task
 * reads itself with its own role. The task's lines are shown here as they arrive, its result is
 * this command's result, its exit code this command's exit code.
 */
import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { CloudWatchLogsClient } from '@aws-sdk/client-cloudwatch-logs';
import { ECSClient } from '@aws-sdk/client-ecs';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { z } from 'zod';
import { MAX_TASK_TIMEOUT_SECONDS } from '../engine/settings/limits.ts';
import { RemoteTaskError, UsageError } from '../engine/errors.ts';
import { connectionFor, type PgConnection } from '../engine/pg/connection.ts';
import { NETWORK_HINT, runRemoteTask, type RemoteTaskOutcome, type RemoteTaskPlace } from '../engine/restore/remote-task.ts';
import { fetchSecret } from '../engine/pg/credentials.ts';
import type { CliContext, RemoteClients, RemoteDeps } from './context.ts';
import { DEFAULT_STACK_NAME } from './options.ts';
import { EXIT, ExitCode } from './options.ts';
import { ENGINE_EVENTS, type EngineEvent } from '../engine/events.ts';
import { humanText } from './events.ts';
import { formatDuration, type ProgressEvent } from './output.ts';


export interface RemoteOpts {
  readonly remote?: boolean;
  readonly stack: string;
  readonly timeout: number;
}

/** `--timeout`: `90s`, `45m`, `6h` or a number of seconds; at most a day. */
export function parseTimeout(value: string): number {
  const m = /^(\d+)\s*([smh]?)$/.exec(value.trim());
  const ms = m ? Number(m[1]) * { '': 1000, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as '' | 's' | 'm' | 'h'] : NaN;
  if (!(ms >= 1000 && ms <= MAX_TASK_TIMEOUT_SECONDS * 1000)) throw new InvalidArgumentError('expected a duration from 1s to 24h: 90s, 45m, 6h or seconds');
  return ms;
}

/** The options `--remote` adds to restore and verify. */
export function remoteOptions(command: Command): Command {
  return command
    .option('--remote', 'run this command as a Fargate task in the stack\'s VPC (the Fargate runner\'s subnets and security group), streaming its output here')
    .addOption(new Option('--stack <name>', 'with --remote: the CloudFormation stack (its output RemoteRestore)').env('PG_S3_BACKUP_STACK').default(DEFAULT_STACK_NAME))
    .option('--timeout <duration>', 'with --remote: stop the task and fail (exit 124) after this long (90s, 45m, 6h); the task keeps this deadline itself should this machine go away', parseTimeout, 6 * 3_600_000);
}

/** The stack output `RemoteRestore` (infra/constructs/remote-restore.ts). */
const RemoteRestoreOutput = z.object({
  cluster: z.string().min(1),
  taskDefinition: z.string().min(1),
  container: z.string().min(1),
  subnets: z.array(z.string().min(1)).min(1),
  securityGroups: z.array(z.string().min(1)).min(1),
  logGroup: z.string().min(1),
  logStreamPrefix: z.string().min(1),
  secretPrefix: z.string().min(1),
}) satisfies z.ZodType<RemoteTaskPlace & { readonly secretPrefix: string }>;
export type RemoteRestoreOutput = z.infer<typeof RemoteRestoreOutput>;

/** Options that cannot travel: a URL may hold a password (overrides are stored in clear text), a path is this machine's. */
const LOCAL_ONLY: Record<string, string> = {
  '--target-url': 'use --target-secret (a password in the task\'s command would be stored in clear text by ECS)',
  '--scratch-url': 'use --scratch-secret (a password in the task\'s command would be stored in clear text by ECS)',
  '--temp-dir': 'the task downloads to its own /tmp (size it with the context key fargateEphemeralGiB)',
  '--identity-file': 'use --identity-secret with a secret under the stack\'s restore prefix',
  '--local': 'the task has no throwaway server: use --scratch-secret',
  '--server-layer': 'the task has no throwaway server: use --scratch-secret',
  '--alert': 'the restore task cannot publish: run verify --alert from a host',
};
/** Ours, not the task's. */
// The output options too: the task always writes JSON lines (it is piped), and this side renders
// them as the operator asked.
const REMOTE_ONLY = new Set(['--remote', '--stack', '--timeout', '--output', '--json', '--quiet', '--verbose', '--no-progress']);

/**
 * The task's command: this command's name and every option the operator gave on the command line,
 * as given, minus the remote ones. A local-only option is a usage error (exit 2), before anything runs.
 */
export function taskCommand(command: Command, secretOptions: readonly string[]): string[] {
  const argv = [command.name()];
  const opts = command.opts<Record<string, unknown>>();
  for (const o of command.options) {
    const key = o.attributeName();
    if (command.getOptionValueSource(key) !== 'cli' || !o.long || REMOTE_ONLY.has(o.long)) continue;
    const refusal = LOCAL_ONLY[o.long];
    if (refusal) throw new UsageError(`${o.long} does not go with --remote: ${refusal}`);
    const value = opts[key];
    if (o.negate) {
      if (value === false) argv.push(o.long);
    } else if (!o.required && !o.optional) {
      if (value === true) argv.push(o.long);
    } else {
      for (const v of Array.isArray(value) ? value : [value]) argv.push(o.long, String(v));
    }
  }
  if (!secretOptions.some((s) => argv.includes(s))) {
    throw new UsageError(`--remote needs ${secretOptions.join(' or ')}: the task reads the server's credentials from that Secrets Manager secret`, {
      hint: 'Create a secret named under the stack\'s restore prefix (runbook: "Restore from inside the VPC") and pass its name or ARN.',
    });
  }
  return argv;
}

/** A secret's name from its name or ARN (`arn:…:secret:NAME-AbCdEf`, the suffix is Secrets Manager's). */
function secretName(id: string): string {
  const arn = /^arn:[^:]+:secretsmanager:[^:]*:[^:]*:secret:(.+)$/.exec(id);
  return arn ? arn[1]! : id;
}

/**
 * A server from a Secrets Manager secret in RDS format (host, port, username, password, dbname,
 * optional sslmode): TLS as the backup's (RDS_CA_BUNDLE in the task: verify-full), the password
 * registered so that no output shows it. `database` overrides the secret's dbname.
 */
export async function secretServer(ctx: CliContext, secretId: string, database: string | undefined, fallbackDatabase?: string): Promise<PgConnection> {
  const creds = await fetchSecret(ctx.deps().secrets, secretId);
  ctx.out.addSecret(creds.password);
  const name = database ?? creds.dbname ?? fallbackDatabase;
  if (name === undefined) throw new UsageError(`secret ${secretId} names no dbname: give the database to restore into with --target-database`);
  return connectionFor(creds, name, ctx.cfg({ needsCredentials: false }));
}

export interface RemoteRun {
  /** The task's command (taskCommand). */
  readonly command: readonly string[];
  /** The secrets the task will read: each must be under the stack's restore prefix. */
  readonly secrets: readonly string[];
  /** Shows the task's result as the command would show its own. */
  readonly show: (result: never) => void;
}

/** Runs `run.command` as the stack's restore task and ends as it ended (ExitCode or an error). */
export async function runRemote(ctx: CliContext, opts: RemoteOpts, run: RemoteRun): Promise<void> {
  const clients = remoteClients(ctx.remote);
  const out = await stackOutput(clients, opts.stack);
  for (const s of run.secrets) {
    if (!secretName(s).startsWith(out.secretPrefix)) {
      throw new UsageError(`secret ${s} is not named under ${out.secretPrefix}: the restore task may read only those`, {
        hint: `Create (or copy) the credentials as a secret named ${out.secretPrefix}<something> (runbook: "Restore from inside the VPC").`,
      });
    }
  }
  const relay = new TaskRelay(ctx);
  // The task's own deadline, counted from its start (no clock of this machine involved): it stops
  // itself, cleanly, even when nobody follows it any more (this machine closed, its network lost).
  const environment = { TASK_TIMEOUT_SECONDS: String(Math.ceil(opts.timeout / 1000)) };
  const outcome: RemoteTaskOutcome = await runRemoteTask(clients, { ...out, command: run.command, environment, startedBy: `pg-s3-backup/${run.command[0]}` }, {
    timeoutMs: opts.timeout,
    ...(ctx.remote?.pollMs !== undefined ? { pollMs: ctx.remote.pollMs } : {}),
    signal: ctx.signal,
    onLine: (line) => relay.line(line),
    onStatus: (s) => ctx.out.progress({ event: 'remote.task', status: s.lastStatus, taskArn: s.taskArn, logGroup: out.logGroup }, { line: `remote task ${s.lastStatus}: ${s.taskArn}` }),
  });
  const where = `task ${outcome.taskArn}`;
  if (outcome.stoppedByUs === 'timeout') {
    // Exit 124, as when the task stops itself at the same deadline (TASK_TIMEOUT_SECONDS).
    ctx.out.error(new RemoteTaskError(`the remote ${run.command[0]} did not finish within --timeout ${formatDuration(opts.timeout)}: ${where} was stopped${outcome.stopped ? '' : ' (it had not reported STOPPED yet)'}`, {
      hint: 'The task was sent SIGTERM, on which a restore cleans up (a database its --create made is dropped). Give it more time (--timeout; verify\'s report times a restore), or more task resources (fargateCpu, fargateMemoryMiB) and --jobs.',
    }));
    throw new ExitCode(EXIT.timeout);
  }
  if (outcome.stoppedByUs === 'interrupted') {
    throw new RemoteTaskError(`interrupted: ${where} was stopped`, { hint: 'Run the command again when you are ready.' });
  }
  if (outcome.exitCode === undefined) {
    const reason = [outcome.stopCode, outcome.stoppedReason].filter(Boolean).join(': ') || 'no reason given';
    const neverRan = outcome.stopCode === 'TaskFailedToStart' || /CannotPull|ResourceInitialization/i.test(reason);
    throw new RemoteTaskError(neverRan ? `${where} did not start: ${reason}` : `${where} stopped before its ${run.command[0]} ended: ${reason}`, {
      hint: neverRan
        ? `Nothing was restored. ${NETWORK_HINT}`
        : 'Something outside the restore stopped it (a StopTask, a Fargate maintenance): look for a half-restored target (a --create restore drops its database when it has the time to), then run the command again.',
    });
  }
  if (relay.result !== undefined) run.show(relay.result as never);
  if (outcome.exitCode === EXIT.ok) {
    if (relay.result === undefined) ctx.out.warn(`${where} ended well but its result line was not in its log (${out.logGroup})`);
    return;
  }
  if (relay.error) {
    ctx.out.error({ ...relay.error, message: `${relay.error.message} (in ${where}, exit ${outcome.exitCode})` });
  } else if (relay.result === undefined) {
    const tail = relay.otherLines.slice(-5).join('\n  ');
    ctx.out.error({ name: 'RemoteTaskError', stage: 'remote', message: `the task's ${run.command[0]} exited ${outcome.exitCode}${tail ? `; its last lines:\n  ${tail}` : ''}`, hint: `Its whole output is in the log group ${out.logGroup}.` });
  }
  throw new ExitCode(outcome.exitCode);
}

/** Real clients (region and endpoints from the SDK's own variables), with any given ones instead. */
function remoteClients(given: RemoteDeps = {}): RemoteClients {
  return {
    cloudformation: given.cloudformation ?? new CloudFormationClient({}),
    ecs: given.ecs ?? new ECSClient({}),
    logs: given.logs ?? new CloudWatchLogsClient({}),
  };
}

async function stackOutput(clients: RemoteClients, stackName: string): Promise<RemoteRestoreOutput> {
  let outputs;
  try {
    outputs = (await clients.cloudformation.send(new DescribeStacksCommand({ StackName: stackName }))).Stacks?.[0]?.Outputs ?? [];
  } catch (err) {
    throw new RemoteTaskError(`cannot read stack ${stackName}: ${(err as Error).name}: ${(err as Error).message}`, {
      cause: err,
      hint: 'Check --stack (default PgS3Backup; PG_S3_BACKUP_STACK), AWS_REGION and your credentials (the operator policy allows cloudformation:DescribeStacks on the stack).',
    });
  }
  const text = outputs.find((o) => o.OutputKey === 'RemoteRestore')?.OutputValue;
  if (!text) {
    throw new RemoteTaskError(`stack ${stackName} has no output RemoteRestore`, {
      hint: 'restore --remote runs on the Fargate runner: deploy this version with the context key runner=fargate or auto (and vpcId, subnetIds).',
    });
  }
  const parsed = RemoteRestoreOutput.safeParse(JSON.parse(text));
  if (!parsed.success) throw new RemoteTaskError(`stack ${stackName}'s output RemoteRestore is not what this CLI expects`, { hint: 'Deploy the stack with this version of pg-s3-backup.' });
  return parsed.data;
}

/**
 * The task's lines, shown as they arrive: its events are the same CLI events this command would
 * write (JSON lines: the task's stdout is no terminal); its result and error are kept for the end.
 */
class TaskRelay {
  result: Record<string, unknown> | undefined;
  error: { name: string; stage?: string; message: string; hint?: string } | undefined;
  readonly otherLines: string[] = [];

  constructor(private readonly ctx: CliContext) {}

  line(text: string): void {
    let e: ProgressEvent | undefined;
    if (text.startsWith('{')) {
      try {
        const parsed = JSON.parse(text) as unknown;
        if (parsed && typeof parsed === 'object' && typeof (parsed as ProgressEvent).event === 'string') e = parsed as ProgressEvent;
      } catch {
        // Not an event line.
      }
    }
    if (!e) {
      this.otherLines.push(text);
      if (this.otherLines.length > 50) this.otherLines.shift();
      return;
    }
    const { event, time: _time, ...rest } = e;
    // A failed command's last line is a result too ({ok: false, exitCode, error}): the error line before it says what failed.
    if (event === 'result') {
      if (rest.ok !== false) this.result = rest;
    }
    else if (event === 'error') {
      const r = rest as { error?: string; stage?: string; message?: string; hint?: string };
      this.error = { name: r.error ?? 'Error', message: r.message ?? 'unknown error', ...(r.stage ? { stage: r.stage } : {}), ...(r.hint ? { hint: r.hint } : {}) };
    } else if (event === 'warning') this.ctx.out.warn(String(rest.message));
    // The task's engine events read on this terminal as they would have there.
    else this.ctx.out.progress(e, event in ENGINE_EVENTS ? humanText(e as unknown as EngineEvent) : {});
  }
}
