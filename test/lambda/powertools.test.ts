import { describe, expect, it, vi } from 'vitest';
import { METRIC_NAMES, METRIC_NAMESPACE } from '../../engine/observability.ts';
import { createMetrics } from '../../lambda/powertools.ts';

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
