/**
 * One restore (or verify) run as an ECS Fargate task, followed to its end: RunTask, then
 * DescribeTasks and the task's CloudWatch log stream (GetLogEvents) polled until the task stops,
 * and the container's exit code. Every wait is bounded by one deadline: past it the task is
 * stopped (StopTask) and the outcome says so; an interrupt (Ctrl-C) stops it the same way, so a
 * restore never goes on unseen. Should this side go away (a closed laptop, a lost network), the
 * task keeps its own deadline (TASK_TIMEOUT_SECONDS in `environment`; the restore task's entry
 * enforces it too, infra/constructs/remote-restore.ts). The clients come in as deps (tests give
 * fakes that run the image).
 */
import type { CloudWatchLogsClient } from '@aws-sdk/client-cloudwatch-logs';
import { GetLogEventsCommand } from '@aws-sdk/client-cloudwatch-logs';
import type { ECSClient, Task } from '@aws-sdk/client-ecs';
import { DescribeTasksCommand, RunTaskCommand, StopTaskCommand } from '@aws-sdk/client-ecs';
import { setTimeout as sleepFor } from 'node:timers/promises';
import { RemoteTaskError } from '../errors.ts';

export interface RemoteTaskClients {
  readonly ecs: Pick<ECSClient, 'send'>;
  readonly logs: Pick<CloudWatchLogsClient, 'send'>;
}

/** Where the task runs and logs: what the stack output `RemoteRestore` holds (infra/constructs/remote-restore.ts). */
export interface RemoteTaskPlace {
  readonly cluster: string;
  readonly taskDefinition: string;
  readonly container: string;
  readonly subnets: readonly string[];
  readonly securityGroups: readonly string[];
  readonly logGroup: string;
  readonly logStreamPrefix: string;
}

/** Where and what to run. */
export interface RemoteTaskSpec extends RemoteTaskPlace {
  /** The container's command (the image's entrypoint is the CLI): settings and names only, never a credential. */
  readonly command: readonly string[];
  /** Variables added to the container's environment (ECS stores them in clear text too): settings only, never a credential. */
  readonly environment?: Readonly<Record<string, string>>;
  /** ECS's startedBy (letters, digits, `-`, `_`, `/`; 128 at most). */
  readonly startedBy: string;
}

export interface RemoteTaskOptions {
  /** The whole run's bound, from RunTask to the task's end. */
  readonly timeoutMs: number;
  /** Between two polls. @default 3000 */
  readonly pollMs?: number;
  /** After a StopTask, how long to wait for the task to report STOPPED (within the CLI's 60 s interrupt grace). @default 45000 */
  readonly stopWaitMs?: number;
  readonly now?: () => number;
  readonly signal?: AbortSignal;
  /** Each line the task wrote (stdout and stderr, as the awslogs driver keeps them), in order. */
  readonly onLine: (line: string) => void;
  /** The task's status as it changes (PROVISIONING, PENDING, RUNNING, STOPPED…). */
  readonly onStatus?: (status: { readonly taskArn: string; readonly lastStatus: string }) => void;
}

export interface RemoteTaskOutcome {
  readonly taskArn: string;
  /** The container's exit code; undefined when it never ran or was killed before it reported one. */
  readonly exitCode: number | undefined;
  readonly stopCode: string | undefined;
  readonly stoppedReason: string | undefined;
  /** Why we stopped it ourselves: the deadline, or an interrupt. */
  readonly stoppedByUs: 'timeout' | 'interrupted' | undefined;
  /** The task reached STOPPED within the waits (false: it may still be stopping). */
  readonly stopped: boolean;
}

/** The log stream the awslogs driver writes for a task: `<prefix>/<container>/<task id>`. */
export function logStreamFor(spec: Pick<RemoteTaskSpec, 'logStreamPrefix' | 'container'>, taskArn: string): string {
  return `${spec.logStreamPrefix}/${spec.container}/${taskArn.split('/').at(-1) ?? taskArn}`;
}

