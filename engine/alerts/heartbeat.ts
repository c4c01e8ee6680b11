/**
 * The heartbeat channel (HEARTBEAT_URL, a dead-man's switch such as healthchecks.io): a run's
 * outcome (`<url>` or `<url>/fail`), and a run that failed as a whole (`<url>/fail`). A single
 * database's failure is not a ping: the run's end says it once.
 */
import type { EventSink } from '../events.ts';
import { pingHeartbeat } from '../heartbeat.ts';
import type { AlertChannel } from './channel.ts';

export function heartbeatChannel(url: string, timeoutMs: number, events: EventSink, doFetch?: typeof fetch): AlertChannel {
  return {
    name: 'heartbeat',
    timeout: { ms: timeoutMs, setting: 'HEARTBEAT_TIMEOUT_SECONDS' },
    carries: (alert) => alert.kind === 'run ended' || alert.kind === 'run failed',
    send(alert, bound) {
      const [outcome, body] =
        alert.kind === 'run ended'
          ? ([alert.status === 'succeeded' ? 'success' : 'fail', alert.summary] as const)
          : (['fail', `${alert.message.subject}\n\n${alert.message.body}`] as const);
      return pingHeartbeat(url, outcome, { timeoutMs: bound.timeoutMs, signal: bound.signal, events, body, ...(doFetch ? { fetch: doFetch } : {}) });
    },
  };
}
