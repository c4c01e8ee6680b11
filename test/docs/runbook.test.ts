/**
 * The restore runbook cannot rot: every ```sh runbook-test block of
 * docs/runbooks/database-restore.md runs, in order, in one bash session, against a local
 * PostgreSQL and moto, with the variables of its step 0 set to the local services. `aws` is the
 * real AWS CLI, pointed at moto by a wrapper that adds --endpoint-url (Debian's AWS CLI 2.9 does not
 * read AWS_ENDPOINT_URL); `pg-s3-backup` is this repository's bin; pg_restore is the layer's (18).
 */
import { PutBucketVersioningCommand } from '@aws-sdk/client-s3';
import { GetSecretValueCommand, ListSecretsCommand } from '@aws-sdk/client-secrets-manager';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { restoreSecretPrefix } from '../../infra/constructs/remote-restore.ts';
import { parseSecret } from '../../engine/pg/credentials.ts';
import { layerRoot, REPO_ROOT } from '../support/layer.ts';
import { NASTY_PASSWORD } from '../support/postgres.ts';
import { CLI, databases, runCli, startCliServices, type CliServices, listedOf } from '../support/cli.ts';

const RUNBOOK = join(REPO_ROOT, 'docs', 'runbooks', 'database-restore.md');

/** The marked blocks, in document order. */
function runbookBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/^```sh runbook-test\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

/** `script` in bash, in the test's folder, with exactly `env` and `input` on stdin (none: no stdin). */
function bash(script: string, env: Record<string, string>, input?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', script], { env, cwd: dir, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    if (input !== undefined) child.stdin!.end(input);
  });
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
  for (let i = 0; i < 3; i++) expect((await runCli(['backup', '--reason', 'scheduled'], svc.env)).code).toBe(0);
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
  const result = await bash(script, env);
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

it('restores from inside the VPC as its section says: the secret made from a typed password through a pipe, under the restore prefix, and commands the CLI accepts', async () => {
  const markdown = readFileSync(RUNBOOK, 'utf8');
  const section = /^## Restore from inside the VPC[^\n]*\n([\s\S]*?)^## /m.exec(markdown)?.[1];
  expect(section, 'the runbook has a "Restore from inside the VPC" section').toBeDefined();
  const blocks = [...section!.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
  expect(blocks).toHaveLength(3);
  const [create, commands, remove] = blocks as [string, string, string];

  // The secret, as an operator makes it: the password typed (stdin), never in an argument.
  const realAws = which('aws')!;
  const bin = join(dir, 'vpc-bin');
  execFileSync('mkdir', ['-p', bin]);
  writeFileSync(join(bin, 'aws'), `#!/bin/sh\nexec "${realAws}" --endpoint-url "${svc.aws.endpoint}" "$@"\n`);
  chmodSync(join(bin, 'aws'), 0o755);
  const env = { ...svc.env, HOME: dir, PATH: [bin, process.env.PATH ?? ''].join(delimiter), AWS_DEFAULT_REGION: svc.env.AWS_REGION!, PGHOST: svc.pg.host, PGPORT: String(svc.pg.port), PGUSER: svc.pg.user, RESTORE_DB: 'app_vpc' };
  delete (env as Record<string, string>).DATABASE_URL;
  const run = (script: string, input: string) => bash(`set -eu\n${script}`, env, `${input}\n`);
  const made = await run(create, svc.pg.password);
  expect(made.code, made.stderr).toBe(0);
  const name = `${restoreSecretPrefix('PgS3Backup')}app_vpc`;
  expect(made.stdout).toMatch(new RegExp(`^arn:aws:secretsmanager:.*:secret:${name}-`));
  const value = await svc.clients.secrets.send(new GetSecretValueCommand({ SecretId: name }));
  expect(parseSecret(name, value.SecretString)).toMatchObject({ host: svc.pg.host, port: svc.pg.port, username: svc.pg.user, password: svc.pg.password, dbname: 'postgres' });
  for (const text of [made.stdout, made.stderr, create]) expect(text).not.toContain(NASTY_PASSWORD);

  // Every option of its commands is one the command has, --remote among them, the secret by name.
  const lines = commands.split('\n').filter((l) => l.startsWith('pg-s3-backup '));
  expect(lines.map((l) => l.split(' ')[1])).toEqual(['verify', 'restore']);
  for (const line of lines) {
    const command = line.split(' ')[1]!;
    const help = (await runCli([command, '--help'], svc.env)).stdout;
    for (const flag of line.match(/--[a-z][a-z-]*/g) ?? []) expect(help, `${command} ${flag}`).toContain(flag);
    expect(line).toMatch(/--remote .*--(target|scratch)-secret "\$TARGET_SECRET"/);
  }

  // The same shell session as the secret's creation, in the runbook.
  const removed = await run(`TARGET_SECRET='${name}'\n${remove}`, '');
  expect(removed.code, removed.stderr).toBe(0);
  const left = await svc.clients.secrets.send(new ListSecretsCommand({}));
  expect(left.SecretList?.filter((sec) => sec.Name === name && sec.DeletedDate === undefined)).toEqual([]);
});
