/**
 * Every supported server version as a source and as a target (issue 20): a backup taken by
 * `pg-s3-backup backup` (pg_dump 18 from the layer) from PostgreSQL 13, 14, 15, 16, 17 and 18 goes
 * back with `restore --create`, `restore` into an existing database, and `verify --scratch-url`,
 * into PostgreSQL 13 … 18, and what comes back is compared as a whole with the source
 * (test/support/whole-database.ts). The source databases are production-shaped: en_US.UTF-8 (or
 * C.UTF-8 where the host lacks it), and an ICU database on the sources that have ICU (15+).
 * What an older target cannot honour (ICU before 15, the builtin provider before 17, ICU rules
 * before 16) is refused before anything is created, naming the reason.
 *
 * `npm test` runs one cell per version and every pairing with 18 (N → N, 18 → N, N → 18: 16 of
 * the 36 cells; the ICU, ICU-rules and builtin databases in the N → N and 18 → N cells, which
 * cover every boundary); `npm run test:versions` (PGS3B_VERSION_MATRIX=full) runs the whole cross
 * product with every database. The cells run concurrently (their databases have names of their own).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { awsEnv, createBucket, testClients } from '../../support/aws.ts';
import { baseEnv, databases, runCli, type CliRun, resultOf } from '../../support/cli.ts';
import { createShopDatabase, createShopRoles } from '../../support/fidelity-fixtures.ts';
import { ensureLayer } from '../../support/layer.ts';
import { startMoto, type TestAws } from '../../support/moto.ts';
import { POSTGRES_MAJORS, quoteIdent, startPostgres, type PostgresMajor, type TestPostgres } from '../../support/postgres.ts';
import { diffSnapshots, snapshot, type DatabaseSnapshot } from '../../support/whole-database.ts';

const FULL = process.env.PGS3B_VERSION_MATRIX === 'full';

interface Cell {
  readonly source: PostgresMajor;
  readonly target: PostgresMajor;
}
const CELLS: (Cell & { readonly extras: boolean })[] = POSTGRES_MAJORS.flatMap((source) => POSTGRES_MAJORS.map((target) => ({ source, target })))
  .filter(({ source, target }) => FULL || source === target || source === 18 || target === 18)
  .map((cell) => ({ ...cell, extras: FULL || cell.source === cell.target || cell.source === 18 }));

const servers = new Map<PostgresMajor, TestPostgres>();
const keys = new Map<string, string>();
let aws: TestAws;
let env: Record<string, string>;
/** en_US.UTF-8 where the host has it (RDS's default), else C.UTF-8 (Debian's and Docker's). */
let locale: string;

const server = (major: PostgresMajor) => servers.get(major)!;
/** Each source database's snapshot, taken once (the sources do not change). */
const sources = new Map<string, Promise<DatabaseSnapshot>>();
function sourceSnapshot(major: PostgresMajor, database: string): Promise<DatabaseSnapshot> {
  const k = `${major}/${database}`;
  if (!sources.has(k)) sources.set(k, snapshot(server(major), database));
  return sources.get(k)!;
}
/**
 * What differs between the restored database and its source: rows, sequences, large objects and
 * the database's properties against the source itself; the schema against the same database
 * created natively on the target by the same SQL (each server has one), since pg_dump prints views,
 * constraints and triggers as the server deparses them, and that wording moves between majors.
 * With source = target, both references are the source: the whole database is compared as is.
 */
async function compareWithSource(source: PostgresMajor, database: string, target: PostgresMajor, restored: string): Promise<string[]> {
  const [original, native, got] = await Promise.all([sourceSnapshot(source, database), sourceSnapshot(target, database), snapshot(server(target), restored)]);
  const data = diffSnapshots(original, got).filter((d) => !d.startsWith('schema '));
  if (source === target) return [...data, ...diffSnapshots(native, got).filter((d) => d.startsWith('schema '))];
  // Across majors, two differences are PostgreSQL's own, by design: 18 names a partition's NOT
  // NULL constraints after its parent when created as a partition, after itself when attached
  // (as a dump of an older major does); and a database from before 15 keeps its public schema's
  // owner and CREATE for PUBLIC (pg_dump carries them over), where one made on 15+ does not.
  const fit = (snap: DatabaseSnapshot): DatabaseSnapshot => ({ ...snap, schema: snap.schema.map((l) => l.replace(/ CONSTRAINT \w+_not_null NOT NULL/, ' NOT NULL')) });
  const schema = diffSnapshots(fit(native), fit(got)).filter((d) => d.startsWith('schema ') && !/^schema [-+] (--.*)?$/.test(d) && !(source < 15 && /SCHEMA public\b/.test(d)));
  return [...data, ...schema];
}
const key = (major: PostgresMajor, database: string) => keys.get(`${major}/${database}`)!;

