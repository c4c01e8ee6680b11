/**
 * The Lambda's presentation of the engine: Powertools logs (JSON lines) and metrics (EMF documents,
 * which CloudWatch extracts from a Lambda's log stream only), and the adapter that turns the
 * engine's events (engine/events.ts) into them. The engine knows none of it: a front door passes
 * its event sink to createDeps.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { DepsOverrides } from '../engine/deps.ts';
import { ENGINE_EVENTS, EVENT_MESSAGES, type EventSink } from '../engine/events.ts';
import { METRIC_DIMENSION, METRIC_NAMES, METRIC_NAMESPACE, metricDatabaseName, SERVICE_NAME, throughput, type BackupMetrics, type DrillMetrics } from '../engine/observability.ts';

export type LogAttributes = Record<string, unknown>;

export interface Log {
  debug(message: string, attributes?: LogAttributes): void;
  info(message: string, attributes?: LogAttributes): void;
  warn(message: string, attributes?: LogAttributes): void;
  error(message: string, attributes?: LogAttributes): void;
}

export function createLogger(options: { readonly level?: string } = {}): Log {
  const logger = new Logger({ serviceName: SERVICE_NAME, logLevel: (options.level ?? process.env.LOG_LEVEL ?? 'INFO') as 'INFO' });
  return {
    debug: (m, a) => logger.debug(m, a ?? {}),
    info: (m, a) => logger.info(m, a ?? {}),
    warn: (m, a) => logger.warn(m, a ?? {}),
    error: (m, a) => logger.error(m, a ?? {}),
  };
}

export const silentLog: Log = { debug() {}, info() {}, warn() {}, error() {} };

export interface MetricsSink {
  backupFinished(m: BackupMetrics): void;
  /** DrillSucceeded / DrillFailed per database (the drill function; issue 13). */
  drillFinished?(m: DrillMetrics): void;
}

/**
 * One EMF document per database, with `Database` as the only dimension: Powertools adds a
 * `service` default dimension, which would make the metrics' identity differ from the alarms'.
 */
export function createMetrics(): MetricsSink {
  const metrics = new Metrics({ namespace: METRIC_NAMESPACE, serviceName: SERVICE_NAME });
  metrics.clearDefaultDimensions();
  return {
    backupFinished(m) {
      metrics.addDimension(METRIC_DIMENSION, metricDatabaseName(m.database));
      metrics.addMetric(METRIC_NAMES.succeeded, MetricUnit.Count, m.succeeded ? 1 : 0);
      metrics.addMetric(METRIC_NAMES.bytes, MetricUnit.Bytes, m.bytes);
      metrics.addMetric(METRIC_NAMES.durationMs, MetricUnit.Milliseconds, m.durationMs);
      if (m.succeeded) {
        metrics.addMetric(METRIC_NAMES.throughput, MetricUnit.BytesPerSecond, throughput(m.bytes, m.durationMs));
      }
      metrics.publishStoredMetrics();
    },
    drillFinished(m) {
      metrics.addDimension(METRIC_DIMENSION, metricDatabaseName(m.database));
      metrics.addMetric(METRIC_NAMES.drillSucceeded, MetricUnit.Count, m.succeeded ? 1 : 0);
      metrics.addMetric(METRIC_NAMES.drillFailed, MetricUnit.Count, m.failed ? 1 : 0);
      metrics.addMetric(METRIC_NAMES.drillDurationMs, MetricUnit.Milliseconds, m.durationMs);
      metrics.publishStoredMetrics();
    },
  };
}

export const noMetrics: MetricsSink = { backupFinished() {} };

/**
 * The Lambda's adapter of the engine's events (engine/events.ts): each is one Powertools log line
 * at its level, its message the event's wording (EVENT_MESSAGES: free to change, no program reads it),
 * its fields the attributes; `backup measured` and `drill finished` also make the metrics the
 * alarms watch. Moving progress (a dump's bytes per chunk, a download) is not logged.
 */
export function powertoolsEvents(log: Log, metrics: MetricsSink): EventSink {
  return (e) => {
    const { event, ...attributes } = e;
    if (e.event === 'backup.measured') {
      metrics.backupFinished({ database: e.database, succeeded: e.succeeded, bytes: e.bytes, durationMs: e.durationMs });
      return;
    }
    if (e.event === 'backup.upload.notice' || e.event === 'store.probe') {
      // The notice's own words are the log line, as they always were.
      const { event: _event, message, ...rest } = e;
      log[ENGINE_EVENTS[e.event]](message, rest);
      return;
    }
    if (e.event === 'drill.finished') metrics.drillFinished?.({ database: e.database, succeeded: e.status === 'ok', failed: e.status === 'failed', durationMs: e.durationMs });
    const kind = ENGINE_EVENTS[event];
    if (kind === 'progress' || kind === 'metric') return;
    // The wording, not the identifier: a log search for "backup failed" keeps working whatever the tag.
    log[kind](EVENT_MESSAGES[event], attributes);
  };
}

/** What a Lambda handler's caller may replace: the deps, or just the Powertools outputs (tests capture them). */
export type LambdaOverrides = Partial<DepsOverrides> & { readonly log?: Log | undefined; readonly metrics?: MetricsSink | undefined };

/** The deps' overrides of a Lambda handler: its events go to Powertools unless the caller has its own sink. */
export function lambdaDeps(overrides: LambdaOverrides): DepsOverrides {
  const { log, metrics, events, ...rest } = overrides;
  return { ...rest, events: events ?? powertoolsEvents(log ?? createLogger(), metrics ?? createMetrics()) };
}
