/**
 * Restore, the orchestration the CLI's `restore` (and the demo) run. Order matters: the target
 * is only inspected (read-only) until the dump has been downloaded and matched against its
 * manifest (download.ts); only then is the database created (admin.ts) and pg_restore run
 * (pg-restore.ts). The dump always goes through a file, even single-job: streaming into
 * pg_restore would touch the target before the checksum is known, and `--jobs` needs a seekable
 * file anyway. Targets, their redaction and clients are engine/pg's (connection.ts, client.ts).
 */
import { DefinitionUnreadableError, RestoreError, TargetNotEmptyError, UsageError } from '../errors.ts';
import { countUserObjects, createDatabase, databaseExists, dropDatabase } from './admin.ts';
import type { RestoreDeps } from './deps.ts';
import { checkedManifest, downloadVerified, identitiesFor } from './download.ts';
import { hintForPgRestore, pgRestoreInto, readDefinition, readDropStatements, readToc, summarizeErrors, writeUseList, type PgRestoreArgs } from './pg-restore.ts';
import { serverVersionNum, withClient } from '../pg/client.ts';
import { describeConnection, type PgConnection } from '../pg/connection.ts';
import { fitSessionStatements } from './server-versions.ts';
import { schemaGrantsFirst, selectTables, type TocEntry } from './toc.ts';
import { oneArchiveDataOrder, printableTable, targetForeignKeys } from './data-only-order.ts';
import { partTables, restoreDataParts } from './sharded-restore.ts';
import { selectPartData } from './sharded-table.ts';

export interface RestoreOptions extends PgRestoreArgs {
  readonly key: string;
  readonly target: PgConnection;
  /** Create the target database (it must not exist), as the backup defines it. */
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
  /** An encrypted backup: the archive it decrypted to, matched against the manifest. */
  readonly decrypted?: { readonly bytes: number; readonly sha256: string };
  readonly created: boolean;
  /** `schema.table` of the tables restored with --table (with what they need). */
  readonly tables?: readonly string[];
  readonly downloadMs: number;
  readonly restoreMs: number;
  readonly totalMs: number;
  readonly warnings: readonly string[];
  /** What the backup holds that this restore did not apply, and why (options, or no --create). */
  readonly notRestored: readonly string[];
}

function checkOptions(options: RestoreOptions): void {
  const pairs: [boolean | undefined, boolean | undefined, string, string][] = [
    [options.create, options.clean, '--create and --clean cannot be combined', '--create makes a new database; --clean replaces objects in an existing one. Pick one.'],
    [options.schemaOnly, options.dataOnly, '--schema-only and --data-only cannot be combined', 'Leave both out to restore schema and data.'],
    [options.create, options.dataOnly, '--create and --data-only cannot be combined', '--data-only fills the tables of an existing database whose schema is already there.'],
    [options.clean, options.dataOnly, '--clean and --data-only cannot be combined', '--data-only adds rows to existing tables; --clean would drop them first.'],
  ];
  for (const [a, b, message, hint] of pairs) if (a && b) throw new UsageError(message, { hint });
}

/**
 * `--data-only` of a one-archive backup into tables whose foreign keys are in place: a whole
 * database's archive lists table data by name (pg_dump orders data by a key only in a data-only
 * dump), so a referencing table's (or partition's) rows may come first and be refused. When that order breaks a key of the target, a `--use-list` of the entries
 * (`ids`: the `--table` selection) in foreign-key order (data-only-order.ts); the downloaded file
 * is seekable, so pg_restore reads it in that order. Undefined when the order breaks no key.
 */
