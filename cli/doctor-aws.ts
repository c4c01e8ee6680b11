/**
 * What `pg-s3-backup doctor` checks from the operator's machine, on the deployed stack: its
 * outputs, the function's own check mode (`{"check": true}`) and the drill function's (its throwaway
 * server started and stopped in the bucket's locales), the alert topic's subscriptions,
 * each alarm's delivery to the topic (set-alarm-state, then the alarm history must show the SNS
 * action succeeded) and the schedule (enabled, targeting the function, next run in its zone).
 * Every AWS call goes through `DoctorClients`, so tests run it against moto and inject the rest.
 */
import { CloudFormationClient, DescribeStacksCommand, ListStackResourcesCommand, type Stack } from '@aws-sdk/client-cloudformation';
import { CloudWatchClient, DescribeAlarmHistoryCommand, DescribeAlarmsCommand, SetAlarmStateCommand, type MetricAlarm } from '@aws-sdk/client-cloudwatch';
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { GetScheduleCommand, SchedulerClient } from '@aws-sdk/client-scheduler';
import { ListSubscriptionsByTopicCommand, SNSClient, type Subscription } from '@aws-sdk/client-sns';
import { describeError, fail, notChecked, pass, warn, type Check } from '../engine/check/check.ts';
import { humanDelay, nextRuns, wallClock } from './next-run.ts';

export interface DoctorClients {
  readonly cloudformation: Pick<CloudFormationClient, 'send'>;
  readonly lambda: Pick<LambdaClient, 'send'>;
  readonly sns: Pick<SNSClient, 'send'>;
  readonly cloudwatch: Pick<CloudWatchClient, 'send'>;
  readonly scheduler: Pick<SchedulerClient, 'send'>;
}

/** Real clients (region and endpoints from the SDK's own variables), with any given ones instead. */
export function doctorClients(given: Partial<DoctorClients> = {}): DoctorClients {
  return {
    cloudformation: given.cloudformation ?? new CloudFormationClient({}),
    // The check runs for seconds, but a cold function behind a VPC may take a while to start.
    lambda: given.lambda ?? new LambdaClient({ requestHandler: { requestTimeout: 16 * 60_000 }, maxAttempts: 1 }),
    sns: given.sns ?? new SNSClient({}),
    cloudwatch: given.cloudwatch ?? new CloudWatchClient({}),
    scheduler: given.scheduler ?? new SchedulerClient({}),
  };
}

export interface DeployedOptions {
  readonly stackName: string;
  /** Instead of the stack output FunctionName. */
  readonly functionName?: string | undefined;
  /** Set each alarm's state to test its delivery (sends a notification per alarm). */
  readonly alarmTest: boolean;
  /** How long to wait for each alarm's action to show in its history. */
  readonly alarmTimeoutMs: number;
  readonly now: () => number;
  readonly sleep?: (ms: number) => Promise<void>;
}

/** The stack outputs the checks need. */
const REQUIRED_OUTPUTS = ['FunctionName', 'AlertTopicArn', 'BucketName', 'BackupPrefix'] as const;

