/**
 * The restore runbook cannot rot: every ```sh runbook-test block of
 * docs/runbooks/database-restore.md runs, in order, in one bash session, against a local
 * PostgreSQL and moto, with the variables of its step 0 set to the local services. `aws` is the
 * real AWS CLI, pointed at moto by a wrapper that adds --endpoint-url (Debian's AWS CLI 2.9 does not
 * read AWS_ENDPOINT_URL); `pg-s3-backup` is this repository's bin; pg_restore is the layer's (18).
 */
import { PutBucketVersioningCommand } from '@aws-sdk/client-s3';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { layerRoot, REPO_ROOT } from '../support/layer.ts';
import { NASTY_PASSWORD } from '../support/postgres.ts';
import { CLI, databases, runCli, startCliServices, type CliServices, listedOf } from '../support/cli.ts';

const RUNBOOK = join(REPO_ROOT, 'docs', 'runbooks', 'database-restore.md');

/** The marked blocks, in document order. */
function runbookBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/^```sh runbook-test\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

function which(program: string): string | undefined {
  try {
    return execFileSync('bash', ['-c', `command -v ${program}`], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

let svc: CliServices;
let dir: string;
/** `list --json` before the runbook ran: the pruned first backup is not in it. */
let pruned: string;

beforeAll(async () => {
  // A versioned bucket, as the stack creates it, keeping 2 backups: the third night prunes the first,
  // which step 1b brings back from its noncurrent version.
  svc = await startCliServices({ retentionCount: 2 });
  await svc.clients.s3.send(new PutBucketVersioningCommand({ Bucket: svc.bucket, VersioningConfiguration: { Status: 'Enabled' } }));
  for (let i = 0; i < 3; i++) expect((await runCli(['run', '--reason', 'scheduled'], svc.env)).code).toBe(0);
  pruned = (await runCli(['list', '--json'], svc.env)).stdout;
  dir = mkdtempSync(join(tmpdir(), 'pgs3b-runbook-'));
});
afterAll(async () => {
  await svc?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

it('runs every marked command of the restore runbook against local services', async () => {
  const blocks = runbookBlocks(readFileSync(RUNBOOK, 'utf8'));
  // Find, verify, restore, check, one table, and the AWS-CLI-only path with its one-table variant.
  expect(blocks.length).toBeGreaterThanOrEqual(8);
  const realAws = which('aws');
  const missing = ['aws', 'jq', 'psql', 'createdb', 'sha256sum'].filter((p) => !which(p));
  expect(missing, `the runbook needs ${missing.join(', ')}: apt-get install awscli jq postgresql-client coreutils (.ci/run installs them)`).toEqual([]);

  const bin = join(dir, 'bin');
  execFileSync('mkdir', ['-p', bin, join(dir, 'home')]);
  writeFileSync(join(bin, 'pg-s3-backup'), `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`);
  writeFileSync(join(bin, 'aws'), `#!/bin/sh\nexec "${realAws}" --endpoint-url "${svc.aws.endpoint}" "$@"\n`);
  for (const f of ['pg-s3-backup', 'aws']) chmodSync(join(bin, f), 0o755);

  const env: Record<string, string> = {
    ...svc.env,
    HOME: join(dir, 'home'),
    PATH: [bin, join(layerRoot(), 'bin'), process.env.PATH ?? ''].join(delimiter),
    // Step 0's variables, set to the local services.
    AWS_DEFAULT_REGION: svc.env.AWS_REGION!,
    BACKUP_PREFIX: 'pg-s3-backup/',
    DATABASE: 'app',
    PGHOST: svc.pg.host,
    PGPORT: String(svc.pg.port),
    PGUSER: svc.pg.user,
    PGPASSWORD: svc.pg.password,
    RESTORE_DB: 'app_restore',
  };
  // The runbook's URLs carry no password, and so does the environment of its commands.
  delete env.DATABASE_URL;
  // Step 0 (not run: it holds placeholders) names exactly the variables set here.
  const markdown = readFileSync(RUNBOOK, 'utf8');
  const step0 = /## Step 0[\s\S]*?```sh\n([\s\S]*?)```/.exec(markdown)![1]!;
  const names = [...step0.matchAll(/(?:export |\s)([A-Z_][A-Z0-9_]*)=/g)].map((m) => m[1]!);
  expect(names.length).toBeGreaterThanOrEqual(8);
  for (const name of names) expect(env[name], `step 0 variable ${name}`).toBeDefined();

  const script = ['set -eu', ...blocks.map((b, i) => `echo "### runbook block ${i + 1}" >&2\n${b}`)].join('\n');
  const result = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn('bash', ['-c', script], { env, cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
  const failedBlock = /### runbook block (\d+)(?![\s\S]*### runbook block)/.exec(result.stderr)?.[1];
  expect(result.code, `runbook block ${failedBlock} failed:\n${result.stderr.slice(-3000)}\n${result.stdout.slice(-2000)}`).toBe(0);
  expect(result.stderr).toContain(`### runbook block ${blocks.length}`);

  // What the runbook produced: the restored copies, each with the data of the backup.
  const dbs = await databases(svc.pg);
  expect(dbs).toEqual(expect.arrayContaining(['app_restore', 'app_orders', 'app_restore_awscli', 'app_orders_awscli']));
  expect(dbs.filter((d) => d.startsWith('pgs3b_verify_'))).toEqual([]);
  const count = async (db: string) => Number((await svc.pg.query<{ n: string }>('select count(*) as n from orders', [], db))[0]!.n);
  for (const db of ['app', 'app_restore', 'app_orders', 'app_restore_awscli', 'app_orders_awscli']) expect(await count(db), db).toBe(4000);
  // The one-table restore through the AWS CLI brings the primary key along.
  const pk = await svc.pg.query("select 1 from pg_constraint where conname = 'orders_pkey'", [], 'app_orders_awscli');
  expect(pk).toHaveLength(1);
  expect(result.stdout).toMatch(/chosen backup: pg-s3-backup\/app\//);
  // Step 1b brought the pruned backup back as a complete one.
  const before = listedOf<{ key: string }>({ stdout: pruned }).map((b) => b.key);
  const restored = /deleted backup: (\S+)/.exec(result.stdout)?.[1];
  expect(before).toHaveLength(2);
  expect(restored).toMatch(/^pg-s3-backup\/app\/.*\.dump$/);
  expect(before).not.toContain(restored);
  const after = (listedOf<{ key: string }>(await runCli(['list', '--json'], svc.env))).map((b) => b.key);
  expect(after).toEqual(expect.arrayContaining([...before, restored]));
  expect(result.stdout).toMatch(/verify OK|"status":"ok"/);
  expect(result.stdout).toMatch(/backup\.dump: OK/);
  for (const text of [result.stdout, result.stderr]) expect(text).not.toContain(NASTY_PASSWORD);
});
