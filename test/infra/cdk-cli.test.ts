/**
 * The app the way an operator runs it: `npx cdk synth` with the example context of cdk.json,
 * offline and without any AWS credentials, with the real pg_dump layer (arm64, the default) and
 * the real handler bundled by esbuild. Then the bundle itself is loaded and run far enough to
 * prove that every module (the AWS SDK included) made it into the ES module bundle.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureLayer, ensureServerLayer, REPO_ROOT } from '../support/layer.ts';

type Assets = { files: Record<string, { source: { path: string; packaging: string } }> };

const execFileAsync = promisify(execFile);

/** An environment with no AWS credentials or configuration at all, and no network chatter from the CLI. */
function offlineEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('AWS_') && !k.startsWith('CDK_')) env[k] = v;
  return {
    ...env,
    AWS_CONFIG_FILE: '/dev/null',
    AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
    AWS_EC2_METADATA_DISABLED: 'true',
    CDK_DISABLE_CLI_TELEMETRY: 'true',
    CI: 'true',
  };
}

async function cdkSynth(outdir: string, extra: string[] = []): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync('npx', ['cdk', 'synth', '--no-notices', '--quiet', '--output', outdir, ...extra], {
      cwd: REPO_ROOT,
      env: offlineEnv(),
      maxBuffer: 64 * 1024 * 1024,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

describe('npx cdk synth with the example context of cdk.json', () => {
  let out: string;
  let synth: Awaited<ReturnType<typeof cdkSynth>>;
  let layer: string;
  let serverLayer: string;
  let template: { Resources: Record<string, { Type: string; Properties: Record<string, unknown> }> };
  let assets: Assets;

  beforeAll(async () => {
    layer = await ensureLayer('arm64');
    // The drill function (on by default) ships the pg-server layer: built here when missing (1.5 to 5 minutes).
    serverLayer = await ensureServerLayer('arm64');
    out = mkdtempSync(join(tmpdir(), 'pg-s3-backup-cdk-'));
    synth = await cdkSynth(out);
    if (synth.code === 0) {
      template = JSON.parse(readFileSync(join(out, 'PgS3Backup.template.json'), 'utf8'));
      assets = JSON.parse(readFileSync(join(out, 'PgS3Backup.assets.json'), 'utf8')) as Assets;
    }
  }, 600_000);

  afterAll(() => {
    if (out) rmSync(out, { recursive: true, force: true });
  });

  it('succeeds offline without credentials, cdk-nag included', () => {
    expect(synth.stderr + synth.stdout).not.toMatch(/AwsSolutions-|Error/);
    expect(synth.code, synth.stderr).toBe(0);
  });

  it('uses the example context and the real layer manifest', () => {
    const byType = (type: string) => Object.values(template.Resources).filter((r) => r.Type === type).map((r) => r.Properties);
    expect(byType('AWS::Scheduler::Schedule')[0]).toMatchObject({ ScheduleExpression: 'cron(0 3 * * ? *)', ScheduleExpressionTimezone: 'Europe/Paris' });
    const manifest = JSON.parse(readFileSync(join(layer, 'manifest.json'), 'utf8')) as { postgresqlVersion: string };
    expect(byType('AWS::Lambda::LayerVersion')[0]).toMatchObject({ CompatibleArchitectures: ['arm64'] });
    expect(String(byType('AWS::Lambda::LayerVersion')[0]!.Description)).toContain(manifest.postgresqlVersion);
    // The layer ships as build.sh's zip, executable bits included.
    const layerKey = (byType('AWS::Lambda::LayerVersion')[0]!.Content as { S3Key: string }).S3Key.replace(/\.zip$/, '');
    expect(assets.files[layerKey]!.source.packaging).toBe('file');
    const shipped = readFileSync(join(out, assets.files[layerKey]!.source.path));
    expect(shipped.equals(readFileSync(`${layer}.zip`))).toBe(true);
    expect(byType('AWS::Lambda::Function')[0]).toMatchObject({ Architectures: ['arm64'], VpcConfig: { SubnetIds: ['subnet-0123456789abcdef0', 'subnet-0fedcba9876543210'] } });
  });

  it('deploys the drill function with both real layers, the pg-server one as build.sh\'s zip', () => {
    const byType = (type: string) => Object.entries(template.Resources).filter(([, r]) => r.Type === type);
    const [serverId, server] = byType('AWS::Lambda::LayerVersion').find(([, r]) => String(r.Properties.Description).includes('/opt/pg-server'))!;
    const manifest = JSON.parse(readFileSync(join(serverLayer, 'manifest.json'), 'utf8')) as { postgresqlVersion: string };
    expect(String(server.Properties.Description)).toContain(`PostgreSQL ${manifest.postgresqlVersion} server`);
    const key = (server.Properties.Content as { S3Key: string }).S3Key.replace(/\.zip$/, '');
    expect(assets.files[key]!.source.packaging).toBe('file');
    expect(readFileSync(join(out, assets.files[key]!.source.path)).equals(readFileSync(`${join(serverLayer, '..')}.zip`))).toBe(true);
    const [, drill] = byType('AWS::Lambda::Function').find(([, r]) => String(r.Properties.Description).includes('restore drill'))!;
    expect(drill.Properties).toMatchObject({ Architectures: ['arm64'], MemorySize: 2048, EphemeralStorage: { Size: 10240 } });
    expect((drill.Properties.Layers as { Ref: string }[]).map((l) => l.Ref)).toContain(serverId);
    // cdk.json's example: a backup at 03:00 Europe/Paris, so the drill at 04:00.
    expect(byType('AWS::Scheduler::Schedule').map(([, r]) => r.Properties.ScheduleExpression)).toEqual(['cron(0 3 * * ? *)', 'cron(0 4 * * ? *)']);
  });

  it('bundles a handler that loads and runs: it fails cleanly at the secret when Secrets Manager is unreachable', async () => {
    const fn = Object.values(template.Resources).find((r) => r.Type === 'AWS::Lambda::Function' && String(r.Properties.Description).includes('pg_dump of each database'))!;
    const key = (fn.Properties.Code as { S3Key: string }).S3Key.replace(/\.zip$/, '');
    const bundle = join(out, assets.files[key]!.source.path, 'index.mjs');
    const script = `
      const { handler } = await import(${JSON.stringify(pathToFileURL(bundle).href)});
      try { await handler({ reason: 'bundle test' }, { awsRequestId: 'test', getRemainingTimeInMillis: () => 900000 }); console.log('UNEXPECTED SUCCESS'); }
      catch (e) { console.log('RESULT ' + JSON.stringify({ name: e.name, stage: e.stage, message: e.message })); }`;
    const { stdout } = await execFileAsync(process.execPath, ['--enable-source-maps', '--input-type=module', '-e', script], {
      cwd: tmpdir(),
      env: {
        PATH: process.env.PATH,
        AWS_REGION: 'eu-west-3',
        AWS_ACCESS_KEY_ID: 'test',
        AWS_SECRET_ACCESS_KEY: 'test',
        AWS_MAX_ATTEMPTS: '1',
        // A closed port: the SDK must be bundled and working to get this far, and no request leaves the machine.
        AWS_ENDPOINT_URL: 'http://127.0.0.1:9',
        DB_SECRET_ID: 'arn:aws:secretsmanager:eu-west-3:123456789012:secret:prod/db-AbCdEf',
        BACKUP_BUCKET: 'bundle-test-bucket',
      },
    });
    const result = JSON.parse(/^RESULT (.*)$/m.exec(stdout)?.[1] ?? 'null') as { name: string; stage: string; message: string } | null;
    expect(result, stdout).toMatchObject({ stage: 'secret' });
    expect(result!.message).toMatch(/could not read secret/);
    // Powertools metrics reached stdout as EMF: the dead-man alarm's metric, with the Database dimension only.
    expect(stdout).toMatch(/"Namespace":"PgS3Backup","Dimensions":\[\["Database"\]\]/);
  });

  it('stops with every context problem and a safe time proposal, before building anything', async () => {
    const bad = await cdkSynth(join(out, 'bad'), ['-c', 'scheduleHour=2', '-c', 'retentionCount=0']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/context "retentionCount": expected a whole number from 1 to 1000/);
    expect(bad.stderr).toMatch(/02:00 does not exist in Europe\/Paris on the spring-forward night/);
    expect(bad.stderr).toMatch(/01:00 or 03:00/);
    expect(bad.stderr).not.toMatch(/\n\s+at /);
  });
});
