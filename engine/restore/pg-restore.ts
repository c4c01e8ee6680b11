/**
 * Running pg_restore: its arguments, the archive's table of contents, the three passes, progress,
 * and what its errors mean.
 *
 * Three passes (pre-data serially; data with --jobs; post-data with --jobs) rather than one
 * `pg_restore --jobs N`: a dump streamed to S3 has no data offsets in its TOC, and pg_restore then
 * schedules parallel work so that a post-data item may run before a table's data is loaded (seen:
 * a partitioned parent's `NOT NULL … NOT VALID` constraint before a partition's rows, which then
 * fail it). Separate passes make "all data before any post-data" a fact, whatever the scheduler.
 */
import { spawn as nodeSpawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { DefinitionUnreadableError, RestoreError } from '../errors.ts';
import type { PgConnection } from '../pg/connection.ts';
import { libpqEnv } from '../pg/env.ts';
import { describeToolFailure, runTool, startTool, type SpawnFn } from '../pg/process.ts';
import { parseDefinition, splitStatements, type DefinitionStatement } from './database-definition.ts';
import type { RestoreDeps } from './deps.ts';
import { databaseEntries, parseToc, tablesWithData, useList, type TocEntry } from './toc.ts';

/**
 * pg_dump 17+ writes `SET transaction_timeout = 0;` into every archive; a server older than 17
 * does not know the setting and pg_restore reports one error per connection for it (one per job
 * with --jobs), then exits 1 with "errors ignored on restore: N". That error changes nothing (the
 * setting only protects the restore from a server-side timeout), so it alone is tolerated.
 */
const HARMLESS = /could not execute query: ERROR: {1,2}unrecognized configuration parameter "transaction_timeout"/;

/** What pg_restore said, sorted into what is harmless and what is not. */
export interface PgRestoreOutcome {
  readonly ok: boolean;
  /** Errors known to be harmless (and why), reported as warnings. */
  readonly tolerated: readonly string[];
  /** Every other error, each with the lines that explain it (TOC entry, DETAIL, Command was). */
  readonly errors: readonly string[];
}

/**
 * pg_restore's errors, one string each: the `pg_restore: error:` line, the `from TOC entry` line
 * before it, and the lines after it that belong to it (DETAIL, CONTEXT, Command was). Progress and
 * other chatter is not part of any error.
 */
export function parseErrors(stderr: string): string[] {
  const errors: string[] = [];
  let context: string | undefined;
  let current: string[] | undefined;
  const flush = () => {
    if (current) errors.push(current.join('\n'));
    current = undefined;
  };
  for (const line of stderr.split('\n')) {
    if (/^pg_restore: error: /.test(line)) {
      flush();
      current = [line.replace(/^pg_restore: error: /, ''), ...(context ? [`(${context})`] : [])];
      context = undefined;
    } else if (/^pg_restore: from TOC entry /.test(line)) {
      flush();
      context = line.replace(/^pg_restore: /, '');
    } else if (/^pg_restore: /.test(line) || line === '') {
      flush();
    } else if (current) {
      current.push(line);
    }
  }
  flush();
  return errors;
}

export function classifyPgRestore(exitCode: number | null, stderr: string): PgRestoreOutcome {
  const all = parseErrors(stderr);
  const tolerated = all.filter((e) => HARMLESS.test(e));
  const errors = all.filter((e) => !HARMLESS.test(e));
  if (exitCode === 0) return { ok: true, tolerated, errors };
  const ignored = /errors ignored on restore: (\d+)/.exec(stderr);
  // With --jobs the workers' errors are printed but not all counted in the leader's total, so
  // the total may be lower than the number of error lines, never higher.
  const onlyHarmless = exitCode === 1 && errors.length === 0 && tolerated.length > 0 && ignored !== null && Number(ignored[1]) >= 1 && Number(ignored[1]) <= tolerated.length;
  return {
    ok: onlyHarmless,
    tolerated: onlyHarmless ? tolerated.map(() => 'SET transaction_timeout failed: the server is older than PostgreSQL 17 (harmless: pg_dump 18 archives set it)') : [],
    errors: onlyHarmless ? [] : errors.length > 0 ? errors : [`pg_restore exited ${exitCode}`],
  };
}

/** `dbname='…'` conninfo for `-d`: a plain name containing `=` would otherwise be read as conninfo. */
export function conninfoDbname(database: string): string {
  return `dbname='${database.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/**
 * Runs pg_restore to its end with the one process runner (engine/pg/process.ts), keeping stdout
 * (bounded use: --list, a few statements) and every stderr line `onStderrLine` keeps (the error
 * count matters to classifyPgRestore; progress lines need not be kept).
 */
async function runPgRestore(deps: Pick<RestoreDeps, 'spawn' | 'pgRestore' | 'signal'>, args: readonly string[], env: Record<string, string>, onStderrLine?: (line: string) => boolean) {
  const spawn = deps.spawn ?? (nodeSpawn as SpawnFn);
  const run = await runTool(spawn, deps.pgRestore, args, { env, tool: 'pg_restore', stderrLines: 100_000, signal: deps.signal, ...(onStderrLine ? { onStderrLine } : {}) });
  return { ...run, stderr: run.stderrTail.length ? `${run.stderrTail.join('\n')}\n` : '' };
}

/** For the runs that only read the archive file: no connection settings at all (libpqEnv is for connecting). */
export function fileOnlyEnv(deps: Pick<RestoreDeps, 'env'>): Record<string, string> {
  const path = (deps.env ?? process.env).PATH;
  return path === undefined ? {} : { PATH: path };
}

/** The archive's table of contents. */
export interface Toc {
  readonly entries: readonly TocEntry[];
  /** `schema.table` of every table whose data the archive holds (TOC `TABLE DATA` entries). */
  readonly tablesWithData: readonly string[];
}

/** `pg_restore --verbose` says when it starts each table's data: the restore's unit of progress. */
export const TABLE_DATA_LINE = /^pg_restore: processing data for table "(.*)"$/;
/** Every other `pg_restore: …` line that is neither an error, a warning nor an error's context is --verbose chatter. */
export const VERBOSE_LINE = /^pg_restore: (?!error: |warning: |detail: |hint: |from TOC entry )/;

/** How many errors a failure message quotes in full: the first ones hold the root cause. */
export const ERRORS_SHOWN = 10;

/** The first errors in full, then how many more there were. */
export function summarizeErrors(errors: readonly string[], shown = ERRORS_SHOWN): string {
  const first = errors.slice(0, shown).map((e, i) => `  ${i + 1}. ${e.replace(/\n/g, '\n     ')}`);
  const more = errors.length - shown;
  return [...first, ...(more > 0 ? [`  … and ${more} more errors`] : [])].join('\n');
}

/**
 * What to do about pg_restore errors. `dropped`: the restore created the database and dropped it
 * again; `dataOnly`: rows went into existing tables (--clean cannot be combined with --data-only).
 */
export function hintForPgRestore(stderr: string, situation: { readonly dropped?: boolean; readonly keptGoing?: boolean; readonly dataOnly?: boolean | undefined } = {}): string {
  if (/unsupported version .* in file header/.test(stderr)) {
    return 'This pg_restore is older than the pg_dump that wrote the backup: use pg_restore 18 (npm run build:layer -- x86_64, PG_DUMP_BIN, or postgresql-client-18).';
  }
  const then = situation.dropped
    ? 'The database the restore created was dropped: run the same command again once fixed'
    : situation.keptGoing
      ? 'The database was kept as restored, without the objects above: fix them by hand, or fix the cause and restore again'
      : situation.dataOnly
        ? 'The tables may now hold some of the rows: empty them (TRUNCATE) before you retry --data-only once the cause is fixed'
        : 'The target may now be partly restored: fix the cause and retry with --clean';
  if (/role "[^"]+" does not exist/.test(stderr)) {
    return `Roles of the source server are missing on the target: create them first, or restore with --no-owner (owners) and --no-acl (grants). ${then}.`;
  }
  return `Read the first errors above: the later ones often follow from them. ${then}${situation.dropped || situation.keptGoing ? '' : ' (or restore into a new database with --create)'}; --keep-going keeps a database despite errors.`;
}

export interface PgRestoreArgs {
  readonly jobs?: number | undefined;
  readonly clean?: boolean | undefined;
  /** Do not restore owners (nor `ALTER ROLE … IN DATABASE … SET`, which name roles too). */
  readonly noOwner?: boolean | undefined;
  /** Do not restore grants (GRANT/REVOKE). */
  readonly noAcl?: boolean | undefined;
  readonly tables?: readonly string[] | undefined;
  readonly schemaOnly?: boolean | undefined;
  readonly dataOnly?: boolean | undefined;
  /** Keep going after errors, keep the database, report every error (pg_restore's own default). */
  readonly keepGoing?: boolean | undefined;
}

export type Section = 'pre-data' | 'data' | 'post-data';

export interface PassArgs {
  /** Undefined: every section (the entries of `listFile`, grants last). */
  readonly section: Section | undefined;
  readonly jobs?: number | undefined;
  readonly noOwner?: boolean | undefined;
  readonly noAcl?: boolean | undefined;
  /** A `--use-list` file (the `--table` selection). */
  readonly listFile?: string | undefined;
}

/** Arguments of one pass of pg_restore into `database` (connection settings travel in the environment). */
export function pgRestoreArgs(database: string, file: string, options: PassArgs): string[] {
  const args = ['--no-password', '--dbname', conninfoDbname(database), ...(options.section ? [`--section=${options.section}`] : [])];
  if (options.jobs && options.jobs > 1 && (options.section === 'data' || options.section === 'post-data')) args.push('--jobs', String(options.jobs));
  if (options.noOwner) args.push('--no-owner');
  if (options.noAcl) args.push('--no-privileges');
  if (options.listFile) args.push('--use-list', options.listFile);
  args.push(file);
  return args;
}

/** The passes a restore runs: `--schema-only` skips the data, `--data-only` everything else. */
export function sections(options: Pick<PgRestoreArgs, 'schemaOnly' | 'dataOnly'>): Section[] {
  if (options.schemaOnly) return ['pre-data', 'post-data'];
  if (options.dataOnly) return ['data'];
  return ['pre-data', 'data', 'post-data'];
}

export interface PgRestoreRun {
  readonly ms: number;
  readonly warnings: string[];
  /** Errors of every pass (only with keepGoing: otherwise an error throws). */
  readonly errors: string[];
  readonly tablesDone: number;
}

/**
 * Runs pg_restore of `file` into `database`, in passes. Progress: one `restore` event per table
 * whose data starts (out of `tablesTotal`). Without keepGoing, a pass with errors ends the restore
 * (RestoreError with the first errors; `onFailure` runs first, e.g. to drop a created database);
 * with keepGoing every pass runs and the errors are returned. `earlierErrors` (from applying the
 * database's definition) count as errors of the first pass.
 */
export async function pgRestoreInto(
  deps: RestoreDeps,
  target: PgConnection,
  database: string,
  file: string,
  options: PgRestoreArgs & {
    readonly tablesTotal?: number;
    readonly listFile?: string | undefined;
    /**
     * A `--use-list` file of the schemas and their grants (schemaGrantsFirst), restored by a
     * pg_restore of its own before the pre-data pass; `listFile` then leaves them out.
     */
    readonly schemasFirst?: string | undefined;
    readonly earlierErrors?: readonly string[];
    readonly onFailure?: () => Promise<boolean>;
    /**
     * Runs right after the data pass (a sharded backup's data archives, sharded-restore.ts): its
     * errors count as that pass's; `onLine` takes pg_restore's stderr lines for the progress.
     */
    readonly afterData?: ((onLine: (line: string) => boolean) => Promise<Pick<PgRestoreOutcome, 'errors' | 'tolerated'> & { readonly notLoaded?: string | undefined }>) | undefined;
  },
): Promise<PgRestoreRun> {
  const now = deps.now ?? Date.now;
  const started = now();
  const progress = { event: 'restore.progress' as const, database, jobs: options.jobs ?? 1, tablesTotal: options.tablesTotal };
  deps.events?.({ ...progress, tablesDone: 0 });
  let tablesDone = 0;
  const onLine = (line: string) => {
    const table = TABLE_DATA_LINE.exec(line);
    if (table) deps.events?.({ ...progress, tablesDone: ++tablesDone, table: table[1], elapsedMs: now() - started });
    return !VERBOSE_LINE.test(line);
  };
  const env = libpqEnv(target, deps.env ?? process.env, database);
  const errors: string[] = [...(options.earlierErrors ?? [])];
  const tolerated = new Set<string>();
  let stderrSeen = '';
  /** Errors of the data archives (afterData): theirs, not the definition's nor this pass's pg_restore's. */
  let partErrors = 0;
  /** The data archives stopped at a failed one (sharded-restore.ts): what they did not load. */
  let notLoaded: string | undefined;
  const passes: { section: Section | undefined; name: string; listFile: string | undefined }[] = sections(options).map((section) => ({ section, name: section, listFile: options.listFile }));
  if (options.schemasFirst && passes[0]?.section === 'pre-data') passes.unshift({ section: undefined, name: 'schemas and their grants', listFile: options.schemasFirst });
  /** The pass whose pg_restore reported errors, for the message: the schemas' pass is checked with the pre-data pass, as part of it. */
  let failedPass: { name: string; run: Parameters<typeof describeToolFailure>[1] } | undefined;
  for (const { section, name, listFile } of passes) {
    const args = ['--verbose', ...pgRestoreArgs(database, file, { section, jobs: options.jobs, noOwner: options.noOwner, noAcl: options.noAcl, listFile })];
    const run = await runPgRestore(deps, args, env, onLine).catch(async (err: unknown) => {
      // Interrupted (SIGTERM/SIGINT): undo what can be undone, as for a failed pass.
      if (deps.signal?.aborted) await options.onFailure?.();
      throw err;
    });
    stderrSeen += run.stderr;
    if (run.signal) {
      const dropped = (await options.onFailure?.()) ?? false;
      throw new RestoreError(`restoring into database "${database}" failed: ${describeToolFailure('pg_restore', run)}`, { hint: hintForPgRestore(run.stderr, { dropped, dataOnly: options.dataOnly }) });
    }
    const outcome = classifyPgRestore(run.exitCode, run.stderr);
    outcome.tolerated.forEach((w) => tolerated.add(w));
    if (!outcome.ok) errors.push(...outcome.errors);
    failedPass = outcome.ok ? (section === 'pre-data' ? failedPass : undefined) : { name, run };
    if (section === 'data' && options.afterData && (errors.length === 0 || options.keepGoing)) {
      const after = await options.afterData(onLine).catch(async (err: unknown) => {
        // A part that fails its checksum or cannot be read: undo what can be undone, as for a failed pass.
        await options.onFailure?.();
        throw err;
      });
      after.tolerated.forEach((w) => tolerated.add(w));
      errors.push(...after.errors);
      partErrors = after.errors.length;
      notLoaded = after.notLoaded;
    }
    if (errors.length > 0 && !options.keepGoing && section !== undefined) {
      const dropped = (await options.onFailure?.()) ?? false;
      const how = failedPass
        ? describeToolFailure(`pg_restore (${failedPass.name} pass)`, { ...failedPass.run, stderrTail: [] })
        : partErrors > 0
          ? "the backup's data archives could not be restored"
          : 'the database definition could not be applied';
      throw new RestoreError(`restoring into database "${database}" failed: ${how}, ${errors.length} error${errors.length === 1 ? '' : 's'}; the first:\n${summarizeErrors(errors)}${notLoaded ? `\n${notLoaded}` : ''}`, {
        hint: hintForPgRestore(stderrSeen + errors.join('\n'), { dropped, dataOnly: options.dataOnly }),
      });
    }
  }
  const ms = now() - started;
  const warnings = [...tolerated];
  for (const w of warnings) deps.events?.({ event: 'warning', message: w });
  deps.events?.({ event: 'restore.done', database, tables: tablesDone, ms, errors: errors.length });
  return { ms, warnings, errors, tablesDone };
}

/**
 * The archive's table of contents, with dependencies: proves pg_restore can read it. `tables`
 * (the manifest's, when it has them) name the tables exactly: they tell an owner whose name holds
 * a space from the table's name (parseToc).
 */
export async function readToc(deps: RestoreDeps, file: string, tables?: readonly { readonly schema: string; readonly table: string }[]): Promise<Toc> {
  const list = await runPgRestore(deps, ['--list', '--verbose', file], fileOnlyEnv(deps));
  if (list.exitCode !== 0 || list.signal) {
    throw new RestoreError(`the archive's table of contents cannot be read: ${describeToolFailure('pg_restore --list', list)}`, {
      hint: `${hintForPgRestore(list.stderr)} The object must be a pg_dump custom-format archive written by pg-s3-backup.`,
    });
  }
  const entries = parseToc(list.stdout, tables);
  return { entries, tablesWithData: tablesWithData(entries) };
}