export const NETWORK_HINT =
  'The task\'s subnets need a route to ECR, S3, Secrets Manager and CloudWatch Logs (a NAT gateway or VPC endpoints), as the nightly Fargate runner does.';

export async function runRemoteTask(clients: RemoteTaskClients, spec: RemoteTaskSpec, options: RemoteTaskOptions): Promise<RemoteTaskOutcome> {
  const now = options.now ?? Date.now;
  const pollMs = options.pollMs ?? 3000;
  const deadline = now() + options.timeoutMs;
  const taskArn = await startTask(clients, spec);
  const logs = logReader(clients, spec.logGroup, logStreamFor(spec, taskArn), options.onLine);
  let lastStatus = '';
  let task: Task | undefined;
  let stoppedByUs: RemoteTaskOutcome['stoppedByUs'];
  let stopDeadline = Infinity;

  for (;;) {
    task = await describe(clients, spec.cluster, taskArn);
    const status = task?.lastStatus ?? 'UNKNOWN';
    if (status !== lastStatus) {
      lastStatus = status;
      options.onStatus?.({ taskArn, lastStatus: status });
    }
    await logs.read();
    if (status === 'STOPPED') break;
    if (stoppedByUs === undefined) {
      const interrupted = options.signal?.aborted === true;
      if (interrupted || now() >= deadline) {
        stoppedByUs = interrupted ? 'interrupted' : 'timeout';
        await stopTask(clients, spec.cluster, taskArn, stoppedByUs === 'timeout' ? `pg-s3-backup --remote: --timeout of ${Math.round(options.timeoutMs / 1000)} s reached` : 'pg-s3-backup --remote: interrupted by the operator');
        stopDeadline = now() + (options.stopWaitMs ?? 45_000);
      }
    } else if (now() >= stopDeadline) {
      break;
    }
    // An interrupt ends the pause at once (and stops the task on the next turn).
    await sleepFor(pollMs, undefined, stoppedByUs === undefined && options.signal ? { signal: options.signal } : {}).catch(() => {});
  }
  const stopped = task?.lastStatus === 'STOPPED';
  // CloudWatch Logs may hold the last lines back for a moment after the container ends.
  if (stopped) await logs.drain(pollMs, Math.max(now() + 4 * pollMs, Math.min(deadline, now() + 30_000)), now);
  const container = task?.containers?.find((c) => c.name === spec.container);
  return {
    taskArn,
    exitCode: container?.exitCode ?? undefined,
    stopCode: task?.stopCode,
    stoppedReason: task?.stoppedReason ?? container?.reason,
    stoppedByUs,
    stopped,
  };
}

async function startTask(clients: RemoteTaskClients, spec: RemoteTaskSpec): Promise<string> {
  let res;
  try {
    res = await clients.ecs.send(
      new RunTaskCommand({
        cluster: spec.cluster,
        taskDefinition: spec.taskDefinition,
        launchType: 'FARGATE',
        count: 1,
        startedBy: spec.startedBy,
        networkConfiguration: { awsvpcConfiguration: { subnets: [...spec.subnets], securityGroups: [...spec.securityGroups], assignPublicIp: 'DISABLED' } },
        overrides: {
          containerOverrides: [
            {
              name: spec.container,
              command: [...spec.command],
              ...(spec.environment ? { environment: Object.entries(spec.environment).map(([name, value]) => ({ name, value })) } : {}),
            },
          ],
        },
      }),
    );
  } catch (err) {
    const name = (err as { name?: string }).name ?? 'Error';
    throw new RemoteTaskError(`ECS RunTask failed: ${name}: ${(err as Error).message}`, {
      cause: err,
      hint: /AccessDenied/i.test(name)
        ? 'Attach the stack output OperatorPolicyArn (a managed policy) to your role or user.'
        : 'Check AWS_REGION and your credentials, and that the stack is deployed with the Fargate runner (runner=fargate or auto).',
    });
  }
  const taskArn = res.tasks?.[0]?.taskArn;
  if (!taskArn) {
    const reasons = (res.failures ?? []).map((f) => [f.reason, f.detail].filter(Boolean).join(': ')).join('; ') || 'no task and no failure reported';
    throw new RemoteTaskError(`ECS did not start the restore task: ${reasons}`, {
      hint: /capacity|RESOURCE/i.test(reasons)
        ? 'Fargate had no capacity in these subnets just now: run the same command again in a few minutes. Nothing was restored.'
        : 'Nothing was restored. Check the cluster and task definition in the stack output RemoteRestore (deploy the stack again if they are gone).',
    });
  }
  return taskArn;
}

