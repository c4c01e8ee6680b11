/**
 * The drill function's entry point, kept thin: load the configuration once per container, run the
 * engine's drill (engine/restore/drill.ts) for DATABASES (or every database in the bucket), shape
 * the result. The drill has already written each report and alerted; a failed drill throws so
 * that Lambda's Errors metric and the alarms see it. A database skipped for its size does not
 * throw (its warning alert says what to do); its missing DrillSucceeded keeps the dead-man alarm
 * honest.
 */
import type { Context } from 'aws-lambda';
import { z } from 'zod';
import { loadConfig, type Config, type Env } from '../engine/config.ts';
import { createDeps, type Deps } from '../engine/deps.ts';
import { lambdaDeps, type LambdaOverrides } from './powertools.ts';
import { PgS3BackupError, RequestError } from '../engine/errors.ts';
import { fail, report, type CheckReport } from '../engine/check/check.ts';
import { checkDrill } from '../engine/restore/drill-check.ts';
import { runDrillFromConfig } from '../engine/restore/drill-run.ts';
import type { DrillRunSettings } from '../engine/restore/drill.ts';

export interface DrillHandlerResult {
  /** `incomplete`: the time budget ran out before every database was reached (alerted; the next run starts with them). */
  readonly status: 'ok' | 'skipped' | 'incomplete';
  readonly databases: readonly { database: string; key: string | undefined; status: string; failingTables: readonly string[] }[];
  readonly notReached: readonly string[];
}

const DrillEvent = z.strictObject({ databases: z.array(z.string().min(1)).min(1).optional(), check: z.literal(true).optional() });

/** What `{"check": true}` returns (engine/restore/drill-check.ts): the checks, nothing drilled. */
export interface DrillCheckResult extends CheckReport {
  readonly status: 'checked';
}

/**
 * Scheduled events (an EventBridge envelope, or nothing) drill as configured; `{"databases": [...]}`
 * narrows it; `{"check": true}` (pg-s3-backup doctor) starts and stops the throwaway server in the
 * bucket's locales instead of drilling.
 */
export function parseDrillEvent(event: unknown): { databases?: string[]; check?: true } {
  if (event === null || typeof event !== 'object' || Array.isArray(event)) return {};
  const e = event as Record<string, unknown>;
  if (Object.keys(e).length === 0 || 'detail-type' in e || e.source === 'aws.scheduler' || e.source === 'aws.events') return {};
  const parsed = DrillEvent.safeParse(e);
  if (!parsed.success) throw new RequestError(`invalid drill event: ${parsed.error.issues.map((i) => i.message).join('; ')}`, { hint: 'Send {"databases"?: string[]} or {"check": true}.' });
  return { ...(parsed.data.databases ? { databases: parsed.data.databases } : {}), ...(parsed.data.check ? { check: true as const } : {}) };
}

export class DrillFailedError extends PgS3BackupError {
  constructor(message: string) {
    super('drill', message, { hint: 'Read the alert and the <dump key>.verify.json report (docs/runbooks/database-restore.md, "When the drill fails").' });
    this.name = 'DrillFailedError';
  }
}

type DrillContext = Pick<Context, 'awsRequestId'> & Partial<Pick<Context, 'getRemainingTimeInMillis'>>;

export interface DrillHandler {
  (event: { readonly check: true; readonly databases?: readonly string[] }, context: DrillContext): Promise<DrillCheckResult>;
  (event: unknown, context: DrillContext): Promise<DrillHandlerResult>;
}

export function createDrillHandler(env: Env = process.env, overrides: LambdaOverrides = {}, settings: Omit<DrillRunSettings, 'serverLayerRoot' | 'remainingTimeMs'> = {}): DrillHandler {
  let loaded: { config: Config; deps: Deps } | undefined;
  return (async (event: unknown, context: DrillContext): Promise<DrillHandlerResult | DrillCheckResult> => {
    const request = parseDrillEvent(event);
    if (!loaded) {
      try {
        // The drill reads the bucket only: no database credentials.
        const config = loadConfig(env, { requireCredentials: false });
        loaded = { config, deps: createDeps(config, lambdaDeps(overrides)) };
      } catch (err) {
        // Check mode answers with its findings, even about the configuration.
        if (request.check) return { status: 'checked', ...report([fail('configuration', (err as Error).message, (err as { hint?: string }).hint ?? 'Fix the drill function\'s environment variables (docs/configuration.md) and redeploy.')]) };
        throw err;
      }
    }
    const config = request.databases ? { ...loaded.config, databases: request.databases } : loaded.config;
    if (request.check) {
      return { status: 'checked', ...(await checkDrill(config, loaded.deps, { layerRoot: config.serverLayerRoot, parentDir: settings.tempDir })) };
    }
    const remaining = context.getRemainingTimeInMillis?.bind(context);
    const { reports, notReached } = await runDrillFromConfig(config, loaded.deps, { ...settings, serverLayerRoot: config.serverLayerRoot, ...(remaining ? { remainingTimeMs: remaining } : {}) });
    const databases = reports.map((r) => ({ database: r.database, key: r.key, status: r.status, failingTables: r.failingTables }));
    const failed = reports.filter((r) => r.status === 'failed');
    if (failed.length > 0) {
      throw new DrillFailedError(`restore drill failed for ${failed.map((r) => `${r.database} (${r.failingTables.length ? r.failingTables.join('; ') : r.problems.map((p) => p.message).join('; ')})`).join(', ')}`);
    }
    return { status: notReached.length > 0 ? 'incomplete' : reports.some((r) => r.status === 'skipped') ? 'skipped' : 'ok', databases, notReached };
  }) as DrillHandler;
}

export const handler = createDrillHandler();