/** Writes a `--use-list` file beside the dump. */
export async function writeUseList(dumpFile: string, name: string, entries: readonly TocEntry[], ids: ReadonlySet<number>): Promise<string> {
  const path = join(dirname(dumpFile), name);
  await writeFile(path, useList(entries, ids), { mode: 0o600 });
  return path;
}

/**
 * The database's own definition from the archive (`source`: its name there), renamed to
 * `database`: rendered by pg_restore itself (`--create`, only the database's entries, to a script).
 * Empty when the archive holds none; DefinitionUnreadableError when pg_restore refuses the name.
 */
export async function readDefinition(deps: RestoreDeps, file: string, toc: Toc, source: string, database: string): Promise<DefinitionStatement[]> {
  const ids = new Set(databaseEntries(toc.entries, source).map((e) => e.id));
  if (ids.size === 0) return [];
  const listFile = await writeUseList(file, 'database.list', toc.entries, ids);
  const run = await runPgRestore(deps, ['--create', '--use-list', listFile, '--file', '-', file], fileOnlyEnv(deps));
  if (run.exitCode === 1 && /database name contains a newline or carriage return/.test(run.stderr)) {
    throw new DefinitionUnreadableError(
      `pg_restore refuses to write the definition (encoding, locale, comment, settings, grants) of database ${JSON.stringify(source)}: its name holds a line break`,
      {
        hint:
          `Its tables restore into a database that exists: create one (CREATE DATABASE with the source's encoding and locale) and restore into it without --create. ` +
          `To restore with --create from tomorrow's backup on, rename the source database without the line break (ALTER DATABASE … RENAME TO …).`,
      },
    );
  }
  if (run.exitCode !== 0 || run.signal) {
    throw new RestoreError(`the database's definition cannot be read from the archive: ${describeToolFailure('pg_restore', run)}`, { hint: hintForPgRestore(run.stderr) });
  }
  // Bytes, not text: a LATIN1 or SQL_ASCII database's comment is not UTF-8.
  return parseDefinition(run.stdoutBytes, source, database);
}

