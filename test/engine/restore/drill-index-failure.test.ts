/**
 * The drill when only an index fails to build (issue 22, item 10): a functional index whose
 * function reads another table without its schema cannot be built under pg_restore's empty
 * search_path. The drill said every table was "missing"; it must name what failed (pg_restore's
 * error) and count the rows that were restored, against the drill handler, moto and the layers.
 * The source is PostgreSQL 15: from 17 on, CREATE INDEX itself runs functions under a safe
 * search_path, so such an index exists only in databases from older servers (or upgraded ones).
 */
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runBackup } from '../../../engine/backup/backup.ts';
import { loadConfig } from '../../../engine/config.ts';
import { createDeps } from '../../../engine/deps.ts';
import { noMetrics, silentLog } from '../../../lambda/powertools.ts';
import { ignoreEvents } from '../../../engine/events.ts';
import { verifyReportKeyFor, type DrillDatabaseReport } from '../../../engine/restore/drill.ts';
import { createDrillHandler, DrillFailedError } from '../../../lambda/drill-handler.ts';
import { awsEnv, createAlertInbox, type AlertInbox, type TestClients } from '../../support/aws.ts';
import { createDatabase } from '../../support/fixtures.ts';
import type { TestAws } from '../../support/moto.ts';
import type { TestPostgres } from '../../support/postgres.ts';
import { startDrillServices, type DrillServices } from '../../support/services.ts';

let pgsrv: TestPostgres;
let aws: TestAws;
let c: TestClients;
let serverLayer: string;
let bucket: string;
let inbox: AlertInbox;
let tempDir: string;
let env: Record<string, string>;
let key: string;

let svc: DrillServices | undefined;

beforeAll(async () => {
  svc = await startDrillServices('drill-index', { major: 15 });
  ({ pg: pgsrv, aws, c, bucket, serverLayer, tempDir } = svc);
  const dumpLayer = svc.layer;
  inbox = await createAlertInbox(c);
  await createDatabase(pgsrv, 'catalog');
  await pgsrv.query(
    `create table lookup (code text primary key, label text);
     insert into lookup select 'c' || g, 'label ' || g from generate_series(1, 50) g;
     create table items (id int primary key, code text);
     insert into items select g, 'c' || (1 + g % 50) from generate_series(1, 700) g;
     create function label_of(text) returns text language sql immutable as 'select label from lookup where code = $1';
     create index items_label on items (label_of(code));`,
    [],
    'catalog',
  );
  env = {
    ...awsEnv(aws.endpoint),
    DATABASE_URL: pgsrv.urlFor('catalog'),
    BACKUP_BUCKET: bucket,
    ALERT_TOPIC_ARN: inbox.topicArn,
    PG_DUMP_BIN: join(dumpLayer, 'bin', 'pg_dump'),
    DATABASES: 'catalog',
  };
  const config = loadConfig(env);
  const result = await runBackup({ reason: 'drill index test' }, config, createDeps(config, { events: ignoreEvents }));
  expect(result.status, JSON.stringify(result.failures)).toBe('succeeded');
  key = result.backups[0]!.key;
}, 900_000);

afterAll(async () => {
  await svc?.stop();
});

it('names the index pg_restore could not build, and counts every table\'s rows (it said all were missing)', async () => {
  const { DATABASE_URL: _url, ...rest } = env;
  const handler = createDrillHandler({ ...rest, PG_SERVER_LAYER: serverLayer }, { log: silentLog, metrics: noMetrics }, { tempDir });
  await expect(handler({ source: 'aws.scheduler', 'detail-type': 'Scheduled Event' }, { awsRequestId: 'req-drill-index' })).rejects.toBeInstanceOf(DrillFailedError);
  const res = await c.s3.send(new GetObjectCommand({ Bucket: bucket, Key: verifyReportKeyFor(key) }));
  const report = JSON.parse(await res.Body!.transformToString()) as DrillDatabaseReport;
  expect(report.status).toBe('failed');
  expect(report.tables.map((t) => [`${t.schema}.${t.table}`, t.expectedRows, t.restoredRows, t.ok])).toEqual([
    ['public.items', 700, 700, true],
    ['public.lookup', 50, 50, true],
  ]);
  expect(report.failingTables).toEqual([]);
  expect(report.problems).toEqual([
    expect.objectContaining({ stage: 'restore', message: expect.stringMatching(/relation "lookup" does not exist[\s\S]*INDEX items_label/) }),
  ]);
  const [alert] = await inbox.receive(1);
  expect(alert!.message).toMatch(/relation "lookup" does not exist/);
  expect(alert!.message).not.toMatch(/missing after the restore/);
  expect(readdirSync(tempDir)).toEqual([]);
});
