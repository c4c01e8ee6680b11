/**
 * One measured run of the engine, in its own process so that its peak RSS is the engine's alone
 * (the bench bundles this file with esbuild, as the Lambda is bundled, and runs it with plain
 * node: no tsx loader in the figures). Configuration comes from the environment exactly as in
 * Lambda (DATABASE_URL, BACKUP_BUCKET, PG_DUMP_BIN, PG_DUMP_COMPRESSION, AWS_ENDPOINT_URL…);
 * argv carries only the job (mode, part size, file), never a secret. Prints one JSON line.
 *
 * - `engine`: the Lambda handler itself (createHandler), one on-demand invocation;
 * - `sink`: the engine's uploader (streamToS3) fed by `cat <file>`, to separate upload cost
 *   from dump cost.
 */
import { appendFileSync } from 'node:fs';
import { S3Client } from '@aws-sdk/client-s3';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { Upload } from '@aws-sdk/lib-storage';
import { createHash } from 'node:crypto';
import { Transform, type Readable } from 'node:stream';
import { spawn } from 'node:child_process';
import { createHandler } from '../lambda/handler.ts';
import { processCpu, watchBusiestChild, type SchedTimes } from './measure.ts';
import { ignoreEvents } from '../engine/events.ts';
import { startTool, startToolDirect, type SpawnFn } from '../engine/pg/process.ts';
import { partSizeFor, streamToS3 } from '../engine/store/stream-upload.ts';
import { tmpdir } from 'node:os';
import { parseTargetUrl } from '../engine/pg/connection.ts';
import { resolvePgTool } from '../engine/pg/tools.ts';
import type { RestoreDeps } from '../engine/restore/deps.ts';
import { restoreBackup } from '../engine/restore/restore.ts';
import { openDump, readManifest } from '../engine/store/s3-store.ts';

export interface EngineJob {
  /** `restore`: restoreBackup of `key` into BENCH_TARGET_URL (the environment: it holds a password), with `jobs`. */
  readonly mode: 'engine' | 'sink' | 'restore';
  readonly jobs?: number | undefined;
  /** Multipart part size in bytes (engine default when absent). */
  readonly partSize?: number | undefined;
  readonly queueSize?: number | undefined;
  /** sink: the dump file to upload, and its key. */
  readonly file?: string | undefined;
  readonly key?: string | undefined;
  /** sink: the multipart part checksum (engine default when absent). */
  readonly partChecksum?: 'SHA256' | 'CRC32' | undefined;
  /** sink: the uploader before issue 14 (lib-storage, SHA-256 hashed three times), for comparison. */
  readonly libStorage?: boolean | undefined;
  /** sink: encrypt with age to one fresh X25519 recipient (ENCRYPT_RECIPIENTS, issue 16 §2) before the uploader. */
  readonly encrypt?: boolean | undefined;
}

export interface EngineRunResult {
  readonly mode: EngineJob['mode'];
  /** Wall time of the invocation (handler call, or streamToS3), ms. */
  readonly ms: number;
  readonly bytes: number;
  /** The uploaded dump's key. */
  readonly key: string;
  /** Peak resident set of this process (getrusage ru_maxrss), bytes. */
  readonly peakRssBytes: number;
  /** Resident set before the run (code loaded, clients built), bytes. */
  readonly idleRssBytes: number;
  /** CPU time of this node process during the run, ms. */
  readonly cpuMs: number;
  /** CPU time of its finished children (pg_dump, or cat for the sink) during the run, ms. */
  readonly childCpuMs: number | undefined;
  /** pg_dump's (or cat's) time on CPU, waiting for a CPU, and alive. */
  readonly childSched: SchedTimes | undefined;
}

/**
 * The previous uploader, as it was: lib-storage's Upload with `ChecksumAlgorithm: 'SHA256'` fed
 * through a Transform that hashes every byte for the manifest (so: the manifest's SHA-256, the
 * SDK's per-part SHA-256, SigV4's payload SHA-256, and lib-storage's concatenation copy).
 */
