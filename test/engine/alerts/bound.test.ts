/**
 * Every alert gives up within ALERT_TIMEOUT_SECONDS, whoever sends it: an SNS endpoint that takes
 * the request and never answers (a dead NAT, a filtering firewall) costs one alert, never more than
 * the configured bound. Before engine/alerts/, only the backup run's three alerts passed the bound:
 * the fan-out summary, the drill's alerts and host mode's `pg-s3-backup alert` waited the default.
 */
import { S3Client } from '@aws-sdk/client-s3';
import { SNSClient } from '@aws-sdk/client-sns';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { summarizeRun } from '../../../engine/backup/fanout.ts';
import { loadConfig, type Env } from '../../../engine/config.ts';
import { awsClientOptions, createDeps } from '../../../engine/deps.ts';
import type { EngineEvent } from '../../../engine/events.ts';
import { runDrillFromConfig } from '../../../engine/restore/drill-run.ts';
import { TEST_REGION } from '../../support/aws.ts';
import { baseEnv, runCli } from '../../support/cli.ts';
import { ensureLayer } from '../../support/layer.ts';
import { startFaultProxy, type FaultProxy } from '../../support/fault-proxy.ts';

const TOPIC = 'arn:aws:sns:us-east-1:123456789012:alerts';
const credentials = { accessKeyId: 'testing', secretAccessKey: 'testing' };
/** The bound under test, far below the documented default (10 s) so that a default would show. */
const BOUND_SECONDS = 1;
/** Generous for a loaded machine, still well under the default bound. */
const WITHIN_MS = 5_000;

let proxy: FaultProxy;
let dir: string;
let dumpLayer: string;

beforeAll(async () => {
  // Nothing behind it: SNS's Publish (a POST) is black-holed, anything else (S3's listing) reset.
  proxy = await startFaultProxy('http://127.0.0.1:9');
  proxy.setRule((req) => (req.method === 'POST' ? 'blackhole' : 'reset'));
  dir = mkdtempSync(join(tmpdir(), 'pgs3b-alert-bound-'));
  dumpLayer = await ensureLayer();
});
afterAll(async () => {
  await proxy?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A production configuration (AWS timeouts at their defaults: 120 s per request, 3 attempts) with ALERT_TIMEOUT_SECONDS=1. */
function engineSetup(extra: Env = {}) {
  const config = loadConfig({ BACKUP_BUCKET: 'bucket', ALERT_TOPIC_ARN: TOPIC, ALERT_TIMEOUT_SECONDS: String(BOUND_SECONDS), ...extra }, { requireCredentials: false });
  const client = { region: TEST_REGION, credentials, endpoint: proxy.endpoint, ...awsClientOptions(config.aws) };
  const events: EngineEvent[] = [];
  const deps = createDeps(config, {
    sns: new SNSClient(client),
    s3: new S3Client({ ...client, forcePathStyle: true, maxAttempts: 1 }),
    events: (e) => void events.push(e),
  });
  return { config, deps, events };
}

const publishes = () => proxy.log.filter((l) => l.request.method === 'POST').length;

describe('an alert to an SNS endpoint that never answers gives up within ALERT_TIMEOUT_SECONDS', () => {
  it('the fan-out summary', async () => {
    const { config, deps, events } = engineSetup();
    const before = publishes();
    const t0 = Date.now();
    const summary = await summarizeRun([{ database: 'app', runner: 'lambda', ok: false, error: 'States.TaskFailed', cause: 'boom' }], config, deps);
    const ms = Date.now() - t0;
    expect(publishes()).toBeGreaterThan(before);
    expect(summary.published).toBe(false);
    expect(events.map((e) => e.event)).toContain('alert.publish-failed');
    expect(ms).toBeLessThan(WITHIN_MS);
  });

  it("the drill's alert (databases it did not reach)", async () => {
    const { config, deps, events } = engineSetup({ DATABASES: 'app', PG_DUMP_BIN: join(dumpLayer, 'bin', 'pg_dump') });
    const before = publishes();
    const t0 = Date.now();
    // Less time left than a drill needs to start: one alert names the database it did not reach.
    const run = await runDrillFromConfig(config, deps, { remainingTimeMs: () => 1_000, tempDir: dir });
    const ms = Date.now() - t0;
    expect(run.notReached).toEqual(['app']);
    expect(publishes()).toBeGreaterThan(before);
    const failed = events.find((e) => e.event === 'alert.publish-failed');
    expect(failed && 'subject' in failed ? failed.subject : undefined).toMatch(/drill/i);
    expect(ms).toBeLessThan(WITHIN_MS);
  });

  it("host mode's `pg-s3-backup alert`", async () => {
    const run = await runCli(['alert', '--stage', 'lock', '--message', 'another backup is still running'], {
      ...baseEnv(),
      AWS_ENDPOINT_URL: proxy.endpoint,
      AWS_REGION: TEST_REGION,
      AWS_ACCESS_KEY_ID: credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
      ALERT_TOPIC_ARN: TOPIC,
      ALERT_TIMEOUT_SECONDS: String(BOUND_SECONDS),
    });
    expect(run.code, run.stderr).toBe(1);
    expect(run.result).toMatchObject({ alerted: false, pinged: null });
    // From the alert's own time (written when it was made) to the line saying SNS failed: the
    // delivery alone, whatever the program's start-up cost.
    const failed = run.events.find((e) => e.event === 'alert.publish-failed');
    expect(failed, run.stdout).toBeDefined();
    const madeAt = /Time: (\S+)/.exec(String(failed!.alert))?.[1];
    expect(Date.parse(String(failed!.time)) - Date.parse(madeAt ?? '')).toBeLessThan(WITHIN_MS);
  });
});