/** A small database whose definition only some targets can honour. */
async function createLocaleDatabase(pg: TestPostgres, name: string, definition: string): Promise<void> {
  await pg.query(`CREATE DATABASE ${quoteIdent(name)} TEMPLATE template0 ENCODING 'UTF8' ${definition}`);
  await pg.query("CREATE TABLE names (name text PRIMARY KEY); INSERT INTO names VALUES ('zebra'), ('åsa'), ('ärla'), ('örn'), ('anna'), ('Zorro')", [], name);
}

/** Databases each source holds, beside `shop`, with the first target major that can create them. */
function extraDatabases(source: PostgresMajor): { name: string; definition: string; since: PostgresMajor; why: RegExp; icu?: boolean }[] {
  const out = [];
  if (source >= 15) out.push({ name: 'shop_icu', definition: "LOCALE_PROVIDER icu ICU_LOCALE 'sv-SE' LOCALE 'C.UTF-8'", since: 15 as const, why: /ICU.*PostgreSQL 15/ });
  if (source >= 16) out.push({ name: 'shop_icu_rules', definition: "LOCALE_PROVIDER icu ICU_LOCALE 'sv-SE' ICU_RULES '&V << w <<< W' LOCALE 'C.UTF-8'", since: 16 as const, why: /ICU_RULES.*PostgreSQL 16/, icu: true });
  if (source >= 17) out.push({ name: 'shop_builtin', definition: "LOCALE_PROVIDER builtin BUILTIN_LOCALE 'C.UTF-8' LOCALE 'C.UTF-8'", since: 17 as const, why: /builtin.*PostgreSQL 17/ });
  return out;
}

beforeAll(async () => {
  const [moto] = await Promise.all([startMoto(), ensureLayer()]);
  aws = moto;
  const started = await Promise.all(POSTGRES_MAJORS.map(async (major) => [major, await startPostgres({ major })] as const));
  for (const [major, pg] of started) servers.set(major, pg);
  const bucket = await createBucket(testClients(aws.endpoint));
  env = { ...baseEnv(), ...awsEnv(aws.endpoint), BACKUP_BUCKET: bucket, RETENTION_COUNT: '7' };
  const [has] = await server(18).query<{ n: string }>("SELECT count(*) AS n FROM pg_collation WHERE collname IN ('en_US.utf8', 'en_US.UTF-8')");
  locale = Number(has!.n) > 0 ? 'en_US.UTF-8' : 'C.UTF-8';

  await Promise.all(
    POSTGRES_MAJORS.map(async (major) => {
      const pg = server(major);
      // Production-shaped on every major: the cluster itself (template1, `postgres`) in the locale.
      const [{ v, collate } = { v: '', collate: '' }] = await pg.query<{ v: string; collate: string }>(
        "SELECT current_setting('server_version_num') AS v, (SELECT datcollate FROM pg_database WHERE datname = 'template1') AS collate",
      );
      expect(Math.floor(Number(v) / 10000), `the PostgreSQL ${major} test server's version`).toBe(major);
      expect(collate, `the PostgreSQL ${major} test cluster's locale`).toBe(locale);
      await createShopRoles(pg);
      await createShopDatabase(pg, 'shop', `LOCALE '${locale}'`);
      const extra = extraDatabases(major);
      for (const d of extra) await createLocaleDatabase(pg, d.name, d.definition);
      const run = await runCli(['backup', '--reason', `versions ${major}`], { ...env, DATABASE_URL: pg.urlFor('shop'), DATABASES: ['shop', ...extra.map((d) => d.name)].join(',') });
      expect(run.code, `the backup of PostgreSQL ${major}: ${run.stderr}`).toBe(0);
      for (const b of run.result!.backups as { database: string; key: string }[]) keys.set(`${major}/${b.database}`, b.key);
    }),
  );
}, 600_000);

afterAll(async () => {
  await Promise.all([...servers.values()].map((pg) => pg.stop()));
  await aws?.stop();
});

const restore = (source: PostgresMajor, database: string, target: TestPostgres, into: string, ...extra: string[]) =>
  runCli(['restore', '--key', key(source, database), '--target-url', target.urlFor(into), ...extra], env);

const verify = (source: PostgresMajor, database: string, target: TestPostgres) =>
  runCli(['verify', '--key', key(source, database), '--scratch-url', target.url, '--json'], env);

interface Report {
  status: string;
  scratchDatabase: string;
  problems: { message: string; hint?: string }[];
  warnings: string[];
  encoding: string;
  locale: string;
  tables: { schema: string; table: string; rows: number }[];
}
const report = (run: CliRun) => resultOf<Report>(run);