async function dataInKeyOrder(deps: RestoreDeps, target: PgConnection, dumpFile: string, entries: readonly TocEntry[], ids: ReadonlySet<number> | undefined, jobs: number | undefined): Promise<string | undefined> {
  const order = oneArchiveDataOrder(entries, ids, await targetForeignKeys(target, target.database));
  if (!order) return undefined;
  const [first, ...more] = order.against;
  if (jobs !== undefined && jobs > 1) {
    const broken = first ? ` (${printableTable(first.from)} before ${printableTable(first.to)}, which it references${more.length > 0 ? `; ${more.length} more such key${more.length === 1 ? '' : 's'}` : ''})` : '';
    deps.events?.({
      event: 'warning',
      message: `--data-only: the archive's table data comes in an order the target's foreign keys refuse${broken}: it loads in foreign-key order, in one pg_restore job instead of --jobs ${jobs}`,
    });
  }
  return writeUseList(dumpFile, 'data-only.list', order.entries, new Set(order.entries.map((e) => e.id)));
}

export async function restoreBackup(deps: RestoreDeps, options: RestoreOptions): Promise<RestoreResult> {
  const now = deps.now ?? Date.now;
  const started = now();
  const { target } = options;
  checkOptions(options);
  const manifest = checkedManifest(await deps.source.readManifest(options.key), options.key);
  deps.events?.({ event: 'restore.manifest', key: manifest.key, database: manifest.database, bytes: manifest.bytes, startedAt: manifest.startedAt });

  // An encrypted backup needs an identity: a missing or unreadable one is an error before the
  // target is even looked at (a wrong one fails at the age header, the download's first bytes).
  const identities = await identitiesFor(deps, manifest);

  // Read-only checks of the target first: no download when the restore is bound to be refused.
  if (options.create) {
    if (await databaseExists(target, target.database)) {
      throw new RestoreError(`database "${target.database}" already exists on ${describeConnection(target)}`, {
        hint: 'Choose a new database name in --target-url, or restore into the existing one without --create (with --clean to replace its objects).',
      });
    }
  } else if (!options.clean && !options.dataOnly) {
    const objects = await countUserObjects(target);
    if (objects > 0) {
      throw new TargetNotEmptyError(`database "${target.database}" on ${describeConnection(target)} is not empty (${objects} user objects); nothing was restored`);
    }
  }

  const dump = await downloadVerified(deps, manifest, identities);
  try {
    const toc = await readToc(deps, dump.path, manifest.tables);
    // Unknown table names are refused here, before anything is created.
    const selection = options.tables?.length ? selectTables(toc.entries, options.tables) : undefined;
    const listFile = selection ? await writeUseList(dump.path, 'tables.list', toc.entries, selection.ids) : undefined;
    // A sharded backup: the selected tables' rows are in some of its data archives (their TOCs say which).
    const partData = selection && manifest.parts && !options.schemaOnly ? await selectPartData(deps, manifest, identities, toc.entries, selection, dump.path) : undefined;
    const notRestored: string[] = selection ? selection.leftOut.map((e) => `${e} (it needs a table that --table did not select)`) : [];
    const definition = await readDefinition(deps, dump.path, toc, manifest.database, target.database).catch((err: unknown) => {
      // Without --create the definition is only reported: say why it cannot be, and restore the tables.
      if (!(err instanceof DefinitionUnreadableError) || options.create) throw err;
      notRestored.push(`${err.message} (database-level: its definition is not restored)`);
      return [];
    });

    // Written before the target is touched: a failure here (a full temporary folder) leaves no database --create made.
    // Schemas and their grants first when owners and grants are restored: the roles that own
    // tables may then be given them by a restore that is no superuser's (schemaGrantsFirst).
    const first = options.noOwner || options.noAcl || options.dataOnly ? undefined : schemaGrantsFirst(toc.entries, selection?.ids);
    const schemasFirst = first && (await writeUseList(dump.path, 'schemas.list', toc.entries, first));
    const rest = first && (await writeUseList(dump.path, 'rest.list', toc.entries, new Set(toc.entries.map((e) => e.id).filter((id) => !first.has(id) && (!selection || selection.ids.has(id))))));

    let earlierErrors: string[] = [];
    if (options.create) {
      const created = await createDatabase(target, target.database, definition, options);
      earlierErrors = created.errors;
      notRestored.push(...created.notRestored.map((sql) => `${sql} (${/ACL|GRANT|REVOKE/.test(sql) ? '--no-acl' : '--no-owner'})`));
    } else if (!options.dataOnly && !selection) {
      // Only --create applies the database's own definition (as with pg_restore): say what it holds.
      notRestored.push(...definition.filter((s) => s.kind !== 'create').map((s) => `${s.sql} (database-level: applied only with --create)`));
    }
    if (options.clean) {
      const drops = await readDropStatements(deps, dump.path, listFile);
      // The script's session settings as this server knows them (transaction_timeout is 17's).
      await withClient(target, target.database, async (c) => c.query(fitSessionStatements(drops, await serverVersionNum(c)).join('\n'))).catch((err: unknown) => {
        throw new RestoreError(`--clean could not drop the objects of the backup in database "${target.database}": ${(err as Error).message}`, {
          cause: err,
          hint: 'Nothing was restored and the drops were rolled back. Fix the cause (often: objects of other schemas that depend on these), or restore into a new database with --create.',
        });
      });
    }
    const archiveData = toc.entries.filter((e) => e.desc === 'TABLE DATA' && (!selection || selection.ids.has(e.id))).length;
    // --data-only of a one-archive backup: its table data in the target's foreign-key order (fewer
    // than two tables' data: no order to get wrong, and no reason to query the target).
    const keyOrder = options.dataOnly && !manifest.parts && archiveData >= 2 ? await dataInKeyOrder(deps, target, dump.path, toc.entries, selection?.ids, options.jobs) : undefined;
    const dataEntries = archiveData + (selection ? (partData?.tables ?? 0) : partTables(manifest));
    const restored = await pgRestoreInto(deps, target, target.database, dump.path, {
      ...options,
      // pg_restore follows a --use-list's order in one job only: with --jobs it loads tables side by
      // side, and a one-archive backup's table data carries no dependency on the tables it references.
      jobs: keyOrder ? 1 : options.jobs,
      listFile: keyOrder ?? rest ?? listFile,
      schemasFirst,
      earlierErrors,
      tablesTotal: dataEntries,
      // A half-restored database we created is a trap: drop it so a retry starts clean.
      onFailure: async () => (options.create ? dropDatabase(target, target.database).then(() => true, () => false) : false),
      // A sharded backup: its data archives streamed from S3, side by side, before the post-data pass.
      afterData: manifest.parts
        ? (onLine) => restoreDataParts(deps, target, target.database, partData ? { ...manifest, parts: [...partData.parts] } : manifest, { noOwner: options.noOwner, noAcl: options.noAcl, clean: options.clean, keepGoing: options.keepGoing, identities, useLists: partData?.useLists, selected: partData?.selected, onLine,
            // Into tables whose foreign keys are in place: the archives load in their order.
            dataOnly: options.dataOnly ? { entries: toc.entries, dumpFile: dump.path } : undefined })
        : undefined,
    });
    for (const n of notRestored) deps.events?.({ event: 'restore.not-restored', message: n });
    if (restored.errors.length > 0) {
      throw new RestoreError(
        `restored into database "${target.database}" with ${restored.errors.length} error${restored.errors.length === 1 ? '' : 's'}; the database was kept (--keep-going):\n${summarizeErrors(restored.errors, Infinity)}`,
        { hint: hintForPgRestore(restored.errors.join('\n'), { keptGoing: true }) },
      );
    }
    return {
      status: 'restored',
      key: manifest.key,
      sourceDatabase: manifest.database,
      target: describeConnection(target),
      bytes: dump.bytes,
      sha256: dump.sha256,
      ...(dump.decrypted ? { decrypted: dump.decrypted } : {}),
      created: options.create === true,
      ...(selection ? { tables: selection.tables } : {}),
      downloadMs: dump.ms,
      restoreMs: restored.ms,
      totalMs: now() - started,
      warnings: restored.warnings,
      notRestored,
    };
  } finally {
    await dump.remove();
  }
}
