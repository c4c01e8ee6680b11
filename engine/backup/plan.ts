/**
 * A backup's dry run (`pg-s3-backup backup --dry-run`): what a run would do now, found by reading
 * only. It reads the credentials, picks the databases, runs `pg_dump --version`, connects to each
 * database and checks its server against pg_dump (what `runBackup` does before it writes), and
 * lists the bucket to say which backups pruning would delete once tonight's backup is counted,
 * and which stale multipart uploads it would abort. It writes no object, starts no upload,
 * publishes no alert or metric: a dry run that fails exits 1 and says why, to whoever ran it.
 */
import type { Config } from '../config.ts';
import type { Deps } from '../deps.ts';
import { PgS3BackupError, type Stage } from '../errors.ts';
import { redact as redactText } from '../observability.ts';
import { connectionFor } from '../pg/connection.ts';
import { checkServerVersion, toolCommand, toolVersion, type Version } from '../pg/pg-dump.ts';
import { fetchCredentials } from '../pg/credentials.ts';
import { databasesToBackUp } from '../pg/discover.ts';
import { buildDumpKey, buildGlobalsKey, manifestKeyFor } from '../store/backup-key.ts';
import { ALL_DATABASES, GLOBALS_ALERT_NAME, type BackupFailure, type BackupRequest } from './backup.ts';
import { createStore } from '../store/create.ts';
import { pruneDatabase, pruneGlobals, type LockedBackup } from './retention.ts';

export interface PlannedBackup {
  readonly database: string;
  /** The key a backup taken now would get (a run moves it on by a millisecond if that one is taken). */
  readonly key: string;
  readonly serverVersion: string;
  /** pg_database_size: roughly what pg_dump reads (the dump is compressed). */
  readonly databaseBytes: number | null;
  /** Keys the prune step after this backup would delete (with tonight's backup counted); empty with prune off. */
  readonly wouldPrune: readonly string[];
  /** Backups the rules would delete but Object Lock keeps. */
  readonly locked: readonly LockedBackup[];
}

export interface BackupPlan {
  readonly status: 'ready' | 'failed';
  readonly dryRun: true;
  /** Whether the run would prune (false with `--no-prune`). */
  readonly prune: boolean;
  readonly pgDumpVersion: string | null;
  readonly backups: readonly PlannedBackup[];
  /** BACKUP_GLOBALS: the key of the roles file, and the older ones pruning would delete. */
  readonly globals: { readonly key: string; readonly wouldPrune: readonly string[] } | null;
  /** Multipart uploads under the prefix old enough to be aborted (STALE_UPLOAD_AGE_SECONDS). */
  readonly staleUploads: readonly string[];
  /** What would make the run fail, per database, as the run would report it. */
  readonly failures: readonly BackupFailure[];
}

export async function planBackup(request: Pick<BackupRequest, 'databases' | 'prune'>, config: Config, deps: Deps, invocation: { readonly signal?: AbortSignal | undefined } = {}): Promise<BackupPlan> {
  const signal = invocation.signal ?? new AbortController().signal;
  const store = createStore(config, deps).bounded(signal);
  const prune = request.prune !== false;
  const now = deps.now();
  const failures: BackupFailure[] = [];
  const backups: PlannedBackup[] = [];
  let secrets: string[] = [];
  const fail = (database: string, err: unknown, stage: Stage, key?: string) => {
    const e = err instanceof PgS3BackupError ? err : undefined;
    const text = e ? e.message : `${(err as Error).name}: ${(err as Error).message}`;
    failures.push({ database, stage: e?.stage ?? stage, message: redactText(text, secrets), hint: e?.hint, key });
  };
  const result = (pgDump: Version | undefined, globals: BackupPlan['globals'] = null, staleUploads: readonly string[] = []): BackupPlan => ({
    status: failures.length === 0 ? 'ready' : 'failed', dryRun: true, prune, pgDumpVersion: pgDump?.text ?? null, backups, globals, staleUploads, failures,
  });

  let creds;
  try {
    creds = await fetchCredentials(config.credentials, deps.secrets, signal);
    secrets = [creds.password];
  } catch (err) {
    fail(ALL_DATABASES, err, 'secret');
    return result(undefined);
  }
  let databases: readonly string[];
  try {
    databases = await databasesToBackUp(request.databases, config, creds, deps);
  } catch (err) {
    fail(ALL_DATABASES, err, 'connect');
    return result(undefined);
  }
  if (databases.length === 0) {
    failures.push({ database: ALL_DATABASES, stage: 'config', message: 'no database to back up: set DATABASES, or put "dbname" in the secret (or the database in DATABASE_URL)', hint: undefined, key: undefined });
    return result(undefined);
  }
  let pgDump: Version | undefined;
  try {
    pgDump = await toolVersion(deps.spawn, toolCommand('pg_dump', config, deps.pgTools));
  } catch (err) {
    for (const database of databases) fail(database, err, 'dump');
    return result(undefined);
  }

  for (const database of databases) {
    if (signal.aborted) throw signal.reason as Error;
    const key = buildDumpKey(store.prefix, database, now);
    let stage: Stage = 'connect';
    try {
      const server = await deps.serverInfo(connectionFor(creds, database, config));
      checkServerVersion(server, pgDump);
      stage = 'prune';
      const pruned = prune
        ? await pruneDatabase(store, database, {
            retentionCount: config.retentionCount, gfs: config.gfs, now, dryRun: true, events: deps.events,
            incoming: { database, key, manifestKey: manifestKeyFor(key), startedAt: now, bytes: 0, lastModified: undefined, storedAt: undefined },
          })
        : undefined;
      backups.push({ database, key, serverVersion: server.text, databaseBytes: server.databaseBytes ?? null, wouldPrune: pruned?.deleted ?? [], locked: pruned?.locked ?? [] });
    } catch (err) {
      fail(database, err, stage, key);
    }
  }

  let globals: BackupPlan['globals'] = null;
  if (config.backupGlobals) {
    const key = buildGlobalsKey(store.prefix, now, { encrypted: (config.encryptRecipients?.length ?? 0) > 0 });
    try {
      const pruned = prune ? await pruneGlobals(store, { retentionCount: config.retentionCount, gfs: config.gfs, now, dryRun: true, events: deps.events, incoming: key }) : undefined;
      globals = { key, wouldPrune: pruned?.deleted ?? [] };
    } catch (err) {
      fail(GLOBALS_ALERT_NAME, err, 'prune', key);
    }
  }
  let staleUploads: readonly string[] = [];
  if (prune) {
    try {
      staleUploads = (await store.sweepStaleUploads({ minAgeMs: config.staleUploadAgeMs, dryRun: true, events: deps.events })).aborted.map((u) => u.key);
    } catch (err) {
      // As in a run: stale uploads cost only their parts; the lifecycle rule is the backstop.
      deps.events({ event: 'warning', message: redactText((err as Error).message, secrets) });
    }
  }
  return result(pgDump, globals, staleUploads);
}
