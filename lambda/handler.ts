/**
 * The Lambda entry point, kept thin: parse the event, load the configuration once per container,
 * call the core, shape the result. On failure the core has already alerted; the handler throws
 * so that Lambda's Errors metric, async retries and the failure destination see it.
 */
import type { Context } from 'aws-lambda';
import { z } from 'zod';
import { ALL_DATABASES, runBackup, type BackupRequest } from '../engine/backup/backup.ts';
import { describeFailure, planRun, summarizeRun, type FanOutOutcome, type FanOutSummary, type PlannedBackup } from '../engine/backup/fanout.ts';
import { alertChannels, loadConfig, type Config, type Env } from '../engine/config.ts';
import { createAlerts } from '../engine/alerts/alerts.ts';
import { awsClientOptions, createDeps, DEFAULT_AWS_TIMEOUTS, type Deps, type DepsOverrides } from '../engine/deps.ts';
import { BackupRunError, PgS3BackupError, RequestError } from '../engine/errors.ts';
import { formatFailure } from '../engine/notify.ts';
import type { EventSink } from '../engine/events.ts';
import { createLogger, lambdaDeps, noMetrics, powertoolsEvents, type LambdaOverrides, type Log } from './powertools.ts';
import { SNSClient } from '@aws-sdk/client-sns';
import { fail, report, type CheckReport } from '../engine/check/check.ts';
import { runChecks, type CheckRequest } from '../engine/check/run-checks.ts';

export interface HandlerResult {
  readonly status: 'succeeded';
  readonly backups: readonly { database: string; key: string; bytes: number; sha256: string; durationMs: number }[];
  readonly pruned: readonly string[];
}

/** What `{"check": true}` returns: the checks, no backup taken. */
export interface HandlerCheckResult extends CheckReport {
  readonly status: 'checked';
}

const CheckEvent = z.strictObject({
  check: z.literal(true),
  databases: z.array(z.string().min(1, 'database names must not be empty')).min(1).optional(),
});

/** `{"check": true}` (optionally with `databases`): check mode. Anything else with `check` is an invalid event. */
export function parseCheckEvent(event: unknown): CheckRequest | undefined {
  if (event === null || typeof event !== 'object' || Array.isArray(event) || !('check' in event)) return undefined;
  const parsed = CheckEvent.safeParse(event);
  if (!parsed.success) {
    throw new RequestError(`invalid check event: ${parsed.error.issues.map((i) => (i.code === 'unrecognized_keys' ? `unknown field(s) ${i.keys.map((k) => JSON.stringify(k)).join(', ')}` : `${i.path.join('.') || 'event'}: ${i.message}`)).join('; ')}`, {
      hint: 'Send {"check": true, "databases"?: string[]}.',
    });
  }
  return { databases: parsed.data.databases };
}

export interface PlanResult {
  readonly backups: readonly PlannedBackup[];
}

const OnDemandEvent = z.strictObject({
  databases: z.array(z.string().min(1, 'database names must not be empty')).min(1).optional(),
  reason: z.string().max(1000).optional(),
  dryRun: z.boolean().optional(),
});

/**
 * Scheduled invocations may carry nothing, an EventBridge envelope or any input the schedule
 * was given: they run as configured. An object with any of the on-demand fields is an on-demand
 * request and is validated strictly (an unknown field or a wrong type is an error naming it).
 */
export function parseEvent(event: unknown): BackupRequest {
  if (event === null || event === undefined || typeof event !== 'object' || Array.isArray(event)) return { reason: 'scheduled' };
  const e = event as Record<string, unknown>;
  const isEnvelope = 'detail-type' in e || e.source === 'aws.events' || e.source === 'aws.scheduler';
  const keys = Object.keys(e);
  if (keys.length === 0 || isEnvelope) return { reason: 'scheduled' };
  const parsed = OnDemandEvent.safeParse(e);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) =>
      i.code === 'unrecognized_keys' ? `unknown field(s) ${i.keys.map((k) => JSON.stringify(k)).join(', ')}` : `${i.path.join('.') || 'event'}: ${i.message}`,
    );
    throw new RequestError(`invalid event: ${problems.join('; ')}`, {
      hint: 'Send {"databases"?: string[], "reason"?: string, "dryRun"?: boolean}.',
    });
  }
  return { databases: parsed.data.databases, reason: parsed.data.reason ?? 'on-demand', dryRun: parsed.data.dryRun };
}

type InvocationContext = Pick<Context, 'awsRequestId' | 'getRemainingTimeInMillis'>;

/** A backup event gets the backup's result, `{"check": true}` the checks. */
export interface Handler {
  (event: { readonly check: true; readonly databases?: readonly string[] }, context: InvocationContext): Promise<HandlerCheckResult>;
  (event: unknown, context: InvocationContext): Promise<HandlerResult>;
}

/** The fan-out's first and last steps, and a failure's description (the state machine sends them; see infra/constructs/fan-out.ts). */
const FanOutEvent = z.discriminatedUnion('action', [
  z.strictObject({ action: z.literal('plan') }),
  z.strictObject({
    action: z.literal('failure'),
    database: z.string(),
    runner: z.enum(['lambda', 'fargate']),
    caught: z.object({ Error: z.string().optional(), Cause: z.string().optional() }),
  }),
  z.strictObject({
    action: z.literal('summarize'),
    results: z.array(
      z.object({
        database: z.string(),
        runner: z.enum(['lambda', 'fargate']),
        ok: z.boolean(),
        error: z.string().optional(),
        cause: z.string().optional(),
      }),
    ),
  }),
]);
type FanOutRequest = z.infer<typeof FanOutEvent>;

