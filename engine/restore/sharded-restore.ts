/**
 * The data archives of a sharded backup (manifest format 4), restored side by side: each streamed
 * from S3 straight into its own `pg_restore`'s stdin, no temporary file (the drill's /tmp then
 * holds the restored database only). Run between the schema archive's data pass and its post-data
 * pass (pg-restore.ts `afterData`): the tables exist, no index, constraint or trigger does yet, so
 * the archives load in any order and concurrently.
 *
 * Integrity: each archive is hashed as it streams and its size and SHA-256 must match the
 * manifest's part; a mismatch fails the restore (IntegrityError) and the usual clean-up runs (a
 * database `--create` made is dropped). Unlike a one-archive backup, rows reach the target before
 * the checksum is known: that is the price of no download, and why a mismatch drops what it made.
 *
 * An encrypted backup's parts are age files: each is decrypted as it streams (partPlaintext), its
 * stored bytes hashed before the decrypter and its plaintext as it is written to pg_restore, both
 * checked against the part's figures; no plaintext touches a disk.
 *
 * `restore --data-only` into a database that has its foreign keys: the archives load one after
 * another in their order (data-only-order.ts), when a foreign key of the target crosses them or
 * goes against an archive's own order.
 *
 * A data-only archive is restored without `--section`: its large objects' metadata (archive 1)
 * is pre-data by section but data by content, and pg_restore keeps it with the data only when
 * no section is named.
 */
import { spawn as nodeSpawn } from 'node:child_process';
import { IntegrityError, RestoreError } from '../errors.ts';
import type { PgConnection } from '../pg/connection.ts';
import { libpqEnv } from '../pg/env.ts';
import { describeToolFailure, startTool, type SpawnFn } from '../pg/process.ts';
import type { Manifest, ManifestPart } from '../store/manifest.ts';
import type { RestoreDeps } from './deps.ts';
import { asStopped, encryptedParts, partPlaintext, type PartDecryption } from './part-decrypt.ts';
import { classifyPgRestore, conninfoDbname, type PgRestoreOutcome } from './pg-restore.ts';
import { feedStdin } from './stdin-feed.ts';
import { dataOnlySteps, printableTable, tablesByOid, targetForeignKeys, type TableName } from './data-only-order.ts';
import { writeUseList } from './pg-restore.ts';
import { readPartToc } from './sharded-table.ts';
import type { TocEntry } from './toc.ts';

export interface ShardedDataOptions {
  readonly noOwner?: boolean | undefined;
  readonly noAcl?: boolean | undefined;
  /** An encrypted backup: the identities that open its parts (download.ts identitiesFor). */
  readonly identities?: readonly string[] | undefined;
  /** `restore --table`: each part's `--use-list` file (by its key), its selected entries (sharded-table.ts). */
  readonly useLists?: ReadonlyMap<string, string> | undefined;
  /** `restore --table`: the entries those files list, by key, as sharded-table.ts read them (not read again). */
  readonly selected?: ReadonlyMap<string, readonly TocEntry[]> | undefined;
  /**
   * `restore --clean`: the archive with the large objects drops them before creating them again
   * (`--clean --if-exists`), as a one-archive restore does: the schema archive has no large
   * objects, so its drops (pg-restore.ts readDropStatements) leave them in place.
   */
  readonly clean?: boolean | undefined;
  /**
   * `restore --data-only`: the schema archive's entries (its TABLE entries name each data entry's
   * table, by OID) and its file (use-lists are written beside it). The target's foreign keys are
   * in place, so the archives load in their order, not side by side (data-only-order.ts).
   */
  readonly dataOnly?: { readonly entries: readonly TocEntry[]; readonly dumpFile: string } | undefined;
  /** `restore --keep-going`: in that order too, every archive loads whatever an earlier one's errors were. */
  readonly keepGoing?: boolean | undefined;
}

/** One pg_restore of a data archive: `listFile`, only its entries (`tables`, when not all of them). */
interface PartRun {
  readonly part: ManifestPart;
  readonly listFile: string | undefined;
  readonly tables?: readonly TableName[] | undefined;
}

/** pg_restore's arguments for one data archive read from stdin (`listFile`: only its entries; `largeObjects`: it holds them). */
export function partRestoreArgs(database: string, options: ShardedDataOptions, listFile?: string, largeObjects = false): string[] {
  return [
    '--verbose', '--no-password', '--dbname', conninfoDbname(database),
    ...(options.clean && largeObjects ? ['--clean', '--if-exists'] : []),
    ...(options.noOwner ? ['--no-owner'] : []), ...(options.noAcl ? ['--no-privileges'] : []), ...(listFile ? ['--use-list', listFile] : []),
  ];
}

/** Tables whose data a sharded backup's parts hold (for progress and the report). */
export function partTables(manifest: Pick<Manifest, 'parts'>): number {
  return (manifest.parts ?? []).reduce((n, p) => n + p.tables, 0);
}

/**
 * Restores every data archive of `manifest` into `database`, concurrently; resolves with
 * pg_restore's errors (sorted as classifyPgRestore does), rejects on a checksum mismatch, an
 * archive S3 would not give, or the command's interruption (every pg_restore then stopped).
 */
