/**
 * The nightly trigger: an EventBridge Scheduler cron in the configured IANA zone (EventBridge
 * rules only know UTC, so a local 02:00 would drift by an hour twice a year). The configured
 * time has already been checked against DST gaps (infra/dst.ts); Scheduler invokes the function
 * asynchronously, retries delivery, and sends what it could not deliver to the failure queue.
 */
import { Aws, type CfnElement, Duration, Stack, TimeZone, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as targets from 'aws-cdk-lib/aws-scheduler-targets';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { formatHourMinute } from '../dst.ts';

export interface BackupScheduleProps {
  /** What the schedule starts: the backup function (one invocation for all databases), or the fan-out's state machine. */
  readonly target: { readonly function: lambda.IFunction } | { readonly stateMachine: sfn.IStateMachine };
  readonly hour: number;
  readonly minute: number;
  readonly timeZone: string;
  readonly deadLetterQueue: sqs.IQueue;
}

/** The event of a scheduled run (the engine's on-demand event shape, with a reason). */
const SCHEDULED_EVENT = { reason: 'scheduled' } as const;

export class BackupSchedule extends Construct {
  readonly schedule: scheduler.Schedule;
  readonly role: iam.Role;

  constructor(scope: Construct, id: string, props: BackupScheduleProps) {
    super(scope, id);
    // Its own role (instead of the shared one the target would create at stack level), so the
    // acknowledgement below stays on the narrowest construct.
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', {
        conditions: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } },
      }),
      description: 'pg-s3-backup schedule: starts the nightly backup, sends undeliverable events to the failure queue',
    });
    const delivery = {
      role: this.role,
      deadLetterQueue: props.deadLetterQueue,
      // Delivery retries only (the start is asynchronous): a throttled or briefly unavailable
      // Lambda or Step Functions API still gets the night's backup, hours late at worst.
      retryAttempts: 10,
      maxEventAge: Duration.hours(4),
    };
    this.schedule = new scheduler.Schedule(this, 'Schedule', {
      description: `pg-s3-backup: nightly backup at ${formatHourMinute(props.hour, props.minute)} ${props.timeZone}`,
      schedule: scheduler.ScheduleExpression.cron({
        minute: String(props.minute),
        hour: String(props.hour),
        timeZone: TimeZone.of(props.timeZone),
      }),
      target: 'function' in props.target
        ? new targets.LambdaInvoke(props.target.function, { input: scheduler.ScheduleTargetInput.fromObject(SCHEDULED_EVENT), ...delivery })
        : new targets.StepFunctionsStartExecution(props.target.stateMachine, { input: scheduler.ScheduleTargetInput.fromObject(SCHEDULED_EVENT), ...delivery }),
    });
    if ('function' in props.target) {
      const functionLogicalId = Stack.of(this).resolve(Stack.of(this).getLogicalId(props.target.function.node.defaultChild as CfnElement)) as string;
      Validations.of(this.role).acknowledge({
        id: `AwsSolutions-IAM5[Resource::<${functionLogicalId}.Arn>:*]`,
        reason: 'lambda:InvokeFunction on the backup function and its versions/aliases (the `:*` suffix): the one function only.',
      });
    }
  }
}
