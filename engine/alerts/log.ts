/** The log channel: where a people's alert goes when no channel carries it (no ALERT_TOPIC_ARN): never dropped without a word. */
import type { EventSink } from '../events.ts';
import { messageOf, type AlertChannel } from './channel.ts';

export function logChannel(events: EventSink): AlertChannel {
  return {
    name: 'log',
    carries: (alert) => messageOf(alert) !== undefined,
    send(alert) {
      const message = messageOf(alert);
      if (message) events({ event: 'alert.not-configured', subject: message.subject, alert: message.body });
      // Logged is not delivered: nobody was told.
      return Promise.resolve(false);
    },
  };
}
