/**
 * What the engine measures and how the alarms know it: the CloudWatch namespace, metric names and
 * dimension, the metric records, and secret redaction. How it is shown is a front door's choice:
 * the Lambda's Powertools adapter (lambda/powertools.ts), the CLI's lines (cli/events.ts),
 * PutMetricData off Lambda (cloudwatch-metrics.ts).
 */
import { encodeDatabaseName } from './store/backup-key.ts';

export const SERVICE_NAME = 'pg-s3-backup';
/** CloudWatch namespace and metric names: the infrastructure's alarms are built on them. */
export const METRIC_NAMESPACE = 'PgS3Backup';
export const METRIC_NAMES = {
  succeeded: 'BackupSucceeded',
  bytes: 'BackupBytes',
  durationMs: 'BackupDurationMs',
  throughput: 'BackupThroughputBytesPerSecond',
  drillSucceeded: 'DrillSucceeded',
  drillFailed: 'DrillFailed',
  drillDurationMs: 'DrillDurationMs',
} as const;
export const METRIC_DIMENSION = 'Database';

export interface BackupMetrics {
  readonly database: string;
  readonly succeeded: boolean;
  readonly bytes: number;
  readonly durationMs: number;
}

export interface DrillMetrics {
  readonly database: string;
  /** The newest backup restored and every table held the manifest's count. */
  readonly succeeded: boolean;
  /** false with succeeded false: skipped (too large), which is not proven either. */
  readonly failed: boolean;
  /** The database's whole drill: download, restore, counts, report (the dashboard's drill duration). */
  readonly durationMs: number;
}

export function throughput(bytes: number, durationMs: number): number {
  return durationMs > 0 ? Math.round((bytes * 1000) / durationMs) : bytes;
}

/** CloudWatch dimension values must be printable ASCII: other names use the key encoding. */
export function metricDatabaseName(database: string): string {
  return /^[\x20-\x7e]{1,250}$/.test(database) && database.trim() !== '' ? database : encodeDatabaseName(database).slice(0, 250);
}

// Redaction lives in its own module (no Powertools), so the CLI's start-up can load it alone.
export { redact, redactUrls } from './redact.ts';

