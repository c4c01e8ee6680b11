/**
 * Alerts as channels. A caller says what happened (an `Alert`); where it goes (SNS, the
 * heartbeat, the log) and how long each delivery may take are decided here, once, by
 * `composeAlerts`: no caller names a topic, a URL or a timeout, so no caller can forget the bound.
 */
import type { Message } from '../notify.ts';

/**
 * What happened. The wording of a message is notify.ts's (the one formatter): `subject` names
 * what failed, `body` says what failed and what to do.
 */
export type Alert =
  /** Something failed (a database's backup, a drill, a fan-out night): for people. */
  | { readonly kind: 'failed'; readonly message: Message }
  /** News that is not a failure (a success summary, a drill that passed): for people. */
  | { readonly kind: 'news'; readonly message: Message }
  /**
   * The run failed as a whole, before or around the backup (a configuration error, a held lock,
   * the CLI killed): for people, and the dead-man's switch's `/fail`.
   */
  | { readonly kind: 'run failed'; readonly message: Message }
  /** A run's outcome, for the dead-man's switch only (each failure has had its own alert). */
  | { readonly kind: 'run ended'; readonly status: 'succeeded' | 'failed'; readonly summary: string };

/** How long one delivery may take, and the setting that says so (named when it runs out). */
export interface Bound {
  readonly signal: AbortSignal;
  readonly timeoutMs: number;
  readonly setting: string;
}

export interface AlertChannel {
  /** Its key in a `Delivery`: 'sns', 'heartbeat', 'log'. */
  readonly name: string;
  /** Its own bound (the heartbeat's HEARTBEAT_TIMEOUT_SECONDS); else the composition's (ALERT_TIMEOUT_SECONDS). */
  readonly timeout?: { readonly ms: number; readonly setting: string } | undefined;
  /** Whether this channel carries that kind of alert. */
  carries(alert: Alert): boolean;
  /** Delivers within `bound`; never throws (a failure is reported as an event); true when the far end took it. */
  send(alert: Alert, bound: Bound): Promise<boolean>;
}

/** Per channel that carried the alert: whether it was delivered. A channel that did not carry it is absent. */
export type Delivery = Readonly<Record<string, boolean>>;

/** What the engine and the front doors hold (`Deps.alerts`): send one alert to every channel that carries it. */
export interface Alerts {
  send(alert: Alert): Promise<Delivery>;
}

/**
 * The channels under one bound: each delivery gets its own deadline (the channel's, else
 * `timeoutMs`, ALERT_TIMEOUT_SECONDS), every attempt included, so a black-holed endpoint costs
 * one alert, never the run. Channels are tried one after the other, in the order given (their
 * events then read in that order). `fallback` (the log) takes what no channel carries: an
 * alert is never dropped without a word.
 */
export function composeAlerts(channels: readonly AlertChannel[], options: { readonly timeoutMs: number; readonly fallback: AlertChannel }): Alerts {
  return {
    async send(alert) {
      const carriers = channels.filter((c) => c.carries(alert));
      const chosen = carriers.length > 0 ? carriers : [options.fallback].filter((c) => c.carries(alert));
      const delivery: Record<string, boolean> = {};
      for (const channel of chosen) {
        const ms = channel.timeout?.ms ?? options.timeoutMs;
        const setting = channel.timeout?.setting ?? 'ALERT_TIMEOUT_SECONDS';
        delivery[channel.name] = await channel.send(alert, { signal: AbortSignal.timeout(ms), timeoutMs: ms, setting });
      }
      return delivery;
    },
  };
}

/** The alerts' message, for the channels that carry people's alerts. */
export function messageOf(alert: Alert): Message | undefined {
  return alert.kind === 'run ended' ? undefined : alert.message;
}