export async function deployedChecks(clients: DoctorClients, options: DeployedOptions): Promise<Check[]> {
  const checks: Check[] = [];
  const stackName = `stack ${options.stackName}`;
  let stack: Stack | undefined;
  try {
    stack = (await clients.cloudformation.send(new DescribeStacksCommand({ StackName: options.stackName }))).Stacks?.[0];
    if (!stack) throw new Error(`stack ${options.stackName} not found`);
  } catch (err) {
    checks.push(fail(`${stackName}: outputs found`, describeError(err).detail, `Check the stack name (--stack, default PgS3Backup; the context key stackName), AWS_REGION and your credentials; deploy with npx cdk deploy.`));
    return [...checks, ...['function: check mode', 'alerts: subscriptions', 'alarms', 'schedule'].map((n) => notChecked(n, `${stackName}: outputs found failed`))];
  }
  const outputs = Object.fromEntries((stack.Outputs ?? []).map((o) => [o.OutputKey ?? '', o.OutputValue ?? '']));
  const missing = REQUIRED_OUTPUTS.filter((k) => !outputs[k]);
  const status = stack.StackStatus ?? 'UNKNOWN';
  if (missing.length > 0) {
    checks.push(fail(`${stackName}: outputs found`, `status ${status}; missing output(s) ${missing.join(', ')}`, 'Deploy this version of the stack (npx cdk deploy).'));
  } else if (!/_COMPLETE$/.test(status) || /ROLLBACK|DELETE/.test(status)) {
    checks.push(fail(`${stackName}: outputs found`, `status ${status}: the last deployment did not complete`, 'Look at the stack events in the CloudFormation console, fix the cause and deploy again.'));
  } else {
    checks.push(pass(`${stackName}: outputs found`, `status ${status}; ${REQUIRED_OUTPUTS.map((k) => `${k} ${outputs[k]}`).join(', ')}`));
  }

  let resources: { type: string; id: string }[] | undefined;
  const stackResources = async () => (resources ??= await listResources(clients, options.stackName));

  const functionName = options.functionName ?? outputs.FunctionName;
  const topicArn = outputs.AlertTopicArn;
  const drillFunction = outputs.DrillFunctionName;
  const [fn, drill, subs, alarms, schedule] = await Promise.all([
    functionName ? functionChecks(clients, functionName) : [notChecked('function: check mode', 'no FunctionName output (or --function)')],
    // The drill's throwaway server needs what cannot be tried anywhere but on Lambda (SysV shared
    // memory, the layer's locales): its check mode starts and stops it. No drill deployed: nothing to check.
    drillFunction ? functionChecks(clients, drillFunction, 'drill') : [],
    topicArn ? subscriptionChecks(clients, topicArn) : [notChecked('alerts: subscriptions', 'no AlertTopicArn output')],
    topicArn ? alarmChecks(clients, stackResources, topicArn, options) : [notChecked('alarms', 'no AlertTopicArn output')],
    scheduleChecks(clients, stackResources, outputs, functionName, options),
  ]);
  return [...checks, ...fn, ...drill, ...subs, ...alarms, ...schedule];
}

/** The stack's resources (type and physical id), following pagination. */
export async function listResources(clients: Pick<DoctorClients, 'cloudformation'>, stackName: string): Promise<{ type: string; id: string }[]> {
  const out: { type: string; id: string }[] = [];
  let token: string | undefined;
  do {
    const res = await clients.cloudformation.send(new ListStackResourcesCommand({ StackName: stackName, NextToken: token }));
    for (const r of res.StackResourceSummaries ?? []) if (r.ResourceType && r.PhysicalResourceId) out.push({ type: r.ResourceType, id: r.PhysicalResourceId });
    token = res.NextToken;
  } while (token);
  return out;
}

/**
 * A deployed function's own checks (Lambda Invoke of `{"check": true}`), each named `<prefix>: …`:
 * the backup function's (`function`) and the drill function's (`drill`).
 */
