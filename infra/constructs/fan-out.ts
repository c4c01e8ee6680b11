/**
 * The fleet mode: EventBridge Scheduler starts a Step Functions state machine (Standard) that
 * plans the night (the function lists the databases and picks each one's runner), backs each
 * database up in a Map (the function, or the Fargate task with RunTask.sync), retries transient
 * errors with backoff, catches every failure so one database never stops the others, then sends
 * one summary. Execution failures, time-outs and aborts alarm to the alert topic.
 *
 *   Plan ──► Map(MaxConcurrency) ─┬─ runner = fargate ─► RunTask.sync ─► ok ─┐
 *                                 │     ▲ task failed to start (pull, ENI, secrets): wait, again (≤ 3)
 *                                 └─ otherwise ────────► Invoke ────────► ok ─┤
 *                                   (Catch → the function bounds the cause → failed)
 *        ◄──────────────────────────────────────────────────────────────────────┘
 *   Summarize ──► all ok? ──► Succeed | Fail(BackupsFailed)
 *
 * Fleet size: a Standard execution holds 256 KB of state data and 25,000 history events. Each
 * database's result is a few hundred bytes (its name, runner, error name and a cause the function
 * bounds to FAILURE_CAUSE_LIMIT characters: a stopped ECS task's cause is its whole description,
 * several KB), the plan is dropped once the Map has run, and test/infra/fan-out-fleet.test.ts runs
 * 500 databases with 50 failures through this definition, measuring every state's output.
 */
import { Duration, Stack, Validations, type CfnElement } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as sns from 'aws-cdk-lib/aws-sns';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { notifyTopic } from './alarm-actions.ts';
import type { FargateRunner } from './fargate-runner.ts';

export interface BackupFanOutProps {
  readonly function: lambda.IFunction;
  /** The Fargate runner, when a database may run there (runner `fargate` or `auto`). */
  readonly fargate?: FargateRunner;
  /** Backups running at once. @default 4 */
  readonly maxConcurrency: number;
  readonly topic: sns.ITopic;
  readonly logRetentionDays: number;
}

/** Errors worth a retry: the Lambda service's own and throttling, ECS capacity; never an engine failure (it has alerted already). */
export const TRANSIENT_LAMBDA_ERRORS = ['Lambda.ServiceException', 'Lambda.AWSLambdaException', 'Lambda.SdkClientException', 'Lambda.TooManyRequestsException'];
/**
 * RunTask's own errors, and `AmazonECS.Unknown`: with .sync, a RunTask answer with a non-empty
 * `Failures` field (no Fargate capacity, RESOURCE:ENI …) fails the state with that name (Step
 * Functions' ECS integration page).
 */
export const TRANSIENT_ECS_ERRORS = ['AmazonECS.Unknown', 'ECS.AmazonECSException', 'ECS.ServerException', 'ECS.LimitExceededException'];
/**
 * A task that stopped before its container ran reaches .sync as `States.TaskFailed` like any
 * other stopped task; only its cause (the task's description) tells them apart, by the stopped
 * reason's prefix. These are ECS's transient start failures (image pull, ENI or secrets fetch on
 * a busy network); an engine failure (the container exited 1) is not retried.
 */
export const TASK_START_FAILURES = ['ResourceInitializationError', 'CannotPullContainerError'];
/** Task start attempts after the first, and the wait before each (backoff ×2). */
export const TASK_START_RETRY_SECONDS = [60, 120, 240];

/** State names: the local execution test maps the tasks onto the real handler and CLI by these. */
export const STATE_NAMES = {
  plan: 'Plan the night',
  map: 'Back up each database',
  choose: 'Which runner',
  lambda: 'Back up on Lambda',
  command: 'Container command',
  fargate: 'Back up on Fargate',
  succeeded: 'Record success',
  failed: 'Record failure',
  describe: 'Describe the failure',
  startFailed: 'Did the task start',
  countStart: 'Count the start attempt',
  waitStart: 'Wait before starting again',
  summarize: 'Send the summary',
  allOk: 'All backed up',
  done: 'Done',
  someFailed: 'Some backups failed',
} as const;

