/**
 * The fleet mode's template: the schedule starts the state machine, the Map runs each database on
 * its runner with bounded concurrency, retries and a Catch, the Fargate task runs the same engine
 * in the function's network with the function's data permissions, and the fan-out's own failures
 * alarm to the topic. cdk-nag stays clean. The definition itself is executed in
 * test/engine/backup/fanout.test.ts.
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { describe, expect, it } from 'vitest';
import { buildApp } from '../../infra/app.ts';
import { parseConfig } from '../../infra/config.ts';
import { STATE_NAMES } from '../../infra/constructs/fan-out.ts';

const SECRET = 'arn:aws:secretsmanager:eu-west-3:123456789012:secret:prod/db-AbCdEf';
const FIXTURES = fileURLToPath(new URL('fixtures/', import.meta.url));
const NETWORK = { vpcId: 'vpc-0123456789abcdef0', subnetIds: ['subnet-0123456789abcdef0', 'subnet-0fedcba9876543210'] };
const now = new Date('2026-01-01T00:00:00Z');

function synth(context: Record<string, unknown>) {
  const { app, stack } = buildApp({
    context: { dbSecretArn: SECRET, drillSchedule: 'off', ...context },
    layerDir: resolve(FIXTURES, 'layer', 'arm64'),
    now,
    entry: 'test/infra/fixtures/handler.ts',
  });
  return { app, template: Template.fromStack(stack) };
}

function definitionOf(template: Template): { States: Record<string, Record<string, unknown>> } {
  const sm = Object.values(template.findResources('AWS::StepFunctions::StateMachine'))[0] as { Properties: { DefinitionString: unknown } };
  // The definition is a Fn::Join of literal text and ARNs: the ARNs are irrelevant to its shape.
  const parts = (sm.Properties.DefinitionString as { 'Fn::Join': [string, unknown[]] })['Fn::Join'][1];
  return JSON.parse(parts.map((p) => (typeof p === 'string' ? p : 'ARN')).join('')) as { States: Record<string, Record<string, unknown>> };
}

describe('fan-out (runner=auto, databases=*)', () => {
  const { app, template } = synth({ ...NETWORK, runner: 'auto', databases: '*', databaseExclude: 'scratch_*', maxConcurrency: 3 });
  const definition = definitionOf(template);

  it('has the schedule start a Standard state machine instead of invoking the function', () => {
    template.hasResourceProperties('AWS::StepFunctions::StateMachine', { StateMachineType: 'STANDARD' });
    template.hasResourceProperties('AWS::Scheduler::Schedule', { Target: { Arn: { Ref: Match.stringLikeRegexp('FanOutStateMachine') } } });
  });

  it('plans, maps each database with MaxConcurrency, retries transient errors and catches every failure, then summarizes', () => {
    const map = definition.States[STATE_NAMES.map] as { MaxConcurrency: number; ItemsPath: string; ItemProcessor: { States: Record<string, Record<string, unknown>> } };
    expect(map.MaxConcurrency).toBe(3);
    expect(map.ItemsPath).toBe('$.plan.backups');
    const inner = map.ItemProcessor.States;
    for (const name of [STATE_NAMES.lambda, STATE_NAMES.fargate]) {
      // Every failure ends described (its cause bounded by the function), never lost.
      expect((inner[name]?.Catch as { ErrorEquals: string[]; Next: string }[]).at(-1)).toEqual(expect.objectContaining({ ErrorEquals: ['States.ALL'], Next: STATE_NAMES.describe }));
      // One retrier each (not CDK's default one besides), with backoff and jitter, never for States.ALL.
      expect(inner[name]?.Retry).toEqual([expect.objectContaining({ BackoffRate: 2, JitterStrategy: 'FULL', MaxAttempts: 3 })]);
      expect((inner[name]?.Retry as { ErrorEquals: string[] }[])[0]!.ErrorEquals).not.toContain('States.ALL');
    }
    expect((inner[STATE_NAMES.fargate]?.Retry as { ErrorEquals: string[] }[])[0]!.ErrorEquals).toContain('AmazonECS.Unknown');
    expect(inner[STATE_NAMES.describe]?.Catch).toEqual([expect.objectContaining({ ErrorEquals: ['States.ALL'], Next: STATE_NAMES.failed })]);
    expect(inner[STATE_NAMES.fargate]?.Resource).toBe('arn:ARN:states:::ecs:runTask.sync');
    expect(definition.States[STATE_NAMES.summarize]?.Next).toBe(STATE_NAMES.allOk);
  });

  it('runs the Fargate task with the engine, on arm64, in the function\'s subnets and security group, with its own role', () => {
    template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      RuntimePlatform: { CpuArchitecture: 'ARM64', OperatingSystemFamily: 'LINUX' },
      EphemeralStorage: { SizeInGiB: 21 },
      ContainerDefinitions: [
        Match.objectLike({
          Command: ['run'],
          ReadonlyRootFilesystem: true,
          Environment: Match.arrayWith([{ Name: 'DATABASES', Value: '*' }, { Name: 'DATABASE_EXCLUDE', Value: 'scratch_*' }, { Name: 'RUN_TIMEOUT_SECONDS', Value: String(6 * 3600) }]),
        }),
      ],
    });
    const run = definition.States[STATE_NAMES.map] as { ItemProcessor: { States: Record<string, { Parameters: { NetworkConfiguration: { AwsvpcConfiguration: { Subnets: string[] } } } }> } };
    expect(run.ItemProcessor.States[STATE_NAMES.fargate]!.Parameters.NetworkConfiguration.AwsvpcConfiguration.Subnets).toEqual(NETWORK.subnetIds);
    // The task role holds exactly the function's data statements, and puts the backup metrics.
    const taskPolicy = Object.entries(template.findResources('AWS::IAM::Policy')).find(([id]) => id.startsWith('FargateTaskPolicy'))![1] as { Properties: { PolicyDocument: { Statement: { Sid: string }[] } } };
    expect(taskPolicy.Properties.PolicyDocument.Statement.map((s) => s.Sid).sort()).toEqual(['BackupObjects', 'EncryptAlerts', 'EncryptBackups', 'ListBackups', 'ListStaleUploads', 'PublishAlerts', 'PutBackupMetrics', 'ReadBucketObjectLock', 'ReadDatabaseSecret']);
  });

  it('alarms to the topic when an execution fails, times out or is aborted, and when no night succeeded in 26 hours', () => {
    for (const metric of ['ExecutionsFailed', 'ExecutionsTimedOut', 'ExecutionsAborted', 'ExecutionsSucceeded']) {
      template.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: metric, Namespace: 'AWS/States', AlarmActions: [{ Ref: Match.stringLikeRegexp('AlertsTopic') }] });
    }
  });

  it('passes the function the discovery and runner settings', () => {
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ DATABASES: '*', DATABASE_EXCLUDE: 'scratch_*', RUNNER: 'auto' }) },
    });
  });

  it('is cdk-nag clean', () => {
    expect(new AwsSolutionsChecks().validateScope(app).violations.map((v) => v.ruleName)).toEqual([]);
  });
});

describe('fan-out (runner=lambda, databases=*)', () => {
  it('is cdk-nag clean without a Fargate runner too (the state machine\'s X-Ray tracing writes Resource::*)', () => {
    const { app } = synth({ runner: 'lambda', databases: '*' });
    expect(new AwsSolutionsChecks().validateScope(app).violations.map((v) => `${v.ruleName} ${v.violatingResources.map((r) => r.constructPath).join(',')}`)).toEqual([]);
  });
});

describe('fan-out configuration', () => {
  const errorOf = (context: Record<string, unknown>): string => {
    try {
      parseConfig({ dbSecretArn: SECRET, ...context }, { now });
      return '';
    } catch (err) {
      return (err as Error).message;
    }
  };

  it('keeps the single invocation by default, and turns the fan-out on with databases=* or another runner', () => {
    expect(parseConfig({ dbSecretArn: SECRET, databases: 'app,billing' }, { now }).fanOut).toBeUndefined();
    expect(parseConfig({ dbSecretArn: SECRET, databases: '*' }, { now }).fanOut).toEqual({ runner: 'lambda', maxConcurrency: 4 });
    expect(parseConfig({ dbSecretArn: SECRET, ...NETWORK, runner: 'fargate' }, { now }).fanOut?.fargate).toEqual({ cpu: 1024, memoryMiB: 2048, ephemeralStorageGiB: 21, timeoutHours: 6 });
  });

  it.each([
    [{ runner: 'fargate' }, /context "runner": `fargate` needs "vpcId"/],
    [{ ...NETWORK, runner: 'auto', fanOut: false }, /"fanOut" is false/],
    [{ databaseInclude: 'app*' }, /need databases="\*"/],
    [{ databases: '*,app' }, /"\*" .* stands alone/],
    [{ maxConcurrency: 0 }, /context "maxConcurrency"/],
    [{ ...NETWORK, runner: 'fargate', fargateCpu: 300 }, /context "fargateCpu"/],
  ])('rejects %j naming the key', (context, pattern) => {
    expect(errorOf(context)).toMatch(pattern);
  });
});