export async function restoreDataParts(
  deps: RestoreDeps,
  target: PgConnection,
  database: string,
  manifest: Pick<Manifest, 'parts' | 'encryption'>,
  options: ShardedDataOptions & { readonly onLine?: ((line: string) => boolean) | undefined },
): Promise<PartsOutcome> {
  const parts = manifest.parts ?? [];
  const decrypt = encryptedParts(manifest, options);
  const local = new AbortController();
  const signal = deps.signal ? AbortSignal.any([deps.signal, local.signal]) : local.signal;
  const ordered = options.dataOnly ? await dataOnlyRuns(deps, target, database, parts, options.dataOnly, options, decrypt) : undefined;
  if (ordered) {
    // One after another: each archive's referenced rows are committed before it loads.
    const done: PartOutcome[] = [];
    for (const [i, run] of ordered.entries()) {
      const outcome = await restorePart(deps, target, database, run.part, options, signal, decrypt, run.listFile);
      done.push(outcome);
      // A run with errors stops the ones after it, unless --keep-going: they come after it because
      // they may reference its rows, so their own errors would follow from its (burying the
      // cause under foreign-key failures), their rows would have to be emptied again before the
      // retry, and each would stream a whole archive from S3 for that. The operator gets the
      // failed run's errors and what was not loaded, fixes the cause, empties the tables, retries.
      // --keep-going asks for pg_restore's own way: load what can be, list every error.
      if (outcome.errors.length > 0 && !options.keepGoing && i < ordered.length - 1) {
        return { ...partsOutcome(done), notLoaded: notLoaded(ordered.slice(i + 1)) };
      }
    }
    return partsOutcome(done);
  }
  const outcomes = await Promise.allSettled(parts.map((p) => restorePart(deps, target, database, p, options, signal, decrypt, options.useLists?.get(p.key)).catch((err: unknown) => {
    // One archive that cannot be trusted or read stops the others: the restore has failed.
    local.abort(err);
    throw err;
  })));
  const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
  if (failed) throw deps.signal?.aborted ? (deps.signal.reason as Error) : (local.signal.reason as Error);
  return partsOutcome(outcomes.map((o) => (o as PromiseFulfilledResult<PartOutcome>).value));
}

/** One data archive's pg_restore: its errors, and whether the whole archive was read and matched its manifest. */
interface PartOutcome extends Pick<PgRestoreOutcome, 'errors' | 'tolerated'> {
  readonly key: string;
  /** False: pg_restore failed before the end of the archive, and what it did not read was not hashed. */
  readonly verified: boolean;
}

export interface PartsOutcome extends Pick<PgRestoreOutcome, 'errors' | 'tolerated'> {
  /** The data archives whose SHA-256 was never checked (pg_restore failed before their end): none when every one matched. */
  readonly unverified: readonly string[];
  /** Loading in foreign-key order stopped at a run with errors: what it did not load (a sentence), undefined when it did not stop. */
  readonly notLoaded?: string | undefined;
}

function partsOutcome(done: readonly PartOutcome[]): PartsOutcome {
  return { errors: done.flatMap((d) => d.errors), tolerated: done.flatMap((d) => d.tolerated), unverified: done.flatMap((d) => (d.verified ? [] : [d.key])) };
}

/** The runs left after a failed one, by archive: whole, or the tables they would have loaded. */
function notLoaded(runs: readonly PartRun[]): string {
  const byKey = new Map<string, Set<string> | 'whole'>();
  for (const run of runs) {
    const seen = byKey.get(run.part.key);
    if (!run.tables || seen === 'whole') byKey.set(run.part.key, 'whole');
    else byKey.set(run.part.key, new Set([...(seen ?? []), ...run.tables.map(printableTable)]));
  }
  const listed = [...byKey].map(([key, what]) => (what === 'whole' ? `data archive ${key}` : `data archive ${key} (${[...what].join(', ')})`));
  return `loading the data archives in foreign-key order stopped at that failure (--keep-going loads the rest anyway); not loaded: ${listed.join('; ')}`;
}

/**
 * The pg_restore runs of a data-only restore in the target's foreign-key order, undefined when no
 * foreign key crosses the archives (they load side by side). Each archive's tables are read from
 * its own table of contents (sharded-table.ts) and named by the schema archive's TABLE entry of
 * the same OID (one snapshot); with `--table`, only those its use-list holds.
 */
