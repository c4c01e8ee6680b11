import { describe, expect, it } from 'vitest';
import { alertChannels, loadConfig } from '../../engine/config.ts';
import { heartbeatTarget } from '../../engine/heartbeat.ts';

describe('heartbeat settings', () => {
  it('pings <url> on success and <url>/fail on failure, one trailing slash tolerated', () => {
    expect(heartbeatTarget('https://hc-ping.com/abc', 'success')).toBe('https://hc-ping.com/abc');
    expect(heartbeatTarget('https://hc-ping.com/abc/', 'fail')).toBe('https://hc-ping.com/abc/fail');
  });

  it('HEARTBEAT_URL must be an http(s) URL without query string, and is never echoed', () => {
    const base = { BACKUP_BUCKET: 'my-bucket', DATABASE_URL: 'postgresql://u@h/db' };
    expect(loadConfig({ ...base, HEARTBEAT_URL: 'https://hc-ping.com/abc' })).toMatchObject({ heartbeatUrl: 'https://hc-ping.com/abc', heartbeatTimeoutMs: 10_000 });
    expect(() => loadConfig({ ...base, HEARTBEAT_URL: 'ftp://secret-uuid' })).toThrow(/HEARTBEAT_URL must be an http\(s\) URL/);
    try {
      loadConfig({ ...base, HEARTBEAT_URL: 'ftp://secret-uuid' });
    } catch (err) {
      expect((err as Error).message).not.toContain('secret-uuid');
    }
    expect(() => loadConfig({ ...base, HEARTBEAT_TIMEOUT_SECONDS: '0' })).toThrow(/HEARTBEAT_TIMEOUT_SECONDS must be a whole number from 1 to 120/);
  });

  it('alert channels are usable on their own when the rest of the configuration is broken', () => {
    const arn = 'arn:aws:sns:eu-west-3:123456789012:alerts';
    expect(alertChannels({ ALERT_TOPIC_ARN: arn, HEARTBEAT_URL: 'http://127.0.0.1:9/x', RETENTION_COUNT: 'seven' })).toEqual({
      alertTopicArn: arn,
      heartbeatUrl: 'http://127.0.0.1:9/x',
      heartbeatTimeoutMs: 10_000,
      alertTimeoutMs: 10_000,
    });
    expect(alertChannels({ ALERT_TOPIC_ARN: 'not-an-arn' }).alertTopicArn).toBeUndefined();
  });
});
