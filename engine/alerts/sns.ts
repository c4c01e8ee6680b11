/** The SNS channel: people's alerts published to ALERT_TOPIC_ARN (e-mail, Slack through AWS Chatbot). */
import { PublishCommand, type SNSClient } from '@aws-sdk/client-sns';
import type { EventSink } from '../events.ts';
import { messageOf, type AlertChannel } from './channel.ts';

export function snsChannel(sns: Pick<SNSClient, 'send'>, topicArn: string, events: EventSink): AlertChannel {
  return {
    name: 'sns',
    carries: (alert) => messageOf(alert) !== undefined,
    async send(alert, bound) {
      const message = messageOf(alert);
      if (!message) return false;
      try {
        await sns.send(new PublishCommand({ TopicArn: topicArn, Subject: message.subject, Message: message.body }), { abortSignal: bound.signal });
        return true;
      } catch (err) {
        // An SNS outage is logged with the whole alert, and the caller goes on (the next database is still backed up).
        events({
          event: 'alert.publish-failed',
          stage: 'notify',
          topicArn,
          subject: message.subject,
          error: `${(err as Error).name}: ${(err as Error).message}`,
          alert: message.body,
        });
        return false;
      }
    },
  };
}