async function libStorageSink(s3: S3Client, key: string, input: Readable, job: EngineJob): Promise<number> {
  const hash = createHash('sha256');
  let bytes = 0;
  const gate = new Transform({
    highWaterMark: 1024 * 1024,
    transform(chunk: Buffer, _enc, cb) {
      bytes += chunk.length;
      hash.update(chunk);
      cb(null, chunk);
    },
  });
  input.pipe(gate);
  const upload = new Upload({
    client: s3,
    params: { Bucket: process.env.BACKUP_BUCKET!, Key: key, Body: gate, ContentType: 'application/octet-stream', ChecksumAlgorithm: 'SHA256', IfNoneMatch: '*' },
    partSize: job.partSize ?? partSizeFor(),
    queueSize: job.queueSize ?? 2,
    leavePartsOnError: false,
  });
  await upload.done();
  hash.digest('hex');
  return bytes;
}

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2] ?? '{}') as EngineJob;
  const overrides = { events: ignoreEvents, partSize: job.partSize, queueSize: job.queueSize };
  let run: () => Promise<{ bytes: number; key: string }>;
  if (job.mode === 'engine') {
    const handler = createHandler(process.env, overrides);
    // Lambda's remaining-time clock: a full 15 minutes, so the budget never stops a bench run.
    const context = { awsRequestId: 'bench', getRemainingTimeInMillis: () => 900_000 };
    run = async () => {
      const res = await handler({ reason: 'bench' }, context);
      const b = res.backups[0]!;
      return { bytes: b.bytes, key: b.key };
    };
  } else if (job.mode === 'sink' && job.file && job.key) {
    const s3 = new S3Client({ forcePathStyle: process.env.S3_FORCE_PATH_STYLE === 'true' });
    const { file, key } = job;
    // The recipient is made before the clock starts: a deployment's is in its configuration.
    const encryptTo = job.encrypt ? [await identityToRecipient(await generateX25519Identity())] : undefined;
    run = async () => {
      const catArgs = [spawn as SpawnFn, { file: 'cat', args: [] }, [file], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } }] as const;
      // lib-storage reads a stream: a plain pipe (startToolDirect leaves child.stdout null).
      if (job.libStorage) return { bytes: await libStorageSink(s3, key, startTool(...catArgs).child.stdout!, job), key };
      const tool = await startToolDirect(...catArgs);
      const res = await streamToS3({ s3, bucket: process.env.BACKUP_BUCKET!, key, tool, partSize: job.partSize ?? partSizeFor(), queueSize: job.queueSize, partChecksum: job.partChecksum, encryptTo });
      return { bytes: res.bytes, key };
    };
  } else if (job.mode === 'restore' && job.key && process.env.BENCH_TARGET_URL) {
    const traceStart = performance.now();
    const store = { s3: new S3Client({ forcePathStyle: process.env.S3_FORCE_PATH_STYLE === 'true' }), bucket: process.env.BACKUP_BUCKET!, prefix: process.env.BACKUP_PREFIX ?? '' };
    const deps: RestoreDeps = {
      source: { readManifest: (k) => readManifest(store, k), openDump: async (k) => (await openDump(store, k)).body },
      pgRestore: resolvePgTool('pg_restore', { pgDumpBin: process.env.PG_DUMP_BIN }),
      tempDir: tmpdir(),
      // BENCH_TRACE=<file>: each event appended there with the time since the start (where a restore's time goes).
      ...(process.env.BENCH_TRACE ? { events: (e: { event: string }) => appendFileSync(process.env.BENCH_TRACE!, `+${(performance.now() - traceStart).toFixed(0)} ms ${JSON.stringify(e).slice(0, 160)}\n`) } : {}),
    };
    const { key } = job;
    const target = parseTargetUrl(process.env.BENCH_TARGET_URL);
    run = async () => {
      const r = await restoreBackup(deps, { key, target, create: true, noOwner: true, jobs: job.jobs });
      return { bytes: r.bytes, key };
    };
  } else {
    throw new Error(`engine-run: bad job ${process.argv[2] ?? ''}`);
  }
  const idleRssBytes = process.memoryUsage.rss();
  const cpu = () => { const u = process.resourceUsage(); return (u.userCPUTime + u.systemCPUTime) / 1000; };
  const own0 = cpu();
  const self0 = processCpu('self');
  const watch = watchBusiestChild(process.pid);
  const t0 = performance.now();
  const { bytes, key } = await run();
  const ms = performance.now() - t0;
  const childSched = watch.stop();
  const cpuMs = cpu() - own0;
  const self1 = processCpu('self');
  const childCpuMs = self0 && self1 ? self1.childrenMs - self0.childrenMs : undefined;
  const result: EngineRunResult = { mode: job.mode, ms, bytes, key, peakRssBytes: process.resourceUsage().maxRSS * 1024, idleRssBytes, cpuMs, childCpuMs, childSched };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}\n`);
  process.exit(1);
});
