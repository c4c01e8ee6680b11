/**
 * `pg-s3-backup doctor` on the deployed stack asks the drill function to prove itself: it invokes
 * it with `{"check": true}` and reports each of its checks (✓/✗ and what to do) under `drill:`.
 * AWS is emulated through doctor's clients (the drill function's own side runs against the real
 * layer in test/lambda/drill-check.test.ts); a drill function deployed before check mode fails
 * with "deploy this version", and a stack without a drill has no drill checks.
 */
import { DescribeStacksCommand, ListStackResourcesCommand } from '@aws-sdk/client-cloudformation';
import { DescribeAlarmsCommand } from '@aws-sdk/client-cloudwatch';
import { InvokeCommand } from '@aws-sdk/client-lambda';
import { GetScheduleCommand } from '@aws-sdk/client-scheduler';
import { ListSubscriptionsByTopicCommand } from '@aws-sdk/client-sns';
import { describe, expect, it } from 'vitest';
import { fail, pass, warn } from '../../engine/check/check.ts';
import { formatReport } from '../../cli/doctor.ts';
import { deployedChecks, type DoctorClients } from '../../cli/doctor-aws.ts';
import { report } from '../../engine/check/check.ts';

const TOPIC = 'arn:aws:sns:eu-west-3:123456789012:alerts';
const now = Date.parse('2026-12-06T10:00:00Z');

/** The stack's AWS, emulated: `drill` answers the drill function's invocations. */
function clients(drill: ((payload: unknown) => { FunctionError?: string; body: unknown }) | undefined, invoked: { name: string; payload: unknown }[]): DoctorClients {
  const outputs = [
    ['FunctionName', 'pg-s3-backup-fn'],
    ['AlertTopicArn', TOPIC],
    ['BucketName', 'backups'],
    ['BackupPrefix', ''],
    ['ScheduleName', 'nightly'],
    ...(drill ? [['DrillFunctionName', 'pg-s3-backup-drill']] : []),
  ].map(([OutputKey, OutputValue]) => ({ OutputKey, OutputValue }));
  const send = async (command: unknown): Promise<unknown> => {
    if (command instanceof DescribeStacksCommand) return { Stacks: [{ StackName: 'PgS3Backup', StackStatus: 'UPDATE_COMPLETE', Outputs: outputs }] };
    if (command instanceof ListStackResourcesCommand) return { StackResourceSummaries: [] };
    if (command instanceof ListSubscriptionsByTopicCommand) return { Subscriptions: [{ Protocol: 'email', Endpoint: 'ops@example.com', SubscriptionArn: `${TOPIC}:1` }] };
    if (command instanceof DescribeAlarmsCommand) return { MetricAlarms: [{ AlarmName: 'dead-man', AlarmActions: [TOPIC], OKActions: [TOPIC], ActionsEnabled: true, StateValue: 'OK' }] };
    if (command instanceof GetScheduleCommand) return { State: 'ENABLED', ScheduleExpression: 'cron(0 2 * * ? *)', ScheduleExpressionTimezone: 'UTC', Target: { Arn: 'arn:aws:lambda:eu-west-3:123456789012:function:pg-s3-backup-fn' } };
    if (command instanceof InvokeCommand) {
      const name = command.input.FunctionName!;
      const payload = JSON.parse(Buffer.from(command.input.Payload as Uint8Array).toString('utf8')) as unknown;
      invoked.push({ name, payload });
      const answer = name === 'pg-s3-backup-drill' ? drill!(payload) : { body: { status: 'checked', ...report([pass('database app: connect', 'ok')]) } };
      return { StatusCode: 200, ...(answer.FunctionError ? { FunctionError: answer.FunctionError } : {}), Payload: Buffer.from(JSON.stringify(answer.body)) };
    }
    throw new Error(`unexpected command ${(command as object).constructor.name}`);
  };
  const client = { send } as never;
  return { cloudformation: client, lambda: client, sns: client, cloudwatch: client, scheduler: client };
}

const options = { stackName: 'PgS3Backup', alarmTest: false, alarmTimeoutMs: 1000, now: () => now };

describe('doctor: the deployed drill proves itself', () => {
  it('invokes the drill function with {"check": true} and reports its checks under "drill:", with what to do', async () => {
    const invoked: { name: string; payload: unknown }[] = [];
    const drillAnswer = report([
      pass('throwaway server: initdb and start (shared memory)', 'PostgreSQL started in 812 ms from /tmp/pgs3-server-x'),
      fail('locale libc:en_US.UTF-8 (UTF8)', 'invalid locale name: "en_US.UTF-8" (used by app)', 'The pg-server layer ships no libc locale files: drill it from a host'),
      warn('locales of the bucket\'s databases', 'no drill report yet for fresh'),
      pass('throwaway server: stopped, folder removed', '/tmp/pgs3-server-x removed'),
    ]);
    const checks = await deployedChecks(clients(() => ({ body: { status: 'checked', ...drillAnswer } }), invoked), options);
    expect(invoked).toContainEqual({ name: 'pg-s3-backup-drill', payload: { check: true } });
    const text = formatReport(report(checks), 'pg-s3-backup doctor: stack PgS3Backup');
    expect(text).toContain('✓ drill: throwaway server: initdb and start (shared memory): PostgreSQL started in 812 ms');
    expect(text).toMatch(/✗ drill: locale libc:en_US\.UTF-8 \(UTF8\): invalid locale name.*\n {4}what to do: The pg-server layer ships no libc locale files/);
    expect(text).toContain('✓ drill: throwaway server: stopped, folder removed');
    expect(report(checks).ok).toBe(false);
  });

  it('a drill function deployed before check mode fails with "deploy this version"; one that cannot start its server says why', async () => {
    const old = await deployedChecks(clients(() => ({ FunctionError: 'Unhandled', body: { errorType: 'RequestError', errorMessage: 'invalid drill event: Unrecognized key: "check"' } }), []), options);
    expect(old.find((c) => c.name === 'drill: check mode')).toMatchObject({ status: 'fail', fix: expect.stringMatching(/predates check mode: deploy this version/) });

    const crashed = await deployedChecks(clients(() => ({ FunctionError: 'Unhandled', body: { errorType: 'Runtime.ExitError', errorMessage: 'RequestId: 1 Error: Runtime exited with error: signal: killed' } }), []), options);
    expect(crashed.find((c) => c.name === 'drill: check mode')).toMatchObject({ status: 'fail', detail: expect.stringMatching(/pg-s3-backup-drill failed: Runtime\.ExitError/) });
  });

  it('a stack without a drill function has no drill checks', async () => {
    const invoked: { name: string; payload: unknown }[] = [];
    const checks = await deployedChecks(clients(undefined, invoked), options);
    expect(checks.filter((c) => c.name.startsWith('drill:'))).toEqual([]);
    expect(invoked.map((i) => i.name)).toEqual(['pg-s3-backup-fn']);
  });
});
