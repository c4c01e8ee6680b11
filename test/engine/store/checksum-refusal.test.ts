/**
 * A store that implements no checksum at all: 501 NotImplemented to every `x-amz-checksum-*`
 * header, `x-amz-checksum-mode` of a read included (issue 22, item 8), through the store
 * emulation on moto (test/support/store-profile-proxy.ts, `checksums501`). The engine's own S3
 * client (createDeps, as the function and the CLI build it) is used throughout.
 *
 * - STORAGE_PROFILE unset: the first refusal probes, the probe's result is cached, the database is
 *   taken again without any checksum header (the SDK's CRC32 was still sent, and the cache was
 *   never written), and the next run sends none at all;
 * - STORAGE_PROFILE=b2: no read or write carries a checksum header (every GetObject carried
 *   `x-amz-checksum-mode: ENABLED`);
 * - a profile that says the store takes them (aws): the failure says the store refused a header,
 *   not that S3 was unreachable.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { runBackup } from '../../../engine/backup/backup.ts';
import { loadConfig } from '../../../engine/config.ts';
import { createDeps } from '../../../engine/deps.ts';
import { ignoreEvents } from '../../../engine/events.ts';
import { resolvePgTool } from '../../../engine/pg/tools.ts';
import { verifyBackup } from '../../../engine/restore/verify.ts';
import { capabilitiesKey, readCachedProbe } from '../../../engine/store/probe.ts';
import { listBackups, openDump, readManifest, type S3Store } from '../../../engine/store/s3-store.ts';
import { awsEnv, createBucket, listMultipartUploads, testClients, type TestClients } from '../../support/aws.ts';
import { createDatabase, loadSampleData } from '../../support/fixtures.ts';
import { ensureLayer } from '../../support/layer.ts';
import { startMoto, type TestAws } from '../../support/moto.ts';
import { startPostgres, type TestPostgres } from '../../support/postgres.ts';
import { startStoreProfileProxy, type StoreProfileProxy } from '../../support/store-profile-proxy.ts';

let pgsrv: TestPostgres;
let aws: TestAws;
let layer: string;
let proxy: StoreProfileProxy;
let direct: TestClients;
let bucket: string;
let tempDir: string;

beforeAll(async () => {
  [pgsrv, aws, layer] = await Promise.all([startPostgres(), startMoto(), ensureLayer()]);
  proxy = await startStoreProfileProxy(aws.endpoint);
  direct = testClients(aws.endpoint);
  bucket = await createBucket(direct);
  // The engine's clients read the SDK's variables: S3 through the emulation.
  Object.assign(process.env, awsEnv(aws.endpoint), { AWS_ENDPOINT_URL_S3: proxy.endpoint });
  await createDatabase(pgsrv, 'app');
  await loadSampleData(pgsrv, 'app', 200);
  tempDir = mkdtempSync(join(tmpdir(), 'pgs3b-checksums-'));
}, 240_000);

afterAll(async () => {
  delete process.env.AWS_ENDPOINT_URL_S3;
  await proxy?.stop();
  await Promise.all([pgsrv?.stop(), aws?.stop()]);
  if (tempDir) rmSync(tempDir, { recursive: true, force: true });
});

beforeEach(() => {
  proxy.setStore('aws', { checksums501: true });
  proxy.log.length = 0;
});

function configFor(prefix: string, env: Record<string, string> = {}) {
  return loadConfig({
    DATABASE_URL: pgsrv.urlFor('app'),
    BACKUP_BUCKET: bucket,
    BACKUP_PREFIX: prefix,
    PG_DUMP_BIN: join(layer, 'bin', 'pg_dump'),
    RETENTION_COUNT: '5',
    AWS_MAX_ATTEMPTS: '1',
    ...env,
  });
}

async function backup(prefix: string, env: Record<string, string> = {}) {
  const config = configFor(prefix, env);
  const deps = createDeps(config, { events: ignoreEvents });
  return { result: await runBackup({ reason: 'checksum refusal test' }, config, deps), deps };
}

const withChecksumHeader = () => proxy.log.filter((r) => Object.keys(r.headers).some((h) => h.startsWith('x-amz-checksum-') || h === 'x-amz-sdk-checksum-algorithm'));
const refused = () => proxy.log.filter((r) => r.action === 'refused');

/** list → download → SHA-256 → pg_restore, with the engine's client. */
async function verifyLatest(s: S3Store) {
  const listing = await listBackups(s, 'app');
  const report = await verifyBackup(
    {
      source: { readManifest: (k) => readManifest(s, k), openDump: async (k) => (await openDump(s, k)).body },
      pgRestore: resolvePgTool('pg_restore', { layerRoots: [layer] }),
      tempDir,
    },
    { key: listing.complete[0]!.key, scratch: pgsrv.connection('postgres') },
  );
  expect(report.problems).toEqual([]);
  expect(report).toMatchObject({ status: 'ok', sha256Verified: true });
}

