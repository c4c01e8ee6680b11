import { describe, expect, it } from 'vitest';
import { RequestError } from '../../engine/errors.ts';
import { parseEvent } from '../../lambda/handler.ts';

describe('parseEvent', () => {
  it('treats no payload, an empty object or an EventBridge envelope as scheduled', () => {
    for (const e of [undefined, null, {}, 'tick', { 'detail-type': 'Scheduled Event', source: 'aws.events', detail: {} }, { source: 'aws.scheduler' }]) {
      expect(parseEvent(e)).toEqual({ reason: 'scheduled' });
    }
  });
  it('accepts an on-demand request', () => {
    expect(parseEvent({ databases: ['app', 'my db'], reason: 'before migration', dryRun: true })).toEqual({ databases: ['app', 'my db'], reason: 'before migration', dryRun: true });
    expect(parseEvent({ dryRun: false })).toEqual({ databases: undefined, reason: 'on-demand', dryRun: false });
  });
  it.each([
    [{ databases: 'app' }, /databases/],
    [{ databases: [] }, /databases/],
    [{ databases: [''] }, /databases\.0/],
    [{ dryRun: 'yes' }, /dryRun/],
    [{ reason: 1 }, /reason/],
    [{ database: ['app'] }, /unknown field\(s\) "database"/],
  ])('rejects %j naming the field', (event, pattern) => {
    expect(() => parseEvent(event)).toThrow(RequestError);
    expect(() => parseEvent(event)).toThrow(pattern);
  });
});
