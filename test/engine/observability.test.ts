import { describe, expect, it } from 'vitest';
import { metricDatabaseName, redact, throughput } from '../../engine/observability.ts';

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
