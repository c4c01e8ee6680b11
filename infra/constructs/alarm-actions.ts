/**
 * How every alarm of the stack reaches people: the alert topic, notified when the alarm fires and
 * again when it clears (OK), so an alert that a failure began is always followed by one that it
 * ended. The one place an alarm is wired to SNS.
 */
import type * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as sns from 'aws-cdk-lib/aws-sns';

/** Adds the topic as `alarm`'s ALARM and OK action; returns the alarm. */
export function notifyTopic<A extends cloudwatch.Alarm>(alarm: A, topic: sns.ITopic): A {
  const action = new actions.SnsAction(topic);
  alarm.addAlarmAction(action);
  alarm.addOkAction(action);
  return alarm;
}
