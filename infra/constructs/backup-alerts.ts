/**
 * Where failures go and what watches for them: one KMS-encrypted SNS topic (e-mail, and Slack
 * through AWS Chatbot) that the engine publishes to on every failure and that four kinds of
 * CloudWatch alarm notify, so that failures the engine cannot report (it never ran, it was
 * killed, it was deleted) still reach a human.
 */
import { Aws, Duration } from 'aws-cdk-lib';
import * as chatbot from 'aws-cdk-lib/aws-chatbot';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { notifyTopic } from './alarm-actions.ts';
import { METRIC_DIMENSION, METRIC_NAMES, METRIC_NAMESPACE, metricDatabaseName } from '../../engine/observability.ts';

/**
 * The dead-man window: a daily backup plus two hours of slack. CloudWatch caps a single alarm
 * period far below 26 h, so the window is 26 one-hour periods that must all be breaching
 * (missing data counts as breaching): "no success in any of the last 26 hours".
 */
export const DEAD_MAN_HOURS = 26;

/** The duration alarm fires above this share of the timeout: the dump is about to be killed. */
const DURATION_ALARM_RATIO = 0.8;

/** Every CloudWatch alarm of the stack's account and region. */
function ownAlarmsArnPattern(): string {
  return `arn:${Aws.PARTITION}:cloudwatch:${Aws.REGION}:${Aws.ACCOUNT_ID}:alarm:*`;
}

export interface BackupAlertsProps {
  readonly emails: readonly string[];
  readonly slack?: { readonly workspaceId: string; readonly channelId: string };
  /** Names the Chatbot channel configuration (unique per account). */
  readonly name: string;
}

export interface WatchProps {
  readonly function: lambda.IFunction;
  readonly timeout: Duration;
  readonly failureQueue: sqs.IQueue;
  /** Databases with a dead-man alarm each; empty: the database comes from the secret and is unknown here. */
  readonly databases: readonly string[];
}

export class BackupAlerts extends Construct {
  readonly topic: sns.Topic;
  readonly key: kms.Key;
  readonly alarms: cloudwatch.Alarm[] = [];

