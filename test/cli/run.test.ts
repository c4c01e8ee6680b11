/**
 * `pg-s3-backup backup`, `list`, `prune`, `invoke` and the program's usage contract (help, exit
 * codes), end to end against PostgreSQL and moto. `invoke` runs against moto's Lambda API (a
 * function that does not execute: moto runs code only through Docker, which these machines do not
 * have), and with an injected client for the function-error path moto cannot produce that way.
 */
import { CreateFunctionCommand, InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../cli/main.ts';
import { buildGlobalsKey, GLOBALS_FOLDER } from '../../engine/store/backup-key.ts';
import { listKeys, putText } from '../support/aws.ts';
import { NASTY_PASSWORD } from '../support/postgres.ts';
import { expectNoSecret, runCli, startCliServices, type CliServices, listedOf } from '../support/cli.ts';

let svc: CliServices;

beforeAll(async () => {
  svc = await startCliServices({ retentionCount: 2 });
});
afterAll(async () => {
  await svc?.stop();
});

describe('usage', () => {
  it.each(['backup', 'invoke', 'list', 'restore', 'verify', 'prune', 'doctor'])('%s --help exits 0 and describes its options', async (command) => {
    const run = await runCli([command, '--help'], svc.env);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`Usage: pg-s3-backup ${command}`);
    expect(run.stdout).toContain('--help');
  });

  it('exits 2 on usage errors: unknown command, unknown option, missing or conflicting options, bad numbers', async () => {
    const cases: string[][] = [
      ['frobnicate'],
      ['list', '--bogus'],
      ['restore', '--latest'],
      ['restore', '--latest', '--key', 'k', '--target-url', 'postgresql://u@h/db'],
      ['restore', '--latest', '--target-url', 'postgresql://u@h/db', '--create', '--clean'],
      ['restore', '--latest', '--target-url', 'postgresql://u@h/db', '--jobs', '0'],
      ['restore', '--latest', '--target-url', 'mysql://u@h/db'],
    ];
    for (const args of cases) {
      const run = await runCli(args, svc.env);
      expect(run.code, `${args.join(' ')}\n${run.stderr}`).toBe(2);
      expect(run.stderr.length).toBeGreaterThan(0);
    }
  });

  it('exits 1 with the variable named when the configuration is wrong', async () => {
    const { BACKUP_BUCKET: _b, ...noBucket } = svc.env;
    const run = await runCli(['list'], noBucket);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/BACKUP_BUCKET is required/);
  });
});

