/**
 * The drill function's check mode (`{"check": true}`, run by `pg-s3-backup doctor` on deploy
 * day): what the nightly drill needs from the place it runs, tried without a restore. The
 * throwaway server is initialised and started (initdb, then PostgreSQL's SysV shared-memory
 * segment and its mmap'd dynamic shared memory, which a sandbox may refuse and nothing here can
 * emulate), a database is created in each locale the bucket's databases use (read from their
 * newest drill reports: what the restore will ask the server for), and the server is stopped and
 * its folder removed. Each step is one ✓/✗ check with what to do.
 */
import { z } from 'zod';
import { createSource } from '../store/create.ts';
import { describeError, fail, notChecked, pass, report, warn, type Check, type CheckReport } from '../check/check.ts';
import type { Config } from '../config.ts';
import type { Deps } from '../deps.ts';
import { withClient } from '../pg/client.ts';
import type { BackupSource } from '../store/store.ts';
import { quoteIdent } from './database-definition.ts';
import { startThrowawayServer, throwawayTarget, type ThrowawayServer, type ThrowawayServerOptions } from './throwaway-server.ts';

/** When no drill report tells a database's locale: the defaults of RDS and of most installs. */
export const DEFAULT_CHECK_LOCALES: readonly DatabaseLocale[] = [
  { provider: 'libc', locale: 'en_US.UTF-8', encoding: 'UTF8' },
  { provider: 'libc', locale: 'C.UTF-8', encoding: 'UTF8' },
];

export interface DatabaseLocale {
  readonly provider: 'libc' | 'icu' | 'builtin';
  readonly locale: string;
  readonly encoding: string;
}

const ReportLocale = z.looseObject({ verify: z.looseObject({ encoding: z.string().min(1), locale: z.string().min(1) }).nullish() });

/** `libc:en_US.UTF-8` (the drill report's form, verify.ts) as a provider and a locale. */
export function parseLocale(text: string, encoding: string): DatabaseLocale | undefined {
  const m = /^(libc|icu|builtin):(.+)$/.exec(text);
  return m ? { provider: m[1] as DatabaseLocale['provider'], locale: m[2]!, encoding } : undefined;
}

/** The statement that creates a database in `l` (as a restore's CREATE DATABASE asks for it). */
export function createDatabaseSql(name: string, l: DatabaseLocale, literal: (s: string) => string): string {
  const provider =
    l.provider === 'libc' ? `LOCALE_PROVIDER libc LOCALE ${literal(l.locale)}` : l.provider === 'icu' ? `LOCALE_PROVIDER icu ICU_LOCALE ${literal(l.locale)}` : `LOCALE_PROVIDER builtin BUILTIN_LOCALE ${literal(l.locale)}`;
  return `CREATE DATABASE ${quoteIdent(name)} TEMPLATE template0 ENCODING ${literal(l.encoding)} ${provider}`;
}

/** The locales of the databases' newest drill reports, each with the databases using it. */
export async function bucketLocales(store: Pick<BackupSource, 'listBackups' | 'readReport'>, databases: readonly string[]): Promise<{ locales: Map<string, { locale: DatabaseLocale; databases: string[] }>; unknown: string[] }> {
  const locales = new Map<string, { locale: DatabaseLocale; databases: string[] }>();
  const unknown: string[] = [];
  for (const database of databases) {
    let found: DatabaseLocale | undefined;
    try {
      const newest = (await store.listBackups(database)).complete.find((b) => b.drillReport);
      if (newest?.drillReport) {
        const parsed = ReportLocale.safeParse(await store.readReport(newest.drillReport.key));
        if (parsed.success && parsed.data.verify) found = parseLocale(parsed.data.verify.locale, parsed.data.verify.encoding);
      }
    } catch {
      // An unreadable report tells no locale: the database is listed as unknown.
    }
    if (!found) {
      unknown.push(database);
      continue;
    }
    const key = `${found.provider}:${found.locale} ${found.encoding}`;
    const entry = locales.get(key) ?? { locale: found, databases: [] };
    entry.databases.push(database);
    locales.set(key, entry);
  }
  return { locales, unknown };
}

