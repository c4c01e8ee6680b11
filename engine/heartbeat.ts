/**
 * The dead-man's switch of the CLI and host mode (HEARTBEAT_URL), in the style of healthchecks.io:
 * a POST to `<url>` when a run succeeded, to `<url>/fail` when it failed. The service alerts when
 * no success arrives in time, which catches what no alert of ours can: a host that is down, a cron
 * line removed, a run that never started. A ping never throws and never holds a run longer than
 * its timeout; its URL is a capability (whoever has it can ping), so only its origin is logged.
 */
import type { EventSink } from './events.ts';

export type HeartbeatOutcome = 'success' | 'fail';

/** `<url>` for a success, `<url>/fail` for a failure (one trailing slash of the base tolerated). */
export function heartbeatTarget(base: string, outcome: HeartbeatOutcome): string {
  const b = base.replace(/\/+$/, '');
  return outcome === 'success' ? b : `${b}/fail`;
}

/** healthchecks.io keeps the first 100 kB of a ping's body; a summary needs far less. */
const MAX_BODY = 10_000;

export interface PingOptions {
  readonly timeoutMs: number;
  /** The deadline, when the caller holds one (engine/alerts' composition); else `timeoutMs` from now. */
  readonly signal?: AbortSignal | undefined;
  readonly events: EventSink;
  /** A short text the service shows beside the ping (a run summary: no secrets). */
  readonly body?: string | undefined;
  readonly fetch?: typeof fetch;
}

/** Pings; true when the service answered 2xx within the timeout. */
export async function pingHeartbeat(base: string, outcome: HeartbeatOutcome, options: PingOptions): Promise<boolean> {
  const url = heartbeatTarget(base, outcome);
  const origin = safeOrigin(url);
  const doFetch = options.fetch ?? fetch;
  try {
    const res = await doFetch(url, {
      method: 'POST',
      body: (options.body ?? '').slice(0, MAX_BODY),
      headers: { 'content-type': 'text/plain; charset=utf-8' },
      signal: options.signal ?? AbortSignal.timeout(options.timeoutMs),
    });
    // The body is not needed; reading it frees the connection.
    await res.arrayBuffer().catch(() => undefined);
    if (!res.ok) {
      options.events({ event: 'heartbeat.refused', stage: 'notify', outcome, heartbeat: origin, status: res.status });
      return false;
    }
    options.events({ event: 'heartbeat.sent', stage: 'notify', outcome, heartbeat: origin });
    return true;
  } catch (err) {
    const e = err as Error;
    const why = e.name === 'TimeoutError' ? `no answer within ${Math.round(options.timeoutMs / 1000)} s (HEARTBEAT_TIMEOUT_SECONDS)` : `${e.name}: ${e.message}`;
    options.events({ event: 'heartbeat.failed', stage: 'notify', outcome, heartbeat: origin, error: why });
    return false;
  }
}

function safeOrigin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(invalid URL)';
  }
}
