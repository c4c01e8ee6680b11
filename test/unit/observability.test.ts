import { describe, expect, it } from 'vitest';
import { metricDatabaseName, throughput } from '../../engine/observability.ts';

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