describe('backup, list, prune', () => {
  it('backup takes a backup through the pipeline: JSON events, result last, exit 0, password never shown', async () => {
    const run = await runCli(['backup', '--reason', 'test run'], svc.env);
    expect(run.code, run.stderr).toBe(0);
    expect(run.events.at(-1)).toBe(run.result);
    expect(run.events.map((e) => e.event)).toEqual(expect.arrayContaining(['backup.started', 'backup.dump.started', 'backup.complete', 'backup.finished', 'result']));
    expect(run.result).toMatchObject({ status: 'succeeded', failures: [], backups: [{ database: 'app', bytes: expect.any(Number), sha256: expect.stringMatching(/^[0-9a-f]{64}$/) }] });
    const key = (run.result!.backups as { key: string }[])[0]!.key;
    expect(await listKeys(svc.clients, svc.bucket)).toEqual(expect.arrayContaining([key, `${key}.json`]));
    expectNoSecret(run, NASTY_PASSWORD);
  });

  it('backup exits 1 and says what failed when the database cannot be dumped', async () => {
    const run = await runCli(['backup', '--database', 'no_such_database'], svc.env);
    expect(run.code).toBe(1);
    expect(run.result).toMatchObject({ status: 'failed', failures: [{ database: 'no_such_database' }] });
    expect(run.stdout).toMatch(/no_such_database/);
    expectNoSecret(run, NASTY_PASSWORD);
  });

  it('list shows complete backups newest first; --json has the documented shape; --all marks incomplete ones', async () => {
    await runCli(['backup'], svc.env);
    const listed = await runCli(['list', '--json'], svc.env);
    expect(listed.code, listed.stderr).toBe(0);
    const rows = listedOf<Record<string, unknown>>(listed);
    expect(rows.length).toBe(2);
    for (const r of rows) {
      expect(r).toEqual({
        database: 'app',
        key: expect.stringMatching(/^pg-s3-backup\/app\/\d{4}\/\d{2}\/\d{2}\/app-\d{8}T\d{9}Z\.dump$/),
        startedAt: expect.any(String),
        storedAt: expect.any(String),
        clockSkewSeconds: null,
        bytes: expect.any(Number),
        sha256: expect.stringMatching(/^[0-9a-f]{64}$/),
        complete: true,
        problem: null,
        durationMs: expect.any(Number),
        compression: 'zstd:1',
        pgDumpVersion: expect.stringMatching(/^18\./),
        serverVersion: expect.stringMatching(/^18\./),
        reason: expect.any(String),
        encryption: null,
        lastDrill: null,
      });
    }
    expect(String(rows[0]!.startedAt) > String(rows[1]!.startedAt)).toBe(true);

    // A dump without its manifest: not a backup, shown only with --all.
    const orphan = 'pg-s3-backup/app/2020/01/01/app-20200101T000000000Z.dump';
    await putText(svc.clients, svc.bucket, orphan, 'PGDMP partial');
    const plain = await runCli(['list'], svc.env);
    expect(plain.stdout).not.toContain(orphan);
    expect(plain.stdout.split('\n')[0]).toMatch(/^DATABASE\s+STARTED \(UTC\)\s+SIZE\s+SHA256\s+KEY$/);
    const all = await runCli(['list', '--all', '--json'], svc.env);
    const allRows = listedOf<{ key: string; complete: boolean; sha256: string | null }>(all);
    expect(allRows.find((r) => r.key === orphan)).toMatchObject({ complete: false, sha256: null });
    const allText = await runCli(['list', '--all'], svc.env);
    expect(allText.stdout).toMatch(/INCOMPLETE\s+pg-s3-backup\/app\/2020/);
  });

  it('prune --dry-run reports, prune deletes beyond RETENTION_COUNT (2)', async () => {
    await runCli(['backup'], svc.env); // the pipeline prunes to 2 complete backups itself
    const three = { ...svc.env, RETENTION_COUNT: '3' };
    await runCli(['backup'], three);
    await runCli(['backup'], three);
    const before = listedOf<{ key: string }>(await runCli(['list', '--json'], svc.env));
    expect(before.length).toBe(3);

    const dry = await runCli(['prune', '--dry-run'], svc.env);
    expect(dry.code, dry.stderr).toBe(0);
    const dryDb = (dry.result!.databases as { database: string; deleted: string[]; kept: string[] }[])[0]!;
    // The oldest complete backup, dump and manifest (the orphan is younger than a day by its S3 date: kept).
    expect([...dryDb.deleted].sort()).toEqual([before[2]!.key, `${before[2]!.key}.json`]);
    expect(dryDb.kept).toEqual([before[0]!.key, before[1]!.key]);
    expect((listedOf<unknown>(await runCli(['list', '--json'], svc.env))).length).toBe(3);

    const real = await runCli(['prune'], svc.env);
    expect(real.code, real.stderr).toBe(0);
    const after = listedOf<{ key: string }>(await runCli(['list', '--json'], svc.env));
    expect(after.map((r) => r.key)).toEqual([before[0]!.key, before[1]!.key]);
  });

  it('prune also keeps only the newest RETENTION_COUNT (2) globals files under _globals/, as run does', async () => {
    const globals = ['2024-01-01', '2024-01-02', '2024-01-03'].map((d) => buildGlobalsKey('pg-s3-backup/', new Date(`${d}T02:00:00.000Z`)));
    for (const k of globals) await putText(svc.clients, svc.bucket, k, '-- roles\n');
    const dry = await runCli(['prune', '--dry-run'], svc.env);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.result!.databases).toEqual(expect.arrayContaining([expect.objectContaining({ database: GLOBALS_FOLDER, deleted: [globals[0]], kept: [globals[2], globals[1]] })]));
    expect(await listKeys(svc.clients, svc.bucket, 'pg-s3-backup/_globals/')).toEqual(globals);

    const real = await runCli(['prune'], svc.env);
    expect(real.code, real.stderr).toBe(0);
    expect(await listKeys(svc.clients, svc.bucket, 'pg-s3-backup/_globals/')).toEqual([globals[1], globals[2]]);
    // --database limits pruning to that database: the globals are left alone.
    await putText(svc.clients, svc.bucket, globals[0]!, '-- roles\n');
    expect((await runCli(['prune', '--database', 'app'], svc.env)).code).toBe(0);
    expect(await listKeys(svc.clients, svc.bucket, 'pg-s3-backup/_globals/')).toEqual(globals);
    await runCli(['prune'], svc.env);
  });
});

/**
 * A function in moto's Lambda that does not execute (moto runs code only through Docker): it
 * answers each Invoke with the next queued result, else with the payload it received.
 */
