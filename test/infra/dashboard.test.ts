/**
 * The stack's CloudWatch dashboard (issue 25 item 4), read from the synthesized template: a row of
 * widgets per named database on the engine's metrics (hours since the last success, dump size and
 * duration, the last drill and its duration), the runner from the logs, every alarm of the stack
 * by state, and its URL as a stack output; cdk-nag stays clean.
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../infra/app.ts';

const SECRET = 'arn:aws:secretsmanager:eu-west-3:123456789012:secret:prod/db-AbCdEf';
const FIXTURES = fileURLToPath(new URL('fixtures/', import.meta.url));
const FIXTURE_ENTRY = 'test/infra/fixtures/handler.ts';

interface Widget {
  readonly type: string;
  readonly width: number;
  readonly properties: { readonly title?: string; readonly view?: string; readonly metrics?: unknown[][]; readonly alarms?: string[]; readonly query?: string; readonly markdown?: string };
}
interface Synth {
  readonly app: App;
  readonly json: { Resources: Record<string, { Type: string; Properties: Record<string, unknown> }>; Outputs: Record<string, { Value: unknown }> };
  readonly widgets: readonly Widget[];
}

function synth(context: Record<string, unknown>): Synth {
  const { app, stack } = buildApp({
    context: { dbSecretArn: SECRET, ...context },
    layerDir: resolve(FIXTURES, 'layer', 'arm64'),
    serverLayerDir: resolve(FIXTURES, 'server-layer', 'arm64'),
    entry: FIXTURE_ENTRY,
    drillEntry: FIXTURE_ENTRY,
    now: new Date('2026-01-01T00:00:00Z'),
  });
  const json = Template.fromStack(stack).toJSON() as Synth['json'];
  const dashboards = Object.values(json.Resources).filter((r) => r.Type === 'AWS::CloudWatch::Dashboard');
  expect(dashboards).toHaveLength(1);
  // The body is an Fn::Join of JSON text and tokens (region, ARNs, names): tokens become "TOKEN".
  const body = dashboards[0]!.Properties.DashboardBody as { 'Fn::Join': [string, unknown[]] } | string;
  const text = typeof body === 'string' ? body : body['Fn::Join'][1].map((p) => (typeof p === 'string' ? p : 'TOKEN')).join('');
  return { app, json, widgets: (JSON.parse(text) as { widgets: Widget[] }).widgets };
}

const titled = (s: Synth, title: string) => s.widgets.filter((w) => w.properties.title === title);
/** The metrics of a widget as [metric name, dimension value] pairs (expressions as their text). */
const metricsOf = (w: Widget) => (w.properties.metrics ?? []).map((m) => (typeof m[0] === 'object' ? String((m[0] as { expression: string }).expression) : `${String(m[1])} ${String(m[3])}`));

describe('the dashboard, with named databases and the nightly drill', () => {
  let s: Synth;
  beforeAll(() => {
    s = synth({ databases: 'app,billing', drillSchedule: 'nightly' });
  });

  it('has a row per database: hours since the last success (BackupSucceeded), dump size, dump duration, the last drill and its duration', () => {
    for (const db of ['app', 'billing']) {
      const [since] = titled(s, `${db}: hours since the last success`);
      expect(since).toMatchObject({ properties: { view: 'singleValue' } });
      expect(metricsOf(since!)).toEqual(['(EPOCH(FILL(ok, 0)) - MAX(IF(ok > 0, EPOCH(ok), 0))) / 3600', `BackupSucceeded ${db}`]);
      expect(since!.properties.metrics![1]).toEqual(['PgS3Backup', 'BackupSucceeded', 'Database', db, { stat: 'Sum', period: 3600, id: 'ok', label: 'successes', visible: false }]);
      expect(metricsOf(titled(s, `${db}: dump size (30 days)`)[0]!)).toEqual([`BackupBytes ${db}`]);
      expect(metricsOf(titled(s, `${db}: dump duration (30 days)`)[0]!)).toEqual([`BackupDurationMs ${db}`]);
      expect(metricsOf(titled(s, `${db}: last restore drill`)[0]!)).toEqual([`DrillSucceeded ${db}`, `DrillFailed ${db}`, `DrillDurationMs ${db}`]);
    }
    expect(s.widgets.filter((w) => w.type === 'metric')).toHaveLength(8);
  });

  it('shows every alarm of the stack by state, and the runner of each database\'s last backup from the function\'s logs', () => {
    const alarms = Object.entries(s.json.Resources).filter(([, r]) => r.Type === 'AWS::CloudWatch::Alarm');
    // backup: errors, duration, failure queue, a dead-man per database; drill: errors, a dead-man per database.
    expect(alarms).toHaveLength(8);
    const [status] = s.widgets.filter((w) => w.type === 'alarm');
    expect(status!.properties.alarms).toHaveLength(alarms.length);
    const [runner] = s.widgets.filter((w) => w.type === 'log');
    expect(runner!.properties.title).toBe('Runner of each database\'s last backup (lambda log group)');
    expect(runner!.properties.query).toMatch(/^SOURCE 'TOKEN' \| fields @timestamp, @log, coalesce\(message, event\) as what\n\| filter what = "backup complete"\n\| stats max\(@timestamp\) as lastBackup by database, @log as logGroup/);
  });

  it('outputs its console URL', () => {
    const dashboard = Object.entries(s.json.Resources).find(([, r]) => r.Type === 'AWS::CloudWatch::Dashboard')![0];
    expect(s.json.Outputs.DashboardUrl!.Value).toEqual({
      'Fn::Join': ['', ['https://console.aws.amazon.com/cloudwatch/home?region=', { Ref: 'AWS::Region' }, '#dashboards/dashboard/', { Ref: dashboard }]],
    });
  });

  it('keeps cdk-nag clean', () => {
    expect(new AwsSolutionsChecks().validateScope(s.app).violations).toEqual([]);
  });
});

describe('the dashboard without database names', () => {
  it('graphs every database the metrics name (SEARCH), and leaves the drill out when there is none', () => {
    const s = synth({ drillSchedule: 'off' });
    expect(s.widgets.filter((w) => w.type === 'metric').map((w) => [w.properties.title, metricsOf(w)])).toEqual([
      ['Successful backups per day, by database', ['SEARCH(\'{PgS3Backup,Database} MetricName="BackupSucceeded"\', \'Sum\', 86400)']],
      ['Dump size by database (30 days)', ['SEARCH(\'{PgS3Backup,Database} MetricName="BackupBytes"\', \'Maximum\', 86400)']],
      ['Dump duration (ms) by database (30 days)', ['SEARCH(\'{PgS3Backup,Database} MetricName="BackupDurationMs"\', \'Maximum\', 86400)']],
    ]);
  });
});