/**
 * The statements `pg_restore --clean --if-exists` runs to drop what the archive holds, in its
 * order (dependents first): taken from its script, where they come before the first object.
 * Run before the pre-data pass, since that pass alone would not drop post-data objects (a foreign
 * key from another table blocks DROP TABLE).
 */
export async function readDropStatements(deps: RestoreDeps, file: string, listFile: string | undefined): Promise<string[]> {
  const args = ['--clean', '--if-exists', ...(listFile ? ['--use-list', listFile] : []), '--file', '-', file];
  // The script: header comments and SETs, the drops, then `--\n-- Name: …` before each object.
  // Only that head is read: pg_restore is stopped there, before it writes any data.
  const tool = startTool(deps.spawn ?? (nodeSpawn as SpawnFn), deps.pgRestore, args, { env: fileOnlyEnv(deps), tool: 'pg_restore' });
  let out = '';
  let stopped = false;
  tool.child.stdout?.setEncoding('utf8');
  const stoppedAtHead = new Promise<string>((resolve) => {
    tool.child.stdout?.on('data', (chunk: string) => {
      if (stopped) return;
      out += chunk;
      const at = out.search(/^-- (Data for )?Name: /m);
      if (at >= 0) {
        stopped = true;
        if (tool.child.exitCode === null) tool.child.kill('SIGTERM');
        resolve(out.slice(0, at));
      }
    });
  });
  // Whichever comes first: the head was seen, or pg_restore ended (rejects when it cannot start).
  const head = await Promise.race([stoppedAtHead, tool.finished.then(() => out)]);
  const outcome = await tool.finished;
  if (!stopped && (outcome.exitCode !== 0 || outcome.signal)) {
    throw new RestoreError(`the archive's drop statements cannot be read: ${describeToolFailure('pg_restore', outcome)}`, { hint: hintForPgRestore(outcome.stderrTail.join('\n')) });
  }
  // Comments and psql meta-commands left out by a lexer, not by lines: a dropped object's name may hold a line break.
  return splitStatements(head);
}
