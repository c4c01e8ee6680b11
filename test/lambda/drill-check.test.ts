/**
 * The drill function's check mode (`{"check": true}`, what `pg-s3-backup doctor` sends on deploy
 * day) against the real pg-server layer and moto: the throwaway server is initialised, started
 * (shared memory) and stopped, and a database is created in each locale the bucket's newest drill
 * reports name; a locale the server cannot create fails naming the databases that use it and what
 * to do; a database never drilled is a warning. Nothing is left in the temporary folder.
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { chmodSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { noMetrics, silentLog } from '../../lambda/powertools.ts';
import { buildDumpKey, manifestKeyFor, verifyReportKeyFor } from '../../engine/store/backup-key.ts';
import { createDrillHandler } from '../../lambda/drill-handler.ts';
import { awsEnv, createAlertInbox, createBucket, testClients, type AlertInbox, type TestClients } from '../support/aws.ts';
import { ensureServerLayer } from '../support/layer.ts';
import { startMoto, type TestAws } from '../support/moto.ts';

let aws: TestAws;
let c: TestClients;
let bucket: string;
let inbox: AlertInbox;
let serverLayer: string;
let tempDir: string;
const PREFIX = 'backups/';

/** A complete backup of `database` (dump and manifest) and, when given, its drill report's locale. */
async function seed(database: string, locale?: { encoding: string; locale: string }): Promise<void> {
  const key = buildDumpKey(PREFIX, database, new Date('2026-12-01T01:00:00Z'));
  const put = (Key: string, Body: string) => c.s3.send(new PutObjectCommand({ Bucket: bucket, Key, Body }));
  await put(key, 'PGDMP');
  await put(manifestKeyFor(key), '{}');
  if (locale) await put(verifyReportKeyFor(key), JSON.stringify({ kind: 'pg-s3-backup restore drill', status: 'ok', database, drilledAt: '2026-12-01T02:00:00Z', verify: { status: 'ok', ...locale } }));
}

beforeAll(async () => {
  [aws, serverLayer] = await Promise.all([startMoto(), ensureServerLayer('x86_64')]);
  c = testClients(aws.endpoint);
  bucket = await createBucket(c);
  Object.assign(process.env, awsEnv(aws.endpoint)); // the SDK's default clients (createDeps) read it
  inbox = await createAlertInbox(c);
  tempDir = mkdtempSync(join(tmpdir(), 'pgs3b-drill-check-'));
  chmodSync(tempDir, 0o711); // as root the throwaway server runs as nobody (as in /tmp)
  await seed('shop', { encoding: 'UTF8', locale: 'libc:C.UTF-8' });
  await seed('billing', { encoding: 'UTF8', locale: 'icu:de-DE' });
  await seed('ledger', { encoding: 'UTF8', locale: 'icu:de-DE' });
  await seed('legacy', { encoding: 'UTF8', locale: 'libc:xx_YY.UTF-8' });
  await seed('fresh');
}, 900_000); // the first run builds the pg-server layer (up to 6 minutes cold, on a busy machine)

afterAll(async () => {
  await aws?.stop();
  if (tempDir) rmSync(tempDir, { recursive: true, force: true });
});

it('starts and stops the throwaway server, creates a database in each locale of the bucket, and says what to do about the one it cannot', async () => {
  const env = { ...awsEnv(aws.endpoint), BACKUP_BUCKET: bucket, BACKUP_PREFIX: PREFIX, ALERT_TOPIC_ARN: inbox.topicArn, PG_SERVER_LAYER: serverLayer };
  const handler = createDrillHandler(env, { log: silentLog, metrics: noMetrics }, { tempDir });
  const result = await handler({ check: true }, { awsRequestId: 'req-drill-check' });

  expect(result.status).toBe('checked');
  expect(result.ok).toBe(false);
  const byName = new Map(result.checks.map((ch) => [ch.name, ch]));
  expect(byName.get('throwaway server: initdb and start (shared memory)')).toMatchObject({ status: 'ok', detail: expect.stringMatching(/^PostgreSQL started in \d+ ms/) });
  expect(byName.get('locale libc:C.UTF-8 (UTF8)')).toMatchObject({ status: 'ok', detail: expect.stringMatching(/created and dropped \(used by shop\)/) });
  expect(byName.get('locale icu:de-DE (UTF8)')).toMatchObject({ status: 'ok', detail: expect.stringMatching(/used by billing, ledger/) });
  expect(byName.get('locale libc:xx_YY.UTF-8 (UTF8)')).toMatchObject({ status: 'fail', detail: expect.stringMatching(/xx_YY\.UTF-8.*\(used by legacy\)/), fix: expect.stringMatching(/verify --latest --database <name> --local/) });
  expect(byName.get('locales of the bucket\'s databases')).toMatchObject({ status: 'warn', detail: expect.stringMatching(/no drill report yet for fresh/) });
  expect(byName.get('throwaway server: stopped, folder removed')).toMatchObject({ status: 'ok' });
  // Nothing drilled, nothing alerted, nothing left behind.
  expect(await inbox.receive(0, 0)).toEqual([]);
  expect(readdirSync(tempDir)).toEqual([]);
});

it('a server that cannot start fails the check with what to do, and the locales are not checked', async () => {
  const env = { ...awsEnv(aws.endpoint), BACKUP_BUCKET: bucket, BACKUP_PREFIX: PREFIX, ALERT_TOPIC_ARN: inbox.topicArn, PG_SERVER_LAYER: join(tempDir, 'no-such-layer') };
  const result = await createDrillHandler(env, { log: silentLog, metrics: noMetrics }, { tempDir })({ check: true }, { awsRequestId: 'req-drill-check-2' });
  expect(result.ok).toBe(false);
  expect(result.checks.find((ch) => ch.name.startsWith('throwaway server: initdb'))).toMatchObject({ status: 'fail', fix: expect.stringMatching(/shared memory.*pg-server layer/s) });
  expect(result.checks.filter((ch) => ch.name.startsWith('locale ')).every((ch) => ch.status === 'fail' && /not checked/.test(ch.detail))).toBe(true);
  expect(readdirSync(tempDir)).toEqual([]);
});
