/**
 * The backup role the README recommends must work. `pg_read_all_data` alone cannot read large
 * objects nor rows hidden by row-level security: the backup then fails, and the alert must say
 * what is missing (not "grant pg_read_all_data", which the role already has). The README's own
 * SQL blocks ("The database role") are then run as written, and the same backups must succeed.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../../../engine/backup/backup.ts';
import { loadConfig } from '../../../engine/config.ts';
import { createDeps } from '../../../engine/deps.ts';
import { noMetrics, type Log, lambdaDeps } from '../../../lambda/powertools.ts';
import { REPO_ROOT } from '../../../layers/pg-dump/paths.ts';
import { awsEnv, createAlertInbox, createSecret, listKeys, type AlertInbox, type TestClients } from '../../support/aws.ts';
import { createDatabase } from '../../support/fixtures.ts';
import type { TestAws } from '../../support/moto.ts';
import type { TestPostgres } from '../../support/postgres.ts';
import { startBackupServices } from '../../support/services.ts';

const ROLE_PASSWORD = 'backup-role-pw-7Hq';
const quiet: Log = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

/** The body of the README code block whose info string is exactly "sql <name>". */
function readmeSql(name: string): string {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const match = new RegExp('^```sql ' + name + '\\n([\\s\\S]*?)^```$', 'm').exec(readme);
  if (!match?.[1]) throw new Error(`README.md has no \`\`\`sql ${name} block`);
  return match[1];
}

describe('the recommended backup role', () => {
  let pgsrv: TestPostgres;
  let aws: TestAws;
  let c: TestClients;
  let layer: string;
  let bucket: string;
  let inbox: AlertInbox;
  let env: Record<string, string>;

  beforeAll(async () => {
    ({ pg: pgsrv, aws, layer, c, bucket } = await startBackupServices());
    inbox = await createAlertInbox(c);
    // The application: its own role owns a large object in `media` and an RLS table in `tenants`.
    await pgsrv.query('CREATE ROLE app LOGIN');
    for (const db of ['media', 'tenants']) {
      await createDatabase(pgsrv, db);
      await pgsrv.query('GRANT CREATE ON SCHEMA public TO app', [], db);
    }
    await pgsrv.query("SET ROLE app; SELECT lo_from_bytea(0, 'invoice.pdf bytes'); RESET ROLE", [], 'media');
    await pgsrv.query(
      `SET ROLE app;
       CREATE TABLE accounts (id int PRIMARY KEY, tenant text NOT NULL);
       INSERT INTO accounts VALUES (1, 'acme'), (2, 'globex');
       ALTER TABLE accounts ENABLE ROW LEVEL SECURITY;
       CREATE POLICY own_tenant ON accounts USING (tenant = current_user);
       RESET ROLE`,
      [],
      'tenants',
    );
    // What the README used to recommend: pg_read_all_data only.
    await pgsrv.query(`CREATE ROLE read_all_only LOGIN PASSWORD '${ROLE_PASSWORD}'; GRANT pg_read_all_data TO read_all_only`);
    const secret = await createSecret(c, { host: pgsrv.host, port: pgsrv.port, username: 'read_all_only', password: ROLE_PASSWORD, dbname: 'media' });
    env = {
      ...awsEnv(aws.endpoint),
      DB_SECRET_ID: secret,
      BACKUP_BUCKET: bucket,
      BACKUP_PREFIX: 'roles/',
      ALERT_TOPIC_ARN: inbox.topicArn,
      PG_DUMP_BIN: join(layer, 'bin', 'pg_dump'),
      DATABASES: 'media,tenants',
      BACKUP_GLOBALS: 'true',
    };
  });
  afterAll(async () => {
    await Promise.all([pgsrv?.stop(), aws?.stop()]);
  });

  const run = () => {
    const config = loadConfig(env);
    return runBackup({}, config, createDeps(config, lambdaDeps({ s3: c.s3, secrets: c.secrets, sns: c.sns, log: quiet, metrics: noMetrics })));
  };

  it('with pg_read_all_data alone, fails on large objects and row-level security, and the alerts name what to grant', async () => {
    const res = await run();
    expect(res.status).toBe('failed');
    expect(res.backups).toEqual([]);
    const byDb = Object.fromEntries(res.failures.map((f) => [f.database, f]));
    expect(byDb.media).toMatchObject({ stage: 'dump', message: expect.stringMatching(/permission denied for large object/) });
    expect(byDb.media!.hint).toMatch(/large objects/);
    expect(byDb.media!.hint).toMatch(/GRANT SELECT ON LARGE OBJECT/);
    expect(byDb.media!.hint).toMatch(/lo_compat_privileges/);
    expect(byDb.tenants).toMatchObject({ stage: 'dump', message: expect.stringMatching(/row-level security/) });
    expect(byDb.tenants!.hint).toMatch(/BYPASSRLS/);
    // Never the advice to grant what the role already has.
    for (const f of res.failures) expect(f.hint).not.toMatch(/grant it pg_read_all_data/);
    // pg_dumpall --globals-only --no-role-passwords needs nothing more than pg_read_all_data.
    expect((await listKeys(c, bucket, 'roles/_globals/')).length).toBe(1);
    const alerts = await inbox.receive(2);
    expect(alerts.map((a) => a.subject).sort()).toEqual(['[pg-s3-backup] FAILED media: dump', '[pg-s3-backup] FAILED tenants: dump']);
    expect(alerts.find((a) => a.subject.includes('media'))!.message).toMatch(/What to do: .*GRANT SELECT ON LARGE OBJECT/);
    expect(alerts.find((a) => a.subject.includes('tenants'))!.message).toMatch(/What to do: .*BYPASSRLS/);
  });

  it("after the README's SQL blocks, a non-superuser role backs up both databases (pg_dump refuses a partial RLS dump: success means every row) and the globals", async () => {
    await pgsrv.query(readmeSql('backup-role'));
    // The documented statements create the role without a password (set by hand, kept in the secret).
    await pgsrv.query(`ALTER ROLE pgs3_backup PASSWORD '${ROLE_PASSWORD}'`);
    env = { ...env, DB_SECRET_ID: await createSecret(c, { host: pgsrv.host, port: pgsrv.port, username: 'pgs3_backup', password: ROLE_PASSWORD, dbname: 'media' }) };
    await pgsrv.query(readmeSql('backup-role-per-database'), [], 'media');
    // A large object created after the grants is covered by the default privileges (PostgreSQL 18+).
    await pgsrv.query("SET ROLE app; SELECT lo_from_bytea(0, 'created later'); RESET ROLE", [], 'media');
    const [role] = await pgsrv.query<{ rolsuper: boolean; rolbypassrls: boolean }>("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = 'pgs3_backup'");
    expect(role).toEqual({ rolsuper: false, rolbypassrls: true });

    const res = await run();
    expect(res.failures).toEqual([]);
    expect(res.status).toBe('succeeded');
    expect(res.backups.map((b) => b.database).sort()).toEqual(['media', 'tenants']);
    const keys = await listKeys(c, bucket, 'roles/');
    expect(keys.filter((k) => k.startsWith('roles/_globals/'))).toHaveLength(2);
    expect(keys.filter((k) => k.endsWith('.dump.json'))).toHaveLength(2);
  });
});