const START_FIX =
  'The drill cannot start PostgreSQL here. If the message names shared memory (shmget, "could not create shared memory segment"), the sandbox refuses SysV shared memory: drill from a host or the Fargate runner (`pg-s3-backup verify --latest --database <name> --local`) and open an issue with this message. ' +
  'If it names initdb or a missing library, the pg-server layer does not match the function\'s architecture: rebuild it (npm run build:layer:server) and deploy. If it names space, raise drillEphemeralStorageMiB.';

/** Runs the check: start, a database per locale, stop. Never throws; every finding is a check. */
export async function checkDrill(config: Config, deps: Pick<Deps, 's3'>, server: ThrowawayServerOptions): Promise<CheckReport> {
  const checks: Check[] = [];
  const store = createSource(config, deps);
  let locales: Awaited<ReturnType<typeof bucketLocales>>;
  try {
    const databases = config.databases ?? (await store.listDatabases());
    locales = await bucketLocales(store, databases);
  } catch (err) {
    const e = describeError(err);
    checks.push(warn('locales of the bucket\'s databases', `cannot read them: ${e.detail}; checking the common defaults instead`, e.fix));
    locales = { locales: new Map(), unknown: [] };
  }
  const wanted = [...locales.locales.values()];
  if (wanted.length === 0) for (const locale of DEFAULT_CHECK_LOCALES) wanted.push({ locale, databases: [] });
  if (locales.unknown.length > 0) {
    checks.push(warn('locales of the bucket\'s databases', `no drill report yet for ${locales.unknown.join(', ')}: their locale is learnt at their first drill${locales.locales.size === 0 ? ` (checking ${DEFAULT_CHECK_LOCALES.map((l) => l.locale).join(' and ')} meanwhile)` : ''}`, 'Run the drill once (the drill function with {"databases": [...]}), then doctor again.'));
  }

  const startName = 'throwaway server: initdb and start (shared memory)';
  const t0 = Date.now();
  let running: ThrowawayServer;
  try {
    running = await startThrowawayServer(server);
  } catch (err) {
    checks.push(fail(startName, describeError(err).detail, START_FIX));
    for (const w of wanted) checks.push(notChecked(`locale ${w.locale.provider}:${w.locale.locale} (${w.locale.encoding})`, `${startName} failed`));
    return report(checks);
  }
  checks.push(pass(startName, `PostgreSQL started in ${Date.now() - t0} ms from ${running.dir}`));
  try {
    for (const [i, w] of wanted.entries()) {
      const name = `locale ${w.locale.provider}:${w.locale.locale} (${w.locale.encoding})`;
      const used = w.databases.length > 0 ? `used by ${w.databases.join(', ')}` : 'a common default';
      const scratch = `pgs3_locale_check_${i}`;
      try {
        await withClient(throwawayTarget(running), 'postgres', async (c) => {
          await c.query(createDatabaseSql(scratch, w.locale, (s) => c.escapeLiteral(s)));
          await c.query(`DROP DATABASE ${quoteIdent(scratch)}`);
        });
        checks.push(pass(name, `a database in this locale was created and dropped (${used})`));
      } catch (err) {
        const fix =
          w.locale.provider === 'libc'
            ? 'The pg-server layer ships no libc locale files (layers/pg-server/README.md): a database in this locale cannot be drilled in the function; drill it from a host that has the locale (`pg-s3-backup verify --latest --database <name> --local`).'
            : 'This server cannot create the locale (its ICU or PostgreSQL version lacks it): drill the database from a host (`pg-s3-backup verify --latest --database <name> --local`).';
        // A default no known database uses is worth knowing, not a failure of tonight's drill.
        checks.push(w.databases.length > 0 ? fail(name, `${describeError(err).detail} (${used})`, fix) : warn(name, `${describeError(err).detail} (${used}; no database is known to use it)`, fix));
      }
    }
  } finally {
    const stopName = 'throwaway server: stopped, folder removed';
    try {
      await running.stop();
      checks.push(pass(stopName, `${running.dir} removed`));
    } catch (err) {
      checks.push(fail(stopName, describeError(err).detail, 'The next drill sweeps a folder left behind; if this repeats, read the drill function\'s log.'));
    }
  }
  return report(checks);
}