function fanOutRequest(event: unknown): FanOutRequest | undefined {
  if (event === null || typeof event !== 'object' || !('action' in event)) return undefined;
  const parsed = FanOutEvent.safeParse(event);
  if (!parsed.success) throw new RequestError(`invalid event: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'event'}: ${i.message}`).join('; ')}`, { hint: 'The fan-out sends {"action":"plan"}, {"action":"failure","database","runner","caught"} and {"action":"summarize","results":[…]}.' });
  return parsed.data;
}

type Loaded = { readonly config: Config; readonly deps: Deps };

/**
 * The configuration and the clients, built once per container on first use and shared by every
 * kind of event (a failure is not kept: the next invocation tries again).
 */
function loader(env: Env, overrides: DepsOverrides): () => Loaded {
  let loaded: Loaded | undefined;
  return () => {
    if (!loaded) {
      const config = loadConfig(env);
      loaded = { config, deps: createDeps(config, overrides) };
    }
    return loaded;
  };
}

/** Builds a handler; `env` and `overrides` let tests run the real handler against test services. */
export function createHandler(env: Env = process.env, overrides: LambdaOverrides = {}, load: () => Loaded = loader(env, lambdaDeps(overrides))): Handler {
  async function handler(event: unknown, context: InvocationContext): Promise<HandlerResult | HandlerCheckResult> {
    // The handler's own log lines (a bad event, a broken configuration); the engine reports through deps.events.
    const log = overrides.log ?? createLogger();
    let check: CheckRequest | undefined;
    try {
      check = parseCheckEvent(event);
    } catch (err) {
      log.error('invalid event', { stage: 'usage', error: (err as Error).message });
      throw err;
    }
    if (check) {
      // Check mode answers with its findings, even about the configuration; it alerts nobody.
      let loaded: Loaded;
      try {
        loaded = load();
      } catch (err) {
        return { status: 'checked', ...report([fail('configuration', (err as Error).message, (err as { hint?: string }).hint ?? 'Fix the function\'s environment variables (docs/configuration.md) and redeploy.')]) };
      }
      const result = await runChecks(check, loaded.config, loaded.deps, { source: `function ${context.awsRequestId}` });
      log.info('check finished', { stage: 'config', ok: result.ok, failed: result.checks.filter((c) => !c.ok).map((c) => c.name) });
      return { status: 'checked', ...result };
    }
    let loaded: Loaded;
    try {
      loaded = load();
    } catch (err) {
      await alertConfigError(err, env, context.awsRequestId, overrides.sns, log, overrides.events ?? powertoolsEvents(log, noMetrics));
      throw err;
    }
    const { config, deps } = loaded;
    let request: BackupRequest;
    try {
      request = parseEvent(event);
    } catch (err) {
      log.error('invalid event', { stage: 'usage', error: (err as Error).message });
      throw err;
    }
    const result = await runBackup(request, config, deps, {
      requestId: context.awsRequestId,
      remainingTimeMs: () => context.getRemainingTimeInMillis(),
    });
    if (result.status === 'failed') throw new BackupRunError(result.failures);
    return { status: 'succeeded', backups: result.backups, pruned: result.pruned };
  }
  return handler as Handler;
}

/** A broken configuration still alerts, if ALERT_TOPIC_ARN itself is usable. */
async function alertConfigError(err: unknown, env: Env, requestId: string, sns: SNSClient | undefined, log: Log, events: EventSink): Promise<void> {
  const channels = alertChannels(env);
  log.error('configuration error', { stage: 'config', error: (err as Error).message });
  if (!channels.alertTopicArn || !(err instanceof PgS3BackupError)) return;
  const now = new Date();
  const message = formatFailure({ database: env.DATABASES?.trim() || ALL_DATABASES, stage: 'config', error: err, requestId, startedAt: now, failedAt: now, redact: (t) => t });
  // The configuration is broken: each alert setting that parses on its own is used, the documented defaults bound the rest.
  await createAlerts(channels, { sns: sns ?? new SNSClient(awsClientOptions(DEFAULT_AWS_TIMEOUTS)), events }).send({ kind: 'run failed', message });
}

/**
 * The function's entry point: the fan-out's plan and summary steps (`{"action": …}`), else a
 * backup. One function serves both so that the steps share the backup's network, secret and
 * bucket access without a second role.
 */
export function createEntry(env: Env = process.env, overrides: LambdaOverrides = {}) {
  // One configuration and one set of clients for the backups, the checks and the fan-out's steps.
  const load = loader(env, lambdaDeps(overrides));
  const backup = createHandler(env, overrides, load);
  return async function entry(event: unknown, context: InvocationContext): Promise<HandlerResult | HandlerCheckResult | PlanResult | FanOutOutcome | FanOutSummary> {
    const fanOut = fanOutRequest(event);
    if (!fanOut) return backup(event, context);
    // Pure: needs neither the configuration nor a client (and so works with a broken one).
    if (fanOut.action === 'failure') return describeFailure(fanOut.database, fanOut.runner, fanOut.caught);
    const { config, deps } = load();
    return fanOut.action === 'plan' ? planRun(config, deps) : summarizeRun(fanOut.results, config, deps);
  };
}

export const handler = createEntry();