async function motoFunction(endpoint: string, name: string): Promise<{ queueResult(result: unknown): Promise<void> }> {
  await fetch(`${endpoint}/moto-api/config`, { method: 'POST', body: JSON.stringify({ lambda: { use_docker: false } }) });
  const trust = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Principal: { Service: 'lambda.amazonaws.com' }, Action: 'sts:AssumeRole' }] };
  // IAM's query API, routed by moto through the credential scope (signatures are not checked).
  const res = await fetch(endpoint, {
    method: 'POST',
    body: new URLSearchParams({ Action: 'CreateRole', Version: '2010-05-08', RoleName: `${name}-role`, AssumeRolePolicyDocument: JSON.stringify(trust) }),
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', Authorization: 'AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0' },
  });
  const role = /<Arn>(.*?)<\/Arn>/.exec(await res.text())?.[1];
  expect(role, 'moto created the IAM role').toBeDefined();
  const lambda = new LambdaClient({ endpoint, region: 'us-east-1', credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' } });
  // An empty zip archive: moto stores the code, it never runs it.
  const emptyZip = Buffer.concat([Buffer.from('PK\x05\x06', 'binary'), Buffer.alloc(18)]);
  await lambda.send(new CreateFunctionCommand({ FunctionName: name, Runtime: 'nodejs20.x', Role: role!, Handler: 'index.handler', Code: { ZipFile: emptyZip } }));
  return {
    async queueResult(result) {
      await fetch(`${endpoint}/moto-api/static/lambda-simple/response`, { method: 'POST', body: JSON.stringify({ results: [JSON.stringify(result)], region: 'us-east-1' }) });
    },
  };
}

describe('invoke against moto\'s Lambda API', () => {
  it('invokes the function by name (BACKUP_FUNCTION_NAME) with the contract event and prints its result', async () => {
    const fn = await motoFunction(svc.aws.endpoint, 'pg-backup-fn');
    const env = { ...svc.env, BACKUP_FUNCTION_NAME: 'pg-backup-fn' };
    // Without a queued result moto's function answers with the event it received.
    const echo = await runCli(['invoke', '--database', 'app', '--reason', 'before migration'], env);
    expect(echo.code, echo.stderr).toBe(0);
    expect(echo.result).toMatchObject({ function: 'pg-backup-fn', statusCode: 200, result: { databases: ['app'], reason: 'before migration' } });

    const handlerResult = { status: 'succeeded', backups: [{ database: 'app', key: 'pg-s3-backup/app/k.dump', bytes: 10, sha256: 'b'.repeat(64), durationMs: 7 }], pruned: [] };
    await fn.queueResult(handlerResult);
    const run = await runCli(['invoke', '--function', 'pg-backup-fn'], svc.env);
    expect(run.code, run.stderr).toBe(0);
    expect(run.result).toMatchObject({ function: 'pg-backup-fn', result: handlerResult });
  });
});

describe('invoke (Lambda Invoke, injected client)', () => {
  function capture() {
    let stdout = '';
    let stderr = '';
    return {
      io: { stdout: { write: (s: string) => (stdout += s) }, stderr: { write: (s: string) => (stderr += s) } },
      get stdout() {
        return stdout;
      },
      get stderr() {
        return stderr;
      },
    };
  }

  it('sends the contract event and prints the function result', async () => {
    const sent: InvokeCommand[] = [];
    const result = { status: 'succeeded', backups: [{ database: 'app', key: 'k', bytes: 1, sha256: 'a'.repeat(64), durationMs: 5 }], pruned: [] };
    const lambda = () => ({
      send: async (cmd: InvokeCommand) => {
        sent.push(cmd);
        return { StatusCode: 200, Payload: new TextEncoder().encode(JSON.stringify(result)) };
      },
    });
    const out = capture();
    const code = await main(['invoke', '--function', 'backup-fn', '--database', 'app', '--database', 'b', '--reason', 'before migration', '--dry-run'], {
      ...out.io,
      env: {},
      lambda: lambda as never,
    });
    expect(code, out.stderr).toBe(0);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.input.FunctionName).toBe('backup-fn');
    expect(sent[0]!.input.InvocationType).toBe('RequestResponse');
    expect(JSON.parse(Buffer.from(sent[0]!.input.Payload as Uint8Array).toString())).toEqual({ databases: ['app', 'b'], reason: 'before migration', dryRun: true });
    const lines = out.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.at(-1)).toEqual({ event: 'result', function: 'backup-fn', statusCode: 200, result });
  });

  it('exits 1 with the function error or an API error, and 2 without a function name', async () => {
    const lambda = () => ({
      send: async () => ({ StatusCode: 200, FunctionError: 'Unhandled', Payload: new TextEncoder().encode(JSON.stringify({ errorType: 'BackupRunError', errorMessage: 'backup failed for 1 database(s)' })) }),
    });
    const out = capture();
    const code = await main(['invoke'], { ...out.io, env: { BACKUP_FUNCTION_NAME: 'fn' }, lambda: lambda as never });
    expect(code).toBe(1);
    expect(out.stderr).toMatch(/BackupRunError|the function reported a failure: backup failed for 1 database/);

    const unknown = capture();
    const notFound = () => ({
      send: async () => {
        throw Object.assign(new Error('Function not found: arn:aws:lambda:us-east-1:123456789012:function:nope'), { name: 'ResourceNotFoundException' });
      },
    });
    expect(await main(['invoke', '--function', 'nope'], { ...unknown.io, env: {}, lambda: notFound as never })).toBe(1);
    expect(unknown.stderr).toMatch(/invoking nope failed: ResourceNotFoundException[\s\S]*what to do: Check the function name/);

    const none = capture();
    expect(await main(['invoke'], { ...none.io, env: {} })).toBe(2);
    expect(none.stderr).toMatch(/BACKUP_FUNCTION_NAME/);
  });
});
