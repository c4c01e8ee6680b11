/**
 * What most integration tests start in their `beforeAll`: moto with the test clients and a fresh
 * bucket and, for a backup, PostgreSQL and the pg_dump layer beside it (started together). Each
 * `stop()` stops what it started, every part on its own: one failing stop leaves no other server
 * running.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { awsEnv, createBucket, testClients, type TestClients } from './aws.ts';
import { ensureLayer, ensureServerLayer } from './layer.ts';
import { startMoto, type TestAws } from './moto.ts';
import { startPostgres, type StartPostgresOptions, type TestPostgres } from './postgres.ts';

export interface TestBucket {
  readonly aws: TestAws;
  readonly c: TestClients;
  readonly bucket: string;
  stop(): Promise<void>;
}

export async function startMotoBucket(): Promise<TestBucket> {
  const aws = await startMoto();
  try {
    const c = testClients(aws.endpoint);
    return { aws, c, bucket: await createBucket(c), stop: () => aws.stop() };
  } catch (err) {
    await aws.stop().catch(() => {});
    throw err;
  }
}

/** startMotoBucket for the calling file (or describe block): started before its tests (`ready` receives it), stopped after them. */
export function useMotoBucket(ready: (s: TestBucket) => void): void {
  let started: TestBucket | undefined;
  beforeAll(async () => {
    started = await startMotoBucket();
    ready(started);
  });
  afterAll(async () => {
    await started?.stop();
  });
}

export interface BackupServices extends TestBucket {
  readonly pg: TestPostgres;
  /** The pg_dump layer's root (`PG_DUMP_BIN` is `<layer>/bin/pg_dump`). */
  readonly layer: string;
}

export async function startBackupServices(postgres: StartPostgresOptions = {}): Promise<BackupServices> {
  const results = await Promise.allSettled([startPostgres(postgres), startMotoBucket(), ensureLayer()] as const);
  const [pg, s3, layer] = results;
  const stop = () => settleAll([pg, s3].map((r) => (r.status === 'fulfilled' ? r.value.stop() : undefined)));
  if (pg.status === 'fulfilled' && s3.status === 'fulfilled' && layer.status === 'fulfilled') return { ...s3.value, pg: pg.value, layer: layer.value, stop };
  // What failed to start is the error to report; what did start is stopped first.
  await stop().catch(() => {});
  throw results.find((r): r is PromiseRejectedResult => r.status === 'rejected')!.reason;
}

export interface DrillServices extends BackupServices {
  /** The pg-server layer's root: the drill's throwaway PostgreSQL. */
  readonly serverLayer: string;
  /** The drill's temporary folder (its download and its server), removed by `stop()`. */
  readonly tempDir: string;
}

/**
 * What a restore-drill test starts: startBackupServices and the pg-server layer, the SDK's
 * variables pointed at moto (the engine's own clients read them), and a temporary folder
 * `pgs3b-<name>-…` that the throwaway server, run as nobody when the tests run as root, may enter
 * (as /tmp).
 */
export async function startDrillServices(name: string, postgres: StartPostgresOptions = {}): Promise<DrillServices> {
  const [backup, serverLayer] = await Promise.allSettled([startBackupServices(postgres), ensureServerLayer()] as const);
  if (backup.status === 'rejected' || serverLayer.status === 'rejected') {
    if (backup.status === 'fulfilled') await backup.value.stop().catch(() => {});
    throw backup.status === 'rejected' ? backup.reason : (serverLayer as PromiseRejectedResult).reason;
  }
  Object.assign(process.env, awsEnv(backup.value.aws.endpoint));
  const tempDir = mkdtempSync(join(tmpdir(), `pgs3b-${name}-`));
  chmodSync(tempDir, 0o711);
  return {
    ...backup.value,
    serverLayer: serverLayer.value,
    tempDir,
    stop: async () => {
      rmSync(tempDir, { recursive: true, force: true });
      await backup.value.stop();
    },
  };
}

/** Waits for every one, then rejects with the first failure: a failing stop leaves no other server running. */
export async function settleAll(all: readonly (Promise<void> | undefined)[]): Promise<void> {
  const failed = (await Promise.allSettled(all)).find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}