  constructor(scope: Construct, id: string, props: BackupAlertsProps) {
    super(scope, id);
    this.key = new kms.Key(this, 'Key', {
      description: 'pg-s3-backup: encrypts the alert topic',
      enableKeyRotation: true,
    });
    // Only this account's alarms in this region may use the key and the topic (confused deputy).
    const fromOwnAlarms = {
      StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID },
      ArnLike: { 'aws:SourceArn': ownAlarmsArnPattern() },
    };
    // CloudWatch publishes alarm notifications to the encrypted topic, so it must use the key
    // (the actions AWS documents for an alarm publishing to an SSE-KMS topic).
    this.key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CloudWatchAlarmsPublishToEncryptedTopic',
        principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        resources: ['*'],
        conditions: fromOwnAlarms,
      }),
    );
    this.topic = new sns.Topic(this, 'Topic', {
      displayName: 'pg-s3-backup alerts',
      masterKey: this.key,
      enforceSSL: true,
    });
    // `enforceSSL` makes CDK write a topic policy (the TLS Deny), and any topic policy replaces
    // SNS's default one, which is what let CloudWatch publish: without this Allow every alarm
    // would fire to nobody.
    this.topic.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CloudWatchAlarmsPublish',
        principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['sns:Publish'],
        resources: [this.topic.topicArn],
        conditions: fromOwnAlarms,
      }),
    );
    for (const email of props.emails) this.topic.addSubscription(new subscriptions.EmailSubscription(email));

    if (props.slack) {
      new chatbot.SlackChannelConfiguration(this, 'Slack', {
        slackChannelConfigurationName: props.name,
        slackWorkspaceId: props.slack.workspaceId,
        slackChannelId: props.slack.channelId,
        notificationTopics: [this.topic],
        // The channel only receives notifications; its members get no AWS permissions through it.
        guardrailPolicies: [iam.ManagedPolicy.fromAwsManagedPolicyName('CloudWatchReadOnlyAccess')],
        loggingLevel: chatbot.LoggingLevel.ERROR,
      });
    }
  }

  /** Creates the alarms, each notifying the topic when it fires and when it clears. */
  watch(props: WatchProps): void {
    const add = (id: string, alarmProps: cloudwatch.AlarmProps): void => {
      this.alarms.push(notifyTopic(new cloudwatch.Alarm(this, id, alarmProps), this.topic));
    };

    add('ErrorsAlarm', {
      alarmDescription: 'pg-s3-backup: the backup function failed (an error or a crash). Read its logs; the engine also sent the failure details to this topic.',
      metric: props.function.metricErrors({ period: Duration.minutes(5), statistic: cloudwatch.Stats.SUM }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    const timeoutMs = props.timeout.toMilliseconds();
    add('DurationAlarm', {
      alarmDescription: `pg-s3-backup: a run took more than ${DURATION_ALARM_RATIO * 100} % of the ${props.timeout.toMinutes()}-minute timeout. The database is outgrowing Lambda: raise memory, lower compression, or move the dump to a longer-lived runner.`,
      metric: props.function.metricDuration({ period: Duration.minutes(5), statistic: cloudwatch.Stats.MAXIMUM }),
      threshold: Math.round(timeoutMs * DURATION_ALARM_RATIO),
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    add('FailureQueueAlarm', {
      alarmDescription: 'pg-s3-backup: a scheduled run could not be delivered or failed after its retries; the event is in the failure queue. Read it, fix the cause, run a backup on demand, then purge the queue.',
      metric: props.failureQueue.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(5), statistic: cloudwatch.Stats.MAXIMUM }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    for (const { id, props: alarmProps } of deadManAlarms({
      function: props.function,
      databases: props.databases,
      metricName: METRIC_NAMES.succeeded,
      label: 'successful invocations',
      // The database name comes from the secret at run time: watch that the function succeeds at all.
      whole: `pg-s3-backup: no successful invocation of the backup function in ${DEAD_MAN_HOURS} hours. Check the schedule, the function and the failure queue; set the "databases" context for one alarm per database.`,
      perDatabase: (database) =>
        `pg-s3-backup: no successful backup of database "${database}" in ${DEAD_MAN_HOURS} hours (the schedule did not fire, the function was denied or deleted, or every run failed). Check the other alarms and the function's logs, then run a backup on demand.`,
    })) {
      add(id, alarmProps);
    }
  }
}

/** What a dead-man alarm watches and says: one per named database, or one on the function's successes. */
export interface DeadManProps {
  readonly function: lambda.IFunction;
  /** The databases with a per-database metric; empty: one alarm on invocations minus errors. */
  readonly databases: readonly string[];
  /** The engine's success metric (one datapoint per database per success). */
  readonly metricName: string;
  /** The label of the whole-function metric. */
  readonly label: string;
  /** The description of the whole-function alarm. */
  readonly whole: string;
  /** The description of a database's alarm. */
  readonly perDatabase: (database: string) => string;
}

/**
 * The dead-man alarms of a nightly job (the backup, the drill): no success in DEAD_MAN_HOURS, and
 * no data at all (never ran, denied before the code ran, function deleted) counts as none.
 */
export function deadManAlarms(props: DeadManProps): { id: string; props: cloudwatch.AlarmProps }[] {
  const deadMan = {
    comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
    threshold: 1,
    evaluationPeriods: DEAD_MAN_HOURS,
    datapointsToAlarm: DEAD_MAN_HOURS,
    treatMissingData: cloudwatch.TreatMissingData.BREACHING,
  } as const;
  if (props.databases.length === 0) {
    return [
      {
        id: 'DeadManAlarm',
        props: {
          ...deadMan,
          alarmDescription: props.whole,
          metric: new cloudwatch.MathExpression({
            expression: 'FILL(invocations, 0) - FILL(errors, 0)',
            usingMetrics: {
              invocations: props.function.metricInvocations({ period: Duration.hours(1), statistic: cloudwatch.Stats.SUM }),
              errors: props.function.metricErrors({ period: Duration.hours(1), statistic: cloudwatch.Stats.SUM }),
            },
            period: Duration.hours(1),
            label: props.label,
          }),
        },
      },
    ];
  }
  return props.databases.map((database, i) => ({
    id: `DeadManAlarm${i}`,
    props: {
      ...deadMan,
      alarmDescription: props.perDatabase(database),
      metric: new cloudwatch.Metric({
        namespace: METRIC_NAMESPACE,
        metricName: props.metricName,
        dimensionsMap: { [METRIC_DIMENSION]: metricDatabaseName(database) },
        statistic: cloudwatch.Stats.SUM,
        period: Duration.hours(1),
      }),
    },
  }));
}
