/**
 * Restore, the orchestration the CLI's `restore` (and the demo) run. Order matters: the target
 * is only inspected (read-only) until the dump has been downloaded and matched against its
 * manifest (download.ts); only then is the database created (admin.ts) and pg_restore run
 * (pg-restore.ts). The dump always goes through a file, even single-job: streaming into
 * pg_restore would touch the target before the checksum is known, and `--jobs` needs a seekable
 * file anyway. Targets and their redaction are in target.ts.
 */
import { RestoreError, TargetNotEmptyError, UsageError } from '../errors.ts';
import { countUserObjects, createDatabase, databaseExists, dropDatabase } from './admin.ts';
import type { RestoreDeps } from './deps.ts';
import { downloadVerified } from './download.ts';
import { pgRestoreInto, readToc, type PgRestoreArgs } from './pg-restore.ts';
import { describeTarget, type PgTarget } from './target.ts';

export interface RestoreOptions extends PgRestoreArgs {
  readonly key: string;
  readonly target: PgTarget;
  /** Create the target database (it must not exist). */
  readonly create?: boolean | undefined;
}

export interface RestoreResult {
  readonly status: 'restored';
  readonly key: string;
  readonly sourceDatabase: string;
  /** The target, password redacted. */
  readonly target: string;
  readonly bytes: number;
  readonly sha256: string;
  readonly created: boolean;
  readonly downloadMs: number;
  readonly restoreMs: number;
  readonly totalMs: number;
  readonly warnings: readonly string[];
}

export async function restoreBackup(deps: RestoreDeps, options: RestoreOptions): Promise<RestoreResult> {
  const now = deps.now ?? Date.now;
  const started = now();
  const { target } = options;
  if (options.create && options.clean) {
    throw new UsageError('--create and --clean cannot be combined', { hint: '--create makes a new database; --clean replaces objects in an existing one. Pick one.' });
  }
  const manifest = await deps.source.readManifest(options.key);
  deps.onProgress?.({ event: 'manifest', key: manifest.key, database: manifest.database, bytes: manifest.bytes, startedAt: manifest.startedAt });

  // Read-only checks of the target first: no download when the restore is bound to be refused.
  if (options.create) {
    if (await databaseExists(target, target.database)) {
      throw new RestoreError(`database "${target.database}" already exists on ${describeTarget(target)}`, {
        hint: 'Choose a new database name in --target-url, or restore into the existing one without --create (with --clean to replace its objects).',
      });
    }
  } else if (!options.clean) {
    const objects = await countUserObjects(target);
    if (objects > 0) {
      throw new TargetNotEmptyError(`database "${target.database}" on ${describeTarget(target)} is not empty (${objects} user objects); nothing was restored`);
    }
  }

  const dump = await downloadVerified(deps, manifest);
  try {
    const toc = await readToc(deps, dump.path);
    if (options.create) await createDatabase(target, target.database);
    let restored: { ms: number; warnings: string[] };
    try {
      restored = await pgRestoreInto(deps, target, target.database, dump.path, { ...options, tablesTotal: options.tables?.length || toc.tablesWithData });
    } catch (err) {
      // A half-restored database we created is a trap: drop it so a retry starts clean.
      if (options.create) await dropDatabase(target, target.database).catch(() => {});
      throw err;
    }
    return {
      status: 'restored',
      key: manifest.key,
      sourceDatabase: manifest.database,
      target: describeTarget(target),
      bytes: dump.bytes,
      sha256: dump.sha256,
      created: options.create === true,
      downloadMs: dump.ms,
      restoreMs: restored.ms,
      totalMs: now() - started,
      warnings: restored.warnings,
    };
  } finally {
    await dump.remove();
  }
}
