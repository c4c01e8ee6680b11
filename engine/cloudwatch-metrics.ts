/**
 * The backup metrics off Lambda (the Fargate runner, a host that opts in): the same namespace,
 * names, units and `Database` dimension as the Lambda's EMF lines (observability.ts), sent with
 * CloudWatch PutMetricData, so one set of dead-man alarms watches every runner. In Lambda the EMF
 * lines in the function's log carry them; CloudWatch extracts EMF from Lambda's logs only, which is
 * why a task must call the API (CLOUDWATCH_METRICS, set by the Fargate runner's task definition).
 */
import { CloudWatchClient, PutMetricDataCommand, type MetricDatum } from '@aws-sdk/client-cloudwatch';
import type { Config } from './config.ts';
import { awsClientOptions, DEFAULT_AWS_TIMEOUTS, type PublishMetrics } from './deps.ts';
import type { EventSink } from './events.ts';
import { METRIC_DIMENSION, METRIC_NAMES, METRIC_NAMESPACE, metricDatabaseName, throughput, type BackupMetrics } from './observability.ts';
import { redact } from './redact.ts';

/** The metric data of one database's backup: exactly what the EMF document of the Lambda holds. */
export function backupMetricData(m: BackupMetrics, timestamp: Date): MetricDatum[] {
  const dimensions = [{ Name: METRIC_DIMENSION, Value: metricDatabaseName(m.database) }];
  const datum = (name: string, unit: MetricDatum['Unit'], value: number): MetricDatum => ({ MetricName: name, Unit: unit, Value: value, Dimensions: dimensions, Timestamp: timestamp });
  return [
    datum(METRIC_NAMES.succeeded, 'Count', m.succeeded ? 1 : 0),
    datum(METRIC_NAMES.bytes, 'Bytes', m.bytes),
    datum(METRIC_NAMES.durationMs, 'Milliseconds', m.durationMs),
    ...(m.succeeded ? [datum(METRIC_NAMES.throughput, 'Bytes/Second', throughput(m.bytes, m.durationMs))] : []),
  ];
}

/**
 * PutMetricData for each database's backup. The client's own timeouts and retries bound each call
 * (awsClientOptions); a failure is reported as an event, never as the backup's failure: the dump
 * is in S3 either way, and the missing metric raises the dead-man alarm, which says to look.
 */
export function cloudWatchMetrics(client: Pick<CloudWatchClient, 'send'>, emit: EventSink, now: () => Date = () => new Date()): PublishMetrics {
  return async (m) => {
    try {
      await client.send(new PutMetricDataCommand({ Namespace: METRIC_NAMESPACE, MetricData: backupMetricData(m, now()) }));
    } catch (err) {
      emit({ event: 'metrics.not-sent', stage: 'notify', database: m.database, error: redact(`${(err as Error).name}: ${(err as Error).message}`, []) });
    }
  };
}

/** The publisher the configuration asks for: PutMetricData off Lambda with CLOUDWATCH_METRICS, else none. */
export function metricsPublisher(config: Pick<Config, 'cloudwatchMetrics' | 'inLambda'> & Partial<Pick<Config, 'aws'>>, emit: EventSink): PublishMetrics | undefined {
  if (!config.cloudwatchMetrics || config.inLambda) return undefined;
  return cloudWatchMetrics(new CloudWatchClient(awsClientOptions(config.aws ?? DEFAULT_AWS_TIMEOUTS)), emit);
}
