import { describe, expect, it, vi } from 'vitest';
import { createMetrics, METRIC_NAMES, METRIC_NAMESPACE, metricDatabaseName, redact, throughput } from '../../engine/observability.ts';

describe('metrics helpers', () => {
  it('uses the database name as dimension when it is printable ASCII, the key encoding otherwise', () => {
    expect(metricDatabaseName('app')).toBe('app');
    expect(metricDatabaseName(`it's "quoted"`)).toBe(`it's "quoted"`);
    expect(metricDatabaseName('données')).toBe('donn%C3%A9es');
  });
  it('computes throughput in bytes per second', () => {
    expect(throughput(10_000, 2000)).toBe(5000);
    expect(throughput(10, 0)).toBe(10);
  });
});

describe('redact', () => {
  it('hides the password of any URL, registered or not, and leaves URLs without one alone', () => {
    expect(redact("error: unknown option '--scratch-url=postgresql://admin:pw%40x@h:5432/db'", [])).toBe("error: unknown option '--scratch-url=postgresql://admin:***@h:5432/db'");
    expect(redact('postgres://u:raw@at@h/db and http://user@host/x', [])).toBe('postgres://u:***@h/db and http://user@host/x');
    expect(redact('secret s3cr3t here', ['s3cr3t'])).toBe('secret *** here');
  });
});

describe('the drill\'s EMF metrics', () => {
  it('are one document per database with the Database dimension only: DrillSucceeded, DrillFailed and DrillDurationMs (the dashboard\'s drill duration)', () => {
    const writes: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      writes.push(String(chunk));
      return true;
    });
    try {
      createMetrics().drillFinished!({ database: 'app', succeeded: false, failed: true, durationMs: 4200 });
    } finally {
      spy.mockRestore();
    }
    const emf = writes.join('').split('\n').filter((l) => l.includes('_aws')).map((l) => JSON.parse(l) as Record<string, unknown> & { _aws: { CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string; Unit: string }[] }[] } });
    expect(emf).toHaveLength(1);
    expect(emf[0]!._aws.CloudWatchMetrics[0]).toMatchObject({ Namespace: METRIC_NAMESPACE, Dimensions: [['Database']] });
    expect(emf[0]!._aws.CloudWatchMetrics[0]!.Metrics).toEqual(expect.arrayContaining([{ Name: METRIC_NAMES.drillDurationMs, Unit: 'Milliseconds' }]));
    expect(emf[0]).toMatchObject({ Database: 'app', [METRIC_NAMES.drillSucceeded]: 0, [METRIC_NAMES.drillFailed]: 1, DrillDurationMs: 4200 });
  });
});
