/**
 * One queue for every run that never completed: events EventBridge Scheduler could not deliver
 * (its dead-letter queue) and asynchronous invocations that still failed after Lambda's retries
 * (the function's on-failure destination). One queue means one alarm and one place to look.
 */
import { Duration, Validations } from 'aws-cdk-lib';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';

export class FailureQueue extends Construct {
  readonly queue: sqs.Queue;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    this.queue = new sqs.Queue(this, 'Queue', {
      // SQS-managed encryption: Scheduler and Lambda can send without extra KMS grants.
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    Validations.of(this.queue).acknowledge({
      id: 'AwsSolutions-SQS3',
      reason: 'This queue is itself the dead-letter queue of the backup schedule and the on-failure destination of the function.',
    });
  }
}