async function describe(clients: RemoteTaskClients, cluster: string, taskArn: string): Promise<Task | undefined> {
  try {
    const res = await clients.ecs.send(new DescribeTasksCommand({ cluster, tasks: [taskArn] }));
    return res.tasks?.[0];
  } catch (err) {
    throw new RemoteTaskError(`cannot follow task ${taskArn}: ECS DescribeTasks failed: ${(err as Error).name}: ${(err as Error).message}`, {
      cause: err,
      hint: `The task goes on without this machine until it ends or reaches its deadline (--timeout, which it keeps itself): follow it in its log group, or stop it with aws ecs stop-task --cluster ${cluster} --task ${taskArn}; check ecs:DescribeTasks in the operator policy.`,
    });
  }
}

async function stopTask(clients: RemoteTaskClients, cluster: string, taskArn: string, reason: string): Promise<void> {
  try {
    await clients.ecs.send(new StopTaskCommand({ cluster, task: taskArn, reason }));
  } catch (err) {
    throw new RemoteTaskError(`could not stop task ${taskArn}: ${(err as Error).name}: ${(err as Error).message}`, {
      cause: err,
      hint: `The task is still running: stop it with aws ecs stop-task --cluster ${cluster} --task ${taskArn}.`,
    });
  }
}

/** The task's log stream, read forward from its start; a stream not created yet is simply empty. */
function logReader(clients: RemoteTaskClients, logGroupName: string, logStreamName: string, onLine: (line: string) => void) {
  let nextToken: string | undefined;
  const read = async (): Promise<number> => {
    let count = 0;
    // GetLogEvents returns at most 1 MB a call: page until the token stops moving.
    for (let page = 0; page < 100; page++) {
      let res;
      try {
        res = await clients.logs.send(new GetLogEventsCommand({ logGroupName, logStreamName, startFromHead: true, ...(nextToken ? { nextToken } : {}) }));
      } catch (err) {
        if ((err as { name?: string }).name === 'ResourceNotFoundException') return count;
        throw new RemoteTaskError(`cannot read the task's log stream ${logGroupName}/${logStreamName}: ${(err as Error).name}: ${(err as Error).message}`, {
          cause: err,
          hint: `Check logs:GetLogEvents in the operator policy; the task goes on (aws ecs describe-tasks shows it, the log group ${logGroupName} its output).`,
        });
      }
      for (const e of res.events ?? []) if (e.message !== undefined) onLine(e.message);
      count += res.events?.length ?? 0;
      const moved = res.nextForwardToken !== undefined && res.nextForwardToken !== nextToken;
      if (res.nextForwardToken) nextToken = res.nextForwardToken;
      if (!moved || (res.events?.length ?? 0) === 0) return count;
    }
    return count;
  };
  return {
    read,
    /** Reads until two polls in a row bring nothing new, or `until`. */
    async drain(pollMs: number, until: number, now: () => number): Promise<void> {
      let quiet = 0;
      while (quiet < 2 && now() < until) {
        quiet = (await read()) === 0 ? quiet + 1 : 0;
        if (quiet < 2) await sleepFor(pollMs);
      }
    },
  };
}