it('STORAGE_PROFILE unset: the refusal probes, the result is cached, the retry and the next run send no checksum header', async () => {
  const first = await backup('unset/');
  expect(first.result.failures).toEqual([]);
  expect(first.result.status).toBe('succeeded');
  const probe = await readCachedProbe({ s3: direct.s3, bucket, prefix: 'unset/' });
  expect(probe, `no cache at ${capabilitiesKey('unset/')}`).toMatchObject({ checksumSha256: false, conditionalWrites: true });
  // Refused: the first attempt's SHA-256 and the probe's; nothing after the probe carries one.
  const probeAt = proxy.log.findIndex((r) => r.key.includes('_check/probe'));
  expect(probeAt).toBeGreaterThan(0);
  expect(withChecksumHeader().filter((r) => proxy.log.indexOf(r) > probeAt && !r.key.includes('_check/probe'))).toEqual([]);

  proxy.log.length = 0;
  const second = await backup('unset/');
  expect(second.result.failures).toEqual([]);
  expect(withChecksumHeader()).toEqual([]);
  expect(refused()).toEqual([]);
  await verifyLatest({ s3: second.deps.s3, bucket, prefix: 'unset/' });
  expect(withChecksumHeader()).toEqual([]);
  expect(await listMultipartUploads(direct, bucket)).toEqual([]);
}, 180_000);

it('STORAGE_PROFILE=b2: no read and no write carries a checksum header (GetObject carried x-amz-checksum-mode)', async () => {
  const first = await backup('b2/', { STORAGE_PROFILE: 'b2' });
  expect(first.result.failures).toEqual([]);
  // The second run reads the first one's manifest (retention).
  const second = await backup('b2/', { STORAGE_PROFILE: 'b2' });
  expect(second.result.failures).toEqual([]);
  await verifyLatest({ s3: second.deps.s3, bucket, prefix: 'b2/' });
  // Manifests (retention, listing) and the dump itself were read: none of the reads asked for a checksum.
  const reads = proxy.log.filter((r) => r.method === 'GET' && r.key !== '').map((r) => r.key);
  expect(reads.filter((k) => k.endsWith('.dump.json')).length).toBeGreaterThan(0);
  expect(reads.filter((k) => k.endsWith('.dump')).length).toBeGreaterThan(0);
  expect(withChecksumHeader()).toEqual([]);
  expect(refused()).toEqual([]);
}, 180_000);

it('a profile that says the store takes checksums: the failure says the store refused a header, not the network', async () => {
  const { result } = await backup('aws/', { STORAGE_PROFILE: 'aws' });
  expect(result.status).toBe('failed');
  const [failure] = result.failures;
  expect(failure!.hint).toMatch(/refused a header it does not implement \(501 NotImplemented/);
  expect(failure!.hint).toMatch(/STORAGE_PROFILE/);
  expect(failure!.hint).not.toMatch(/unreachable/);
  expect(await listMultipartUploads(direct, bucket)).toEqual([]);
}, 180_000);
