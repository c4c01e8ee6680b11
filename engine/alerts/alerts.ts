/**
 * The one place the alert channels are chosen and bounded: SNS when ALERT_TOPIC_ARN is set, the
 * heartbeat when HEARTBEAT_URL is, the log for what neither carries; each delivery within
 * ALERT_TIMEOUT_SECONDS (the heartbeat within its own HEARTBEAT_TIMEOUT_SECONDS). A new channel is
 * one module beside this one (an `AlertChannel`) and one line here.
 */
import type { SNSClient } from '@aws-sdk/client-sns';
import type { AlertChannels } from '../config.ts';
import type { EventSink } from '../events.ts';
import { composeAlerts, type AlertChannel, type Alerts } from './channel.ts';
import { heartbeatChannel } from './heartbeat.ts';
import { logChannel } from './log.ts';
import { snsChannel } from './sns.ts';

export type { Alert, AlertChannel, Alerts, Bound, Delivery } from './channel.ts';

export interface AlertClients {
  readonly sns: Pick<SNSClient, 'send'>;
  readonly events: EventSink;
  /** The heartbeat's HTTP client (default: the global fetch). */
  readonly fetch?: typeof fetch | undefined;
}

export function createAlerts(settings: AlertChannels, clients: AlertClients): Alerts {
  const channels: AlertChannel[] = [
    ...(settings.alertTopicArn ? [snsChannel(clients.sns, settings.alertTopicArn, clients.events)] : []),
    ...(settings.heartbeatUrl ? [heartbeatChannel(settings.heartbeatUrl, settings.heartbeatTimeoutMs, clients.events, clients.fetch)] : []),
  ];
  return composeAlerts(channels, { timeoutMs: settings.alertTimeoutMs, fallback: logChannel(clients.events) });
}
