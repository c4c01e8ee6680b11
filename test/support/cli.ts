/**
 * What the CLI, runbook and host-mode tests share: a PostgreSQL server with a sample database
 * `app`, a moto server with a bucket, the built layer, and a way to run the real `pg-s3-backup`
 * program (bin/pg-s3-backup.mjs in a child process, as an operator would).
 */
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { expect } from 'vitest';
import type { Manifest } from '../../engine/store/manifest.ts';
import { awsEnv, createBucket, storedManifest, testClients, type TestClients } from './aws.ts';
import { createDatabase, loadSampleData } from './fixtures.ts';
import { ensureLayer, REPO_ROOT } from './layer.ts';
import { startMoto, type TestAws } from './moto.ts';
import { startPostgres, type TestPostgres } from './postgres.ts';
import { settleAll } from './services.ts';

export const CLI = resolve(REPO_ROOT, 'bin', 'pg-s3-backup.mjs');

export interface CliServices {
  readonly pg: TestPostgres;
  readonly aws: TestAws;
  readonly clients: TestClients;
  readonly bucket: string;
  /** Environment for the CLI: AWS endpoint, bucket, and DATABASE_URL of `app`. */
  readonly env: Record<string, string>;
  stop(): Promise<void>;
}

export async function startCliServices(options: { readonly retentionCount?: number; readonly aws?: () => Promise<TestAws> } = {}): Promise<CliServices> {
  // Every server that did start is stopped when another fails to (or the set-up after fails): none is left running.
  const started = await Promise.allSettled([startPostgres(), (options.aws ?? startMoto)(), ensureLayer()] as const);
  const [pgStarted, awsStarted] = started;
  const stopAll = () => settleAll([pgStarted, awsStarted].map((r) => (r.status === 'fulfilled' ? r.value.stop() : undefined)));
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed || pgStarted.status !== 'fulfilled' || awsStarted.status !== 'fulfilled') {
    await stopAll().catch(() => {});
    throw failed?.reason;
  }
  const [pg, aws] = [pgStarted.value, awsStarted.value];
  const clients = testClients(aws.endpoint);
  let bucket: string;
  try {
    bucket = await createBucket(clients);
    await createDatabase(pg, 'app');
    await loadSampleData(pg, 'app');
  } catch (err) {
    await stopAll().catch(() => {});
    throw err;
  }
  const env = {
    ...baseEnv(),
    ...awsEnv(aws.endpoint),
    BACKUP_BUCKET: bucket,
    DATABASE_URL: pg.urlFor('app'),
    RETENTION_COUNT: String(options.retentionCount ?? 7),
  };
  return {
    pg,
    aws,
    clients,
    bucket,
    env,
    stop: stopAll,
  };
}

/** The parent environment without anything that could point the CLI elsewhere (AWS, PG*, config). */
export function baseEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  const drop = /^(AWS_|PG|DATABASE_URL$|DB_|BACKUP_|RETENTION_COUNT$|ALERT_TOPIC_ARN$|S3_FORCE_PATH_STYLE$|DATABASES$)/;
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !drop.test(k)) env[k] = v;
  return env;
}

export interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout's lines that are JSON objects (events, then the result). */
  readonly events: Record<string, unknown>[];
  /** The `result` event (JSON mode), if any. */
  readonly result: Record<string, unknown> | undefined;
}

export async function runCli(args: readonly string[], env: Record<string, string>): Promise<CliRun> {
  return runCliUnder([], args, env);
}

/** The real program with its clock (and its children's) moved by `offset` (faketime's "+400d", "-30h"). */
export async function runCliAt(offset: string, args: readonly string[], env: Record<string, string>): Promise<CliRun> {
  return runCliUnder(['faketime', '-f', offset], args, env);
}

/** The real program under `wrap` (a command prefix such as faketime's), with `nodeArgs` for node itself (`--import`). */
export async function runCliUnder(wrap: readonly string[], args: readonly string[], env: Record<string, string>, nodeArgs: readonly string[] = []): Promise<CliRun> {
  return new Promise((resolvePromise, reject) => {
    const argv = [...wrap, process.execPath, ...nodeArgs, CLI, ...args];
    const child = spawn(argv[0]!, argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const events = jsonLines(stdout);
      resolvePromise({ code, stdout, stderr, events, result: events.find((e) => e.event === 'result') });
    });
  });
}

/**
 * `pg-s3-backup backup` under `env`, which must succeed (the failure message holds its whole output: a
 * run's failures are in its result, on stdout), and its first backup: the key and the manifest
 * stored in `env`'s BACKUP_BUCKET.
 */
export async function backUp(clients: TestClients, env: Record<string, string>, reason = 'test'): Promise<{ readonly run: CliRun; readonly key: string; readonly manifest: Manifest }> {
  const run = await runCli(['backup', '--reason', reason], env);
  expect(run.code, `pg-s3-backup backup (${reason}): ${run.stderr}${run.stdout}`).toBe(0);
  const key = (run.result!.backups as { key: string }[])[0]!.key;
  return { run, key, manifest: await storedManifest(clients, env.BACKUP_BUCKET!, key) };
}

export function jsonLines(text: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // Part of a pretty-printed document (--json), not an event line.
    }
  }
  return out;
}

/**
 * The `result` line of a command's JSON output (`--json`, or a pipe for the streaming commands):
 * the contract's last line (docs/operations.md, "Output"). Fails, showing the output, without one.
 */
export function resultOf<T = Record<string, unknown>>(run: { readonly stdout: string; readonly stderr?: string }): T {
  const result = jsonLines(run.stdout).find((e) => e.event === 'result');
  if (!result) throw new Error(`no result line in the output:\n${run.stdout}${run.stderr ?? ''}`);
  return result as T;
}

/** `list --json`'s rows: the result line's `backups`. */
export function listedOf<T = Record<string, unknown>>(run: { readonly stdout: string; readonly stderr?: string }): T[] {
  return resultOf<{ backups: T[] }>(run).backups;
}

/** The password must never show, neither as is nor URL-encoded. */
export function expectNoSecret(run: Pick<CliRun, 'stdout' | 'stderr'>, password: string): void {
  for (const text of [run.stdout, run.stderr]) {
    expect(text).not.toContain(password);
    expect(text).not.toContain(encodeURIComponent(password));
  }
}

/** Names of the databases on the server. */
export async function databases(pg: TestPostgres): Promise<string[]> {
  return (await pg.query<{ datname: string }>('select datname from pg_database order by 1')).map((r) => r.datname);
}