/** What a restore without --create leaves out by design: the database's own definition (its comment, grants, settings, owner, limit). */
const DATABASE_LEVEL = /^property (comment|acl|settings|connection_limit|owner): |^schema [-+] (COMMENT ON DATABASE|ALTER DATABASE|ALTER ROLE .* IN DATABASE|GRANT .* ON DATABASE|REVOKE .* ON DATABASE|CREATE DATABASE)/;

// Up to five cells at once, each running the CLI and pg_restore: room for a loaded 2-core machine.
describe.concurrent('every supported server version', { timeout: 400_000 }, () => {
  describe.each(CELLS)('PostgreSQL $source → PostgreSQL $target', ({ source, target, extras }) => {
    const into = (what: string) => `v${source}_${what}`;

    it('restore --create gives back the whole database', async () => {
      const run = await restore(source, 'shop', server(target), into('create'), '--create', '--jobs', '2');
      expect(run.code, run.stderr).toBe(0);
      const diff = await compareWithSource(source, 'shop', target, into('create'));
      expect(diff, diff.join('\n')).toEqual([]);
      const warnings = (run.result!.warnings as string[]).join('\n');
      // pg_dump 18 sets transaction_timeout, unknown before 17: a warning naming why, nothing else.
      if (target < 17) expect(warnings).toMatch(/transaction_timeout failed: the server is older than PostgreSQL 17/);
      else expect(warnings).toBe('');
    });

    it('restore into an existing database gives back every object and row (database-level settings only with --create)', async () => {
      await server(target).query(`CREATE DATABASE ${into('existing')} TEMPLATE template0 ENCODING 'UTF8' LOCALE '${locale}'`);
      const run = await restore(source, 'shop', server(target), into('existing'));
      expect(run.code, run.stderr).toBe(0);
      const diff = await compareWithSource(source, 'shop', target, into('existing'));
      // Comment lines and blank lines of the dump follow the database-level entries left out.
      // So do the `\\connect` and session settings pg_dump writes again after them.
      const objects = diff.filter((d) => !DATABASE_LEVEL.test(d) && !/^schema [-+] (--.*|\\connect <db>|SET \w+ = .*|SELECT pg_catalog\.set_config\(.*)?$/.test(d));
      expect(objects, objects.join('\n')).toEqual([]);
      expect((run.result!.notRestored as string[]).join('\n')).toMatch(/COMMENT ON DATABASE .*database-level: applied only with --create/);
    });

    it('verify --scratch-url restores, counts every row, reports the locale, and drops its scratch database', async () => {
      const run = await verify(source, 'shop', server(target));
      const r = report(run);
      expect(r.problems).toEqual([]);
      expect(r.status).toBe('ok');
      expect(run.code).toBe(0);
      expect(r.encoding).toBe('UTF8');
      expect(r.locale).toBe(`libc:${locale}`);
      const counts = Object.fromEntries(r.tables.map((t) => [`${t.schema}.${t.table}`, t.rows]));
      expect(counts).toEqual({
        'public.documents': 2,
        'sales.customers': 300,
        'sales.events': 0,
        'sales.events_2025': 213,
        'sales.events_2026': 187,
        'sales.orders': 1500,
        'sales.top_customers': 20,
      });
      expect(await databases(server(target))).not.toContain(report(run).scratchDatabase);
    });

    it.each(extras ? extraDatabases(source) : [])('$name: restored whole where the target can create it, else refused naming why (nothing created)', async ({ name, since, why: reason, icu }) => {
      // Before 15 an ICU database is refused for ICU itself, whatever else it sets.
      const why = icu && target < 15 ? /ICU as its locale provider.*PostgreSQL 15/ : reason;
      const created = into(name);
      const [run, checked] = await Promise.all([restore(source, name, server(target), created, '--create'), verify(source, name, server(target))]);
      if (target >= since) {
        expect(run.code, run.stderr).toBe(0);
        const diff = await compareWithSource(source, name, target, created);
        expect(diff, diff.join('\n')).toEqual([]);
        expect(report(checked)).toMatchObject({ status: 'ok', problems: [] });
        expect(report(checked).tables).toEqual([expect.objectContaining({ schema: 'public', table: 'names', rows: 6 })]);
      } else {
        expect(run.code).toBe(1);
        expect(run.stderr).toMatch(why);
        expect(run.stderr).toMatch(new RegExp(`PostgreSQL ${target}\\b`));
        expect(run.stderr).toMatch(/nothing was restored/);
        expect(await databases(server(target))).not.toContain(created);
        const r = report(checked);
        expect(r.status).toBe('failed');
        expect(r.problems.map((p) => p.message).join('\n')).toMatch(why);
        // The refusal is the only problem: no table is reported missing for it.
        expect(r.problems.map((p) => p.message).join('\n')).not.toMatch(/does not exist after the restore/);
      }
    });
  });
});