/** Exponential backoff with full jitter, so that throttled iterations do not retry in step. */
function backoff(errors: string[], interval: Duration, maxAttempts = 3): sfn.RetryProps {
  return { errors, interval, backoffRate: 2, maxAttempts, jitterStrategy: sfn.JitterType.FULL, maxDelay: Duration.minutes(10) };
}

export class BackupFanOut extends Construct {
  readonly stateMachine: sfn.StateMachine;
  readonly alarms: cloudwatch.Alarm[] = [];

  constructor(scope: Construct, id: string, props: BackupFanOutProps) {
    super(scope, id);
    const plan = new tasks.LambdaInvoke(this, STATE_NAMES.plan, {
      lambdaFunction: props.function,
      payload: sfn.TaskInput.fromObject({ action: 'plan' }),
      payloadResponseOnly: true,
      retryOnServiceExceptions: false,
      resultPath: '$.plan',
      taskTimeout: sfn.Timeout.duration(Duration.minutes(5)),
    });
    plan.addRetry(backoff(TRANSIENT_LAMBDA_ERRORS, Duration.seconds(30)));

    // A failure's cause can be several KB (a Lambda error's stack trace, a stopped task's whole
    // description): the function keeps its message, bounded, so that the Map's results stay small.
    const describeFailure = new tasks.LambdaInvoke(this, STATE_NAMES.describe, {
      lambdaFunction: props.function,
      // `caught` whole: a path to an absent Cause would fail the iteration, and with it the Map.
      payload: sfn.TaskInput.fromObject({ action: 'failure', 'database.$': '$.database', 'runner.$': '$.runner', 'caught.$': '$.caught' }),
      payloadResponseOnly: true,
      retryOnServiceExceptions: false,
      taskTimeout: sfn.Timeout.duration(Duration.minutes(1)),
    });
    describeFailure.addRetry(backoff(TRANSIENT_LAMBDA_ERRORS, Duration.seconds(10)));
    // Should even that fail, the failure is still recorded (its name, without the cause).
    const recordFailure = new sfn.Pass(this, STATE_NAMES.failed, {
      parameters: { 'database.$': '$.database', 'runner.$': '$.runner', ok: false, 'error.$': '$.caught.Error', cause: 'the cause could not be read: see the execution history' },
    });
    describeFailure.addCatch(recordFailure, { errors: ['States.ALL'], resultPath: '$.describeFailed' });
    const recordSuccess = new sfn.Pass(this, STATE_NAMES.succeeded, {
      parameters: { 'database.$': '$.database', 'runner.$': '$.runner', ok: true },
    });

    const onLambda = new tasks.LambdaInvoke(this, STATE_NAMES.lambda, {
      lambdaFunction: props.function,
      payload: sfn.TaskInput.fromObject({ 'databases.$': 'States.Array($.database)', reason: 'scheduled' }),
      payloadResponseOnly: true,
      retryOnServiceExceptions: false,
      resultPath: sfn.JsonPath.DISCARD,
      // The function's own 15-minute timeout, plus the time to start it.
      taskTimeout: sfn.Timeout.duration(Duration.minutes(16)),
    });
    onLambda.addRetry(backoff(TRANSIENT_LAMBDA_ERRORS, Duration.seconds(30)));
    onLambda.addCatch(describeFailure, { errors: ['States.ALL'], resultPath: '$.caught' });
    onLambda.next(recordSuccess);

    const choose = new sfn.Choice(this, STATE_NAMES.choose);
    if (props.fargate) {
      const f = props.fargate;
      const onFargate = new tasks.EcsRunTask(this, STATE_NAMES.fargate, {
        integrationPattern: sfn.IntegrationPattern.RUN_JOB,
        cluster: f.cluster,
        taskDefinition: f.taskDefinition,
        launchTarget: new tasks.EcsFargateLaunchTarget({ platformVersion: ecs.FargatePlatformVersion.LATEST }),
        subnets: f.subnets,
        securityGroups: [f.securityGroup],
        containerOverrides: [
          {
            containerDefinition: f.container,
            command: sfn.JsonPath.listAt('$.command'),
          },
        ],
        resultPath: sfn.JsonPath.DISCARD,
        taskTimeout: sfn.Timeout.duration(f.runTimeout.plus(Duration.minutes(15))),
      });
      onFargate.addRetry(backoff(TRANSIENT_ECS_ERRORS, Duration.minutes(1)));
      // Was it a task that never started (transient), with start attempts left? Wait, start it again.
      const countStart = new sfn.Pass(this, STATE_NAMES.countStart, {
        parameters: {
          'database.$': '$.database',
          'runner.$': '$.runner',
          'command.$': '$.command',
          'attempt.$': 'States.MathAdd($.attempt, 1)',
          'waitSeconds.$': `States.ArrayGetItem(States.Array(${TASK_START_RETRY_SECONDS.join(', ')}), $.attempt)`,
        },
      });
      const waitStart = new sfn.Wait(this, STATE_NAMES.waitStart, { time: sfn.WaitTime.secondsPath('$.waitSeconds') });
      const startFailed = new sfn.Choice(this, STATE_NAMES.startFailed)
        .when(
          sfn.Condition.and(
            sfn.Condition.numberLessThan('$.attempt', TASK_START_RETRY_SECONDS.length),
            sfn.Condition.isPresent('$.caught.Cause'),
            sfn.Condition.or(...TASK_START_FAILURES.map((name) => sfn.Condition.stringMatches('$.caught.Cause', `*${name}*`))),
          ),
          countStart.next(waitStart).next(onFargate),
        )
        .otherwise(describeFailure);
      onFargate.addCatch(startFailed, { errors: ['States.TaskFailed'], resultPath: '$.caught' });
      onFargate.addCatch(describeFailure, { errors: ['States.ALL'], resultPath: '$.caught' });
      onFargate.next(recordSuccess);
      // The container's command as a list (an intrinsic cannot stand where RunTask expects an array).
      const command = new sfn.Pass(this, STATE_NAMES.command, {
        parameters: { 'database.$': '$.database', 'runner.$': '$.runner', 'command.$': "States.Array('run', '--database', $.database, '--reason', 'scheduled')", attempt: 0 },
      });
      choose.when(sfn.Condition.stringEquals('$.runner', 'fargate'), command.next(onFargate));
    }
    choose.otherwise(onLambda);

    const map = new sfn.Map(this, STATE_NAMES.map, {
      itemsPath: '$.plan.backups',
      maxConcurrency: props.maxConcurrency,
      // The results replace the plan (its `why` per database has served): the state stays small.
      // (No ResultPath: the default, `$`, replaces the state's input.)
      resultSelector: { 'results.$': '$' },
    });
    map.itemProcessor(choose);

    const summarize = new tasks.LambdaInvoke(this, STATE_NAMES.summarize, {
      lambdaFunction: props.function,
      payload: sfn.TaskInput.fromObject({ action: 'summarize', 'results.$': '$.results' }),
      payloadResponseOnly: true,
      retryOnServiceExceptions: false,
      // The execution's output: every failure (bounded causes) and the count of the rest.
      resultSelector: { summary: { 'failed.$': '$.failed', 'succeeded.$': 'States.ArrayLength($.succeeded)', 'published.$': '$.published' } },
      taskTimeout: sfn.Timeout.duration(Duration.minutes(5)),
    });
    summarize.addRetry(backoff(TRANSIENT_LAMBDA_ERRORS, Duration.seconds(30)));

    // The execution's status tells the truth: a night with a failed database is a failed execution
    // (its summary and each database's own alert say which and why).
    const allOk = new sfn.Choice(this, STATE_NAMES.allOk)
      .when(sfn.Condition.isPresent('$.summary.failed[0]'), new sfn.Fail(this, STATE_NAMES.someFailed, { error: 'BackupsFailed', cause: "One or more databases failed: the summary step's output and the alert name each one and why." }))
      .otherwise(new sfn.Succeed(this, STATE_NAMES.done));

    const logGroup = new logs.LogGroup(this, 'Logs', { retention: props.logRetentionDays as logs.RetentionDays });
    this.stateMachine = new sfn.StateMachine(this, 'StateMachine', {
      stateMachineType: sfn.StateMachineType.STANDARD,
      definitionBody: sfn.DefinitionBody.fromChainable(plan.next(map).next(summarize).next(allOk)),
      comment: 'pg-s3-backup: one backup per database, in parallel, then one summary',
      // The longest night: every database on its runner's bound, MaxConcurrency at a time, is far
      // below this; a stuck execution still ends (and alarms) within the day.
      timeout: Duration.hours(23),
      tracingEnabled: true,
      // Every state transition, without the data (inputs carry no secret, but they need not sit in logs).
      logs: { destination: logGroup, level: sfn.LogLevel.ALL, includeExecutionData: false },
    });

    const metrics: [string, cloudwatch.Metric, string][] = [
      ['ExecutionsFailed', this.stateMachine.metricFailed({ period: Duration.minutes(5), statistic: cloudwatch.Stats.SUM }), 'a night ended with a failed database, or the fan-out itself failed'],
      ['ExecutionsTimedOut', this.stateMachine.metricTimedOut({ period: Duration.minutes(5), statistic: cloudwatch.Stats.SUM }), 'the fan-out ran past its 23-hour bound'],
      ['ExecutionsAborted', this.stateMachine.metricAborted({ period: Duration.minutes(5), statistic: cloudwatch.Stats.SUM }), 'someone stopped the fan-out before it finished'],
    ];
    for (const [id, metric, what] of metrics) {
      const alarm = notifyTopic(new cloudwatch.Alarm(this, id, {
        metric,
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        alarmDescription: `pg-s3-backup fan-out: ${what}. Read the execution in the Step Functions console (its summary step lists each database), fix the cause, then run the failed databases on demand.`,
      }), props.topic);
      this.alarms.push(alarm);
    }

    // The fleet's dead-man: no successful night in 26 hours (no data = breaching: the schedule did
    // not fire, or every night failed). A night with one failed database is a failed execution.
    const deadMan = notifyTopic(new cloudwatch.Alarm(this, 'NoSuccessfulNight', {
      metric: this.stateMachine.metricSucceeded({ period: Duration.hours(1), statistic: cloudwatch.Stats.SUM }),
      threshold: 1,
      evaluationPeriods: 26,
      datapointsToAlarm: 26,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
      alarmDescription: 'pg-s3-backup fan-out: no night in the last 26 hours backed up every database. Check the ExecutionsFailed alarm and the executions in the Step Functions console, the schedule, then start an execution on demand.',
    }), props.topic);
    this.alarms.push(deadMan);

    const role = Validations.of(this.stateMachine.role);
    role.acknowledge({
      id: `AwsSolutions-IAM5[Resource::<${logicalId(props.function)}.Arn>:*]`,
      reason: 'Written by the Lambda task: lambda:InvokeFunction on the backup function and its versions/aliases (the `:*` suffix), the one function only.',
    });
    if (props.fargate) {
      // RunTask on the task definition's family, any revision (CDK writes `family:*`): this one task only.
      const id = logicalId(props.fargate.taskDefinition);
      const part = (i: number) => `{"Fn::Select":[${i},{"Fn::Split":[":",{"Ref":"${id}"}]}]}`;
      const slash = (i: number) => `{"Fn::Select":[${i},{"Fn::Split":["/",${part(5)}]}]}`;
      role.acknowledge({
        id: `AwsSolutions-IAM5[Resource::arn:${part(1)}:${part(2)}:${part(3)}:${part(4)}:${slash(0)}/${slash(1)}:*]`,
        reason: "Written by the RunTask.sync task: ecs:RunTask on the runner's task definition family (any revision), nothing else.",
      });
    }
    // Present with any runner: tracingEnabled makes CDK grant the X-Ray writes, which take no
    // resource (without this, databases=* with the Lambda runner failed synth on this finding).
    role.acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason: props.fargate
        ? 'X-Ray tracing (xray:PutTraceSegments and friends take no resource), and the RunTask.sync task: ecs:StopTask and ecs:DescribeTasks take no resource-level permission at task start, and the managed EventBridge rule Step Functions uses to learn that the task ended.'
        : 'X-Ray tracing of the state machine: xray:PutTraceSegments, PutTelemetryRecords and the sampling reads take no resource.',
    });
  }
}

/** A construct's CloudFormation logical id, as cdk-nag names it in its findings. */
function logicalId(construct: Construct): string {
  const stack = Stack.of(construct);
  return stack.resolve(stack.getLogicalId(construct.node.defaultChild as CfnElement)) as string;
}