async function functionChecks(clients: DoctorClients, functionName: string, prefix: 'function' | 'drill' = 'function'): Promise<Check[]> {
  const name = `${prefix}: check mode`;
  let text: string;
  let functionError: string | undefined;
  try {
    const res = await clients.lambda.send(new InvokeCommand({ FunctionName: functionName, InvocationType: 'RequestResponse', Payload: Buffer.from(JSON.stringify({ check: true })) }));
    text = res.Payload ? Buffer.from(res.Payload).toString('utf8') : '';
    functionError = res.FunctionError;
  } catch (err) {
    return [fail(name, `cannot invoke ${functionName}: ${describeError(err).detail}`, 'Check the function name (stack output FunctionName), AWS_REGION and your lambda:InvokeFunction permission.')];
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (functionError) {
    const e = (body ?? {}) as { errorType?: string; errorMessage?: string };
    const old = /unknown field\(s\) "check"|Unrecognized key.*"check"/.test(e.errorMessage ?? '');
    return [fail(name, `${functionName} failed: ${e.errorType ?? functionError}: ${e.errorMessage ?? text}`, old ? 'The deployed function predates check mode: deploy this version (npx cdk deploy).' : 'Read the function\'s log group (its request id is in the log) for the cause.')];
  }
  const result = body as { status?: string; checks?: Check[] } | undefined;
  if (result?.status !== 'checked' || !Array.isArray(result.checks)) {
    return [fail(name, `${functionName} answered without checks: ${text.slice(0, 300)}`, 'Deploy this version of the stack (npx cdk deploy): the function must support {"check": true}.')];
  }
  return result.checks.map((c) => ({ ...c, name: `${prefix}: ${c.name}` }));
}

async function subscriptionChecks(clients: DoctorClients, topicArn: string): Promise<Check[]> {
  const subs: Subscription[] = [];
  try {
    let token: string | undefined;
    do {
      const res = await clients.sns.send(new ListSubscriptionsByTopicCommand({ TopicArn: topicArn, NextToken: token }));
      subs.push(...(res.Subscriptions ?? []));
      token = res.NextToken;
    } while (token);
  } catch (err) {
    return [fail('alerts: subscriptions', `cannot list the subscriptions of ${topicArn}: ${describeError(err).detail}`, 'Check your sns:ListSubscriptionsByTopic permission and AWS_REGION.')];
  }
  if (subs.length === 0) {
    return [fail('alerts: subscriptions', `nobody is subscribed to ${topicArn}: failures and alarms would reach no one`, 'Set alertEmails (or Slack) and deploy, or: aws sns subscribe --topic-arn <AlertTopicArn> --protocol email --notification-endpoint you@example.com')];
  }
  const checks = subs.map((s) => {
    const name = `alerts: ${s.Protocol ?? '?'} subscription ${s.Endpoint ?? '?'}`;
    if (s.SubscriptionArn === 'PendingConfirmation') {
      return warn(name, 'pending confirmation: nothing is delivered to it yet', s.Protocol?.startsWith('email') ? `Follow the link in the "AWS Notification - Subscription Confirmation" e-mail sent to ${s.Endpoint ?? 'the address'} (check the spam folder), then run doctor again.` : 'Confirm the subscription at its endpoint.');
    }
    return pass(name, 'confirmed');
  });
  if (!subs.some((s) => s.SubscriptionArn !== 'PendingConfirmation')) {
    checks.push(fail('alerts: subscriptions', 'no subscription is confirmed: failures and alarms would reach no one', 'Confirm at least one subscription (see above).'));
  }
  return checks;
}

const STATE_REASON = 'pg-s3-backup doctor: testing that this alarm\'s notification reaches the alert topic (not a real alarm); CloudWatch sets the real state again at its next evaluation.';

/**
 * The stack's alarms (its AWS::CloudWatch::Alarm resources) and every alarm that notifies the
 * alert topic (DescribeAlarms by action prefix): one check each.
 */
async function alarmChecks(clients: DoctorClients, stackResources: () => Promise<{ type: string; id: string }[]>, topicArn: string, options: DeployedOptions): Promise<Check[]> {
  let alarms: MetricAlarm[];
  try {
    alarms = await stackAlarms(clients, stackResources, topicArn);
  } catch (err) {
    return [fail('alarms', `cannot read the stack's alarms: ${describeError(err).detail}`, 'Check your cloudformation:ListStackResources and cloudwatch:DescribeAlarms permissions.')];
  }
  if (alarms.length === 0) return [fail('alarms', 'no CloudWatch alarm in the stack or notifying the alert topic', 'Deploy this version of the stack (npx cdk deploy).')];
  return Promise.all(alarms.map((a) => alarmCheck(clients, a, topicArn, options)));
}

/**
 * The stack's alarms (its AWS::CloudWatch::Alarm resources) and every alarm notifying the alert
 * topic (DescribeAlarms by action prefix), by name. `doctor` tests each one's delivery; `status`
 * shows their states.
 */
export async function stackAlarms(clients: Pick<DoctorClients, 'cloudwatch'>, stackResources: () => Promise<{ type: string; id: string }[]>, topicArn: string | undefined): Promise<MetricAlarm[]> {
  const alarms = new Map<string, MetricAlarm>();
  const names = (await stackResources()).filter((r) => r.type === 'AWS::CloudWatch::Alarm').map((r) => r.id);
  for (let i = 0; i < names.length; i += 100) {
    const res = await clients.cloudwatch.send(new DescribeAlarmsCommand({ AlarmNames: names.slice(i, i + 100), AlarmTypes: ['MetricAlarm'] }));
    for (const a of res.MetricAlarms ?? []) if (a.AlarmName) alarms.set(a.AlarmName, a);
  }
  let token: string | undefined;
  if (topicArn) {
    do {
      const res = await clients.cloudwatch.send(new DescribeAlarmsCommand({ ActionPrefix: topicArn, AlarmTypes: ['MetricAlarm'], NextToken: token }));
      for (const a of res.MetricAlarms ?? []) if (a.AlarmName) alarms.set(a.AlarmName, a);
      token = res.NextToken;
    } while (token);
  }
  return [...alarms.values()].sort((a, b) => (a.AlarmName! < b.AlarmName! ? -1 : 1));
}

async function alarmCheck(clients: DoctorClients, alarm: MetricAlarm, topicArn: string, options: DeployedOptions): Promise<Check> {
  const alarmName = alarm.AlarmName ?? '?';
  const name = `alarm ${alarmName}: notification delivered`;
  const onAlarm = (alarm.AlarmActions ?? []).includes(topicArn);
  const onOk = (alarm.OKActions ?? []).includes(topicArn);
  if (alarm.ActionsEnabled === false) return fail(name, 'its actions are disabled: it notifies nobody', `aws cloudwatch enable-alarm-actions --alarm-names ${alarmName}`);
  if (!onAlarm) return fail(name, `it does not notify the alert topic when it fires (actions: ${(alarm.AlarmActions ?? []).join(', ') || 'none'})`, 'Deploy this version of the stack (npx cdk deploy).');
  if (!options.alarmTest) return pass(name, `notifies the topic on ALARM${onOk ? ' and OK' : ''} (delivery not tested: --no-alarm-test)`);

  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  // History timestamps are CloudWatch's clock: look a minute back to allow for skew.
  const since = new Date(options.now() - 60_000);
  const seen = new Set((await actionHistory(clients, alarmName, since).catch(() => [])).map((h) => h.key));
  try {
    if (alarm.StateValue === 'ALARM' && !onOk) {
      // OK would notify nobody: leave ALARM first, then enter it again.
      await clients.cloudwatch.send(new SetAlarmStateCommand({ AlarmName: alarmName, StateValue: 'OK', StateReason: STATE_REASON }));
    }
    const target = alarm.StateValue === 'ALARM' && onOk ? 'OK' : 'ALARM';
    await clients.cloudwatch.send(new SetAlarmStateCommand({ AlarmName: alarmName, StateValue: target, StateReason: STATE_REASON }));
  } catch (err) {
    return fail(name, `cannot set the alarm's state to test it: ${describeError(err).detail}`, 'Grant yourself cloudwatch:SetAlarmState and cloudwatch:DescribeAlarmHistory, or run doctor with --no-alarm-test.');
  }
  const deadline = options.now() + options.alarmTimeoutMs;
  for (;;) {
    let items: ActionItem[];
    try {
      items = await actionHistory(clients, alarmName, since);
    } catch (err) {
      return fail(name, `cannot read the alarm history: ${describeError(err).detail}`, 'Grant yourself cloudwatch:DescribeAlarmHistory.');
    }
    const item = items.find((h) => !seen.has(h.key) && h.text.includes(topicArn));
    if (item) {
      if (item.succeeded) return pass(name, `CloudWatch published to the alert topic (${item.summary}); the alarm returns to its real state at its next evaluation`);
      return fail(
        name,
        `CloudWatch could not publish to the alert topic: ${item.summary}${item.error ? ` (${item.error})` : ''}`,
        'The topic policy must allow cloudwatch.amazonaws.com to sns:Publish (this account\'s alarms) and the topic\'s KMS key policy must let CloudWatch use the key: deploy this version of the stack (npx cdk deploy).',
      );
    }
    if (options.now() >= deadline) {
      return fail(name, `no notification action in the alarm's history within ${Math.round(options.alarmTimeoutMs / 1000)} s of setting its state`, 'Run doctor again (CloudWatch can be slow to record actions); look at the alarm\'s History tab in the CloudWatch console.');
    }
    await sleep(Math.min(2000, Math.max(0, deadline - options.now())));
  }
}

interface ActionItem {
  readonly key: string;
  readonly summary: string;
  readonly text: string;
  readonly succeeded: boolean;
  readonly error: string | undefined;
}

/** The alarm's Action history items since `since`: "Successfully executed action arn:…" or "Failed to execute action arn:…". */
async function actionHistory(clients: DoctorClients, alarmName: string, since: Date): Promise<ActionItem[]> {
  const res = await clients.cloudwatch.send(new DescribeAlarmHistoryCommand({ AlarmName: alarmName, HistoryItemType: 'Action', StartDate: since, ScanBy: 'TimestampDescending', MaxRecords: 100 }));
  return (res.AlarmHistoryItems ?? []).map((h) => {
    const summary = h.HistorySummary ?? '';
    let data: { actionState?: string; error?: string } = {};
    try {
      data = JSON.parse(h.HistoryData ?? '{}') as typeof data;
    } catch {
      // Not JSON: the summary says it all.
    }
    const succeeded = data.actionState ? data.actionState === 'Succeeded' : /^Successfully executed/i.test(summary);
    return { key: `${h.Timestamp?.toISOString() ?? ''} ${summary}`, summary, text: `${summary} ${h.HistoryData ?? ''}`, succeeded, error: data.error };
  });
}

async function scheduleChecks(
  clients: DoctorClients,
  stackResources: () => Promise<{ type: string; id: string }[]>,
  outputs: Record<string, string>,
  functionName: string | undefined,
  options: DeployedOptions,
): Promise<Check[]> {
  const name = 'schedule: enabled, next run';
  let scheduleName = outputs.ScheduleName;
  let schedule;
  try {
    // Stacks deployed before the ScheduleName output: the schedule is one of the stack's resources.
    scheduleName ??= (await stackResources()).find((r) => r.type === 'AWS::Scheduler::Schedule')?.id;
    if (!scheduleName) return [fail(name, 'the stack has no EventBridge Scheduler schedule', 'Deploy this version of the stack (npx cdk deploy).')];
    schedule = await clients.scheduler.send(new GetScheduleCommand({ Name: scheduleName, ...(outputs.ScheduleGroupName ? { GroupName: outputs.ScheduleGroupName } : {}) }));
  } catch (err) {
    return [fail(name, `cannot read the schedule${scheduleName ? ` ${scheduleName}` : ''}: ${describeError(err).detail}`, 'Check your scheduler:GetSchedule permission and AWS_REGION.')];
  }
  const zone = schedule.ScheduleExpressionTimezone ?? 'UTC';
  const expression = schedule.ScheduleExpression ?? '?';
  if (schedule.State !== 'ENABLED') {
    return [fail(name, `schedule ${scheduleName} is ${schedule.State ?? 'in an unknown state'}: no backup runs tonight`, 'Enable it in the EventBridge Scheduler console, or deploy the stack again (npx cdk deploy) to restore its state.')];
  }
  if (functionName && schedule.Target?.Arn && !schedule.Target.Arn.includes(`:function:${functionName}`)) {
    return [fail(name, `schedule ${scheduleName} targets ${schedule.Target.Arn}, not the function ${functionName}`, 'Deploy the stack again (npx cdk deploy).')];
  }
  const now = new Date(options.now());
  if (schedule.EndDate && schedule.EndDate.getTime() <= now.getTime()) {
    return [fail(name, `schedule ${scheduleName} ended on ${schedule.EndDate.toISOString()}`, 'Remove its end date, or deploy the stack again.')];
  }
  const next = nextRuns(expression, zone, schedule.StartDate && schedule.StartDate > now ? schedule.StartDate : now);
  const run = next?.runs[0];
  if (!run) return [warn(name, `schedule ${scheduleName} is enabled: ${expression} in ${zone} (next run not computable from this expression)`)];
  const local = wallClock(run, zone);
  const gap = next.skipped.filter((s) => s < run).map((s) => `${wallClock(s, zone).date} is skipped (that time does not exist in ${zone} that night)`);
  return [
    pass(
      name,
      `schedule ${scheduleName} is enabled: ${expression} in ${zone}; next run ${local.text} ${zone} (${run.toISOString().slice(0, 16).replace('T', ' ')} UTC), in ${humanDelay(run.getTime() - now.getTime())}${gap.length ? `; ${gap.join('; ')}` : ''}`,
    ),
  ];
}
