/**
 * An alert when a task nobody may be watching fails: an EventBridge rule on ECS's "Task State
 * Change" events for one task definition family in one cluster, which publishes to the alert topic
 * when the task stops with a non-zero exit code.
 *
 * Why: `restore --remote` follows its task from the operator's machine, which reports a failure
 * itself; but when that machine went away (laptop closed, network lost) the task ends at its own
 * deadline or fails with nobody reading its log, and the target database is left without the
 * restore the operator believes is running. The task itself has no publish permission (it reads
 * backups and its target secret, nothing else), so the alert comes from ECS's own event instead.
 *
 * Not alerted: a task stopped by StopTask (`stopCode` UserInitiated), which only the operator's
 * `--timeout` or Ctrl-C does, with the operator there to read why; and a task that never started
 * (no exit code), which RunTask's caller is told at once.
 */
import { Stack, Validations } from 'aws-cdk-lib';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import type * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';

export interface TaskFailureAlertProps {
  /** The task definition whose tasks are watched: every revision of its family. */
  readonly taskDefinition: ecs.TaskDefinition;
  /** The cluster they run in: tasks of the family elsewhere are not this stack's. */
  readonly cluster: ecs.ICluster;
  /** Where the alert goes (the stack's alert topic; encrypted topics are granted to the rule's role). */
  readonly topic: sns.ITopic;
  /** What the task was doing, for the alert's first sentence, e.g. "restore --remote / verify --remote". */
  readonly what: string;
  /** What its failure leaves behind, the alert's second sentence. */
  readonly consequence: string;
  /** Where its output is: the log group the alert points to. */
  readonly logGroupName: string;
  /** What to do about it, the alert's last sentence (a runbook section). */
  readonly whatToDo: string;
}

export class TaskFailureAlert extends Construct {
  readonly rule: events.Rule;

  constructor(scope: Construct, id: string, props: TaskFailureAlertProps) {
    super(scope, id);
    const stack = Stack.of(this);
    // Every revision of the family: a task started before a deploy still reports after it.
    const family = stack.formatArn({ service: 'ecs', resource: 'task-definition', resourceName: `${props.taskDefinition.family}:` });
    this.rule = new events.Rule(this, 'Rule', {
      description: `pg-s3-backup: alert when a ${props.what} task fails`,
      eventPattern: {
        source: ['aws.ecs'],
        detailType: ['ECS Task State Change'],
        detail: {
          clusterArn: [props.cluster.clusterArn],
          taskDefinitionArn: events.Match.prefix(family),
          lastStatus: ['STOPPED'],
          stopCode: events.Match.anythingBut('UserInitiated'),
          containers: { exitCode: events.Match.anythingBut(0) },
        },
      },
    });
    const field = (path: string) => events.EventField.fromPath(path);
    this.rule.addTarget(
      new targets.SnsTopic(props.topic, {
        // A role of the rule's own, not the topic's resource policy: the topic is KMS-encrypted, and
        // a role can be granted the key (CDK does so with the publish grant).
        authorizeUsingRole: true,
        message: events.RuleTargetInput.fromText(
          `pg-s3-backup: a ${props.what} task failed: task ${field('$.detail.taskArn')} stopped with exit code ${field('$.detail.containers[0].exitCode')} ` +
            `(${field('$.detail.stoppedReason')}; exit code 124: it reached its own deadline). ${props.consequence} ` +
            `Its log: log group ${props.logGroupName}, the stream named after the task id. ${props.whatToDo}`,
        ),
      }),
    );
    Validations.of(this.rule.node.findChild('EventsRole')).acknowledge({
      id: 'AwsSolutions-IAM5[Action::kms:GenerateDataKey*]',
      reason: 'Written by the SNS publish grant for the encrypted alert topic: the data keys of the topic\'s own key only (the resource is that key).',
    });
  }
}