async function dataOnlyRuns(
  deps: RestoreDeps,
  target: PgConnection,
  database: string,
  parts: readonly ManifestPart[],
  schema: NonNullable<ShardedDataOptions['dataOnly']>,
  { useLists, selected }: Pick<ShardedDataOptions, 'useLists' | 'selected'>,
  decrypt: PartDecryption | undefined,
): Promise<PartRun[] | undefined> {
  // One archive too: a key declared on a partitioned table may go against its order.
  if (parts.length === 0) return undefined;
  const fks = await targetForeignKeys(target, database);
  if (fks.length === 0) return undefined;
  const names = tablesByOid(schema.entries);
  // `restore --table` read each chosen part's entries already (sharded-table.ts): not again.
  const tocs = await Promise.all(parts.map(async (p) => selected?.get(p.key) ?? (await readPartToc(deps, p, decrypt))));
  const nameOf = (e: TocEntry): TableName | undefined => (e.desc === 'TABLE DATA' ? names.get(e.oid) : undefined);
  const steps = dataOnlySteps(tocs.map((toc) => toc.flatMap((e) => nameOf(e) ?? [])), fks);
  if (!steps) return undefined;
  const started = new Set<number>();
  const runs: PartRun[] = [];
  for (const [n, step] of steps.entries()) {
    const part = parts[step.part]!;
    if (!step.tables) {
      runs.push({ part, listFile: useLists?.get(part.key) });
      continue;
    }
    // These tables' rows; the archive's other entries (its large objects) with its first run.
    const toc = tocs[step.part]!;
    const wanted = new Set(step.tables);
    const first = !started.has(step.part);
    started.add(step.part);
    const ids = new Set(toc.filter((e) => (e.desc === 'TABLE DATA' ? wanted.has(nameOf(e) ?? '') : first)).map((e) => e.id));
    runs.push({ part, listFile: await writeUseList(schema.dumpFile, `data-only-${n + 1}.list`, toc, ids), tables: step.tables });
  }
  return runs;
}

/** Throws IntegrityError unless what was stored (and, encrypted, what it decrypted to) is what the manifest's part says. */
function checkPart(part: ManifestPart, stored: { bytes: number; sha256: string }, plain: { bytes: number; sha256: string } | undefined): void {
  if (stored.bytes !== part.bytes || stored.sha256 !== part.sha256) {
    throw new IntegrityError(
      `data archive ${part.key} does not match its manifest: ${stored.bytes} bytes with SHA-256 ${stored.sha256}, the manifest says ${part.bytes} bytes with ${part.sha256}; the restore is stopped`,
    );
  }
  if (plain && (plain.bytes !== part.plaintextBytes || plain.sha256 !== part.plaintextSha256)) {
    throw new IntegrityError(
      `data archive ${part.key} decrypted to an archive that does not match its manifest: ${plain.bytes} bytes with SHA-256 ${plain.sha256}, the manifest says ${part.plaintextBytes ?? '?'} bytes with ${part.plaintextSha256 ?? '?'}; the restore is stopped`,
    );
  }
}

async function restorePart(
  deps: RestoreDeps,
  target: PgConnection,
  database: string,
  part: ManifestPart,
  options: ShardedDataOptions & { readonly onLine?: ((line: string) => boolean) | undefined },
  signal: AbortSignal,
  decrypt: PartDecryption | undefined,
  listFile: string | undefined,
): Promise<PartOutcome> {
  signal.throwIfAborted();
  const stored = await deps.source.openDump(part.key);
  // What pg_restore reads: the object itself, or (encrypted) its plaintext; `stored` is hashed as it arrives.
  const { body, storedDigest } = decrypt ? await partPlaintext(stored, part, decrypt) : { body: stored, storedDigest: undefined };
  const tool = startTool(deps.spawn ?? (nodeSpawn as SpawnFn), deps.pgRestore, partRestoreArgs(database, options, listFile, part.largeObjects), {
    env: libpqEnv(target, deps.env ?? process.env, database),
    tool: 'pg_restore',
    stderrLines: 100_000,
    stdin: 'pipe',
    ...(options.onLine ? { onStderrLine: options.onLine } : {}),
  });
  const onAbort = () => {
    body.destroy();
    tool.child.kill('SIGTERM');
  };
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    let failedEarly = false;
    void tool.finished.then((o) => (failedEarly = o.exitCode !== 0 || o.signal !== null), () => (failedEarly = true));
    const streamed = await feedStdin(body, tool.child.stdin!, () => failedEarly).catch(async (err: unknown) => {
      // S3 stopped sending (or the restore was stopped): pg_restore must not wait for the rest.
      tool.child.kill('SIGTERM');
      await tool.finished.catch(() => {});
      throw asStopped(err);
    });
    const outcome = await tool.finished;
    signal.throwIfAborted();
    // pg_restore gave up before the end (its errors say why): the rest was not read, nor hashed.
    if (streamed.complete) checkPart(part, storedDigest?.() ?? streamed, storedDigest ? streamed : undefined);
    if (outcome.signal) {
      throw new RestoreError(`restoring data archive ${part.key} into database "${database}" failed: ${describeToolFailure('pg_restore', outcome)}`);
    }
    const classified = classifyPgRestore(outcome.exitCode, outcome.stderrTail.length ? `${outcome.stderrTail.join('\n')}\n` : '');
    const ours = { key: part.key, verified: streamed.complete };
    if (!streamed.complete && classified.errors.length === 0) return { ...classified, ...ours, errors: [`pg_restore of ${part.key} ended before the archive did (${describeToolFailure('pg_restore', outcome)})`] };
    return { ...classified, ...ours };
  } finally {
    signal.removeEventListener('abort', onAbort);
    body.destroy();
    stored.destroy();
  }
}
