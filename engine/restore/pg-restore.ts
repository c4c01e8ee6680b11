/** Running pg_restore: its arguments, its table of contents, its progress, and what its errors mean. */
import { spawn as nodeSpawn } from 'node:child_process';
import { RestoreError } from '../errors.ts';
import type { SpawnFn } from '../pg/pg-dump.ts';
import type { SpawnCommand } from '../pg/tools.ts';
import type { RestoreDeps } from './deps.ts';
import { conninfoDbname, pgEnv, type PgTarget } from './target.ts';

/** What pg_restore said, sorted into what is harmless and what is not. */
export interface PgRestoreOutcome {
  readonly ok: boolean;
  /** Errors known to be harmless (and why), reported as warnings. */
  readonly tolerated: readonly string[];
  /** Every other error line. */
  readonly errors: readonly string[];
}

/**
 * pg_dump 17+ writes `SET transaction_timeout = 0;` into every archive; a server older than 17
 * does not know the setting and pg_restore reports one error per connection for it (one per job
 * with --jobs), then exits 1 with "errors ignored on restore: N". That error changes nothing (the
 * setting only protects the restore from a server-side timeout), so it alone is tolerated:
 * exit code 1 with nothing but that error is a success with a warning.
 */
const HARMLESS = /could not execute query: ERROR: {1,2}unrecognized configuration parameter "transaction_timeout"/;

export function classifyPgRestore(exitCode: number | null, stderr: string): PgRestoreOutcome {
  const lines = stderr.split('\n');
  const errorLines = lines.filter((l) => /^pg_restore: error: /.test(l));
  const tolerated = errorLines.filter((l) => HARMLESS.test(l));
  const errors = errorLines.filter((l) => !HARMLESS.test(l));
  const ignored = /errors ignored on restore: (\d+)/.exec(stderr);
  if (exitCode === 0) return { ok: true, tolerated, errors };
  // With --jobs the workers' errors are printed but not all counted in the leader's total, so
  // the total may be lower than the number of error lines, never higher.
  const onlyHarmless = exitCode === 1 && errors.length === 0 && tolerated.length > 0 && ignored !== null && Number(ignored[1]) >= 1 && Number(ignored[1]) <= tolerated.length;
  return {
    ok: onlyHarmless,
    tolerated: onlyHarmless ? tolerated.map(() => 'SET transaction_timeout failed: the server is older than PostgreSQL 17 (harmless: pg_dump 18 archives set it)') : [],
    errors: onlyHarmless ? [] : errors.length > 0 ? errors : [`pg_restore exited ${exitCode}`],
  };
}

export interface ToolRun {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs a pg tool to completion, keeping stdout (bounded use: --list) and stderr. `onStderrLine`
 * sees every stderr line as it comes and says whether to keep it (progress lines need not be).
 */
export async function runTool(
  deps: Pick<RestoreDeps, 'spawn'>,
  cmd: SpawnCommand,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  onStderrLine: (line: string) => boolean = () => true,
): Promise<ToolRun> {
  const spawn = deps.spawn ?? (nodeSpawn as SpawnFn);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd.file, [...cmd.args, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const kept: string[] = [];
    let partial = '';
    const take = (line: string) => {
      if (onStderrLine(line)) kept.push(line);
    };
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop()!;
      lines.forEach(take);
    });
    child.on('error', (e) => reject(toolMissingError(cmd, e)));
    child.on('close', (code, signal) => {
      if (partial) take(partial);
      resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: kept.length ? `${kept.join('\n')}\n` : '' });
    });
  });
}

/** Counts TOC entries in `pg_restore --list` output (lines that are not `;` comments). */
export function parseTocList(list: string): { entries: number; tablesWithData: number } {
  const entries = list.split('\n').filter((l) => l.trim() !== '' && !l.startsWith(';'));
  // "<id>; <tableoid> <oid> TABLE DATA <schema> <name> <owner>"
  const tablesWithData = entries.filter((l) => /^\d+; \d+ \d+ TABLE DATA /.test(l)).length;
  return { entries: entries.length, tablesWithData };
}

/** `pg_restore --verbose` says when it starts each table's data: the restore's unit of progress. */
const TABLE_DATA_LINE = /^pg_restore: processing data for table "(.*)"$/;
/** Every other `pg_restore: …` line that is neither an error nor a warning is --verbose chatter. */
const VERBOSE_LINE = /^pg_restore: (?!error: |warning: |detail: |hint: )/;

function toolMissingError(cmd: SpawnCommand, err: Error): RestoreError {
  return new RestoreError(`cannot run ${cmd.file}: ${err.message}`, {
    cause: err,
    hint: 'pg_restore 18 is needed: build the layer (npm run build:layer -- x86_64), set PG_DUMP_BIN to a pg_dump 18 whose pg_restore sits beside it, or install postgresql-client-18.',
  });
}

const EXIT_MEANING: Readonly<Record<number, string>> = {
  1: 'pg_restore reported errors',
  126: 'the program could not be executed',
  127: 'the program was not found',
};

/** The last lines of a tool's stderr, with exit code and signal, for an error message. */
export function describeToolFailure(tool: string, run: Pick<ToolRun, 'code' | 'signal' | 'stderr'>, maxLines = 20): string {
  const tail = run.stderr.trimEnd().split('\n').slice(-maxLines).join('\n');
  const how = run.signal
    ? `was killed by signal ${run.signal}`
    : `exited with code ${run.code}${run.code !== null && EXIT_MEANING[run.code] ? ` (${EXIT_MEANING[run.code]})` : ''}`;
  return `${tool} ${how}${tail ? `; last lines of its output:\n${tail}` : ''}`;
}

export function hintForPgRestore(stderr: string): string {
  if (/unsupported version .* in file header/.test(stderr)) {
    return 'This pg_restore is older than the pg_dump that wrote the backup: use pg_restore 18 (npm run build:layer -- x86_64, PG_DUMP_BIN, or postgresql-client-18).';
  }
  if (/role "[^"]+" does not exist/.test(stderr)) {
    return 'Roles of the source server are missing on the target: create them first, or restore with --no-owner.';
  }
  return 'Read the errors above; the target may now be partly restored: fix the cause and retry with --clean (or into a new database with --create).';
}

export interface PgRestoreArgs {
  readonly jobs?: number | undefined;
  readonly clean?: boolean | undefined;
  readonly noOwner?: boolean;
  readonly tables?: readonly string[] | undefined;
}

export function pgRestoreArgs(database: string, file: string, options: PgRestoreArgs): string[] {
  const args = ['--no-password', '--dbname', conninfoDbname(database)];
  if (options.jobs && options.jobs > 1) args.push('--jobs', String(options.jobs));
  if (options.clean) args.push('--clean', '--if-exists');
  if (options.noOwner) args.push('--no-owner', '--no-privileges');
  for (const t of options.tables ?? []) args.push('--table', t);
  args.push(file);
  return args;
}

/**
 * Runs pg_restore of `file` into `database` of the target; throws with pg_restore's own words on
 * failure. Progress: one `restore` event per table whose data starts (out of `tablesTotal`).
 */
export async function pgRestoreInto(
  deps: RestoreDeps,
  target: PgTarget,
  database: string,
  file: string,
  options: PgRestoreArgs & { readonly tablesTotal?: number },
): Promise<{ ms: number; warnings: string[] }> {
  const now = deps.now ?? Date.now;
  const started = now();
  const progress = { event: 'restore', database, jobs: options.jobs ?? 1, tablesTotal: options.tablesTotal };
  deps.onProgress?.({ ...progress, tablesDone: 0 });
  let tablesDone = 0;
  const onLine = (line: string) => {
    const table = TABLE_DATA_LINE.exec(line);
    if (table) deps.onProgress?.({ ...progress, tablesDone: ++tablesDone, table: table[1], elapsedMs: now() - started });
    return !VERBOSE_LINE.test(line);
  };
  const args = ['--verbose', ...pgRestoreArgs(database, file, options)];
  const run = await runTool(deps, deps.pgRestore, args, pgEnv(target, deps.env ?? process.env, database), onLine);
  const outcome = classifyPgRestore(run.code, run.stderr);
  if (!outcome.ok || run.signal) {
    throw new RestoreError(`restoring into database "${database}" failed: ${describeToolFailure('pg_restore', run)}`, {
      hint: hintForPgRestore(run.stderr),
    });
  }
  const ms = now() - started;
  const warnings = [...new Set(outcome.tolerated)];
  for (const w of warnings) deps.onProgress?.({ event: 'warning', message: w });
  deps.onProgress?.({ event: 'restored', database, tables: tablesDone, ms });
  return { ms, warnings };
}

/** The archive's table of contents: proves pg_restore can read it, and counts tables for progress. */
export async function readToc(deps: RestoreDeps, file: string): Promise<{ entries: number; tablesWithData: number }> {
  const list = await runTool(deps, deps.pgRestore, ['--list', file], deps.env ?? process.env);
  if (list.code !== 0 || list.signal) {
    throw new RestoreError(`the archive's table of contents cannot be read: ${describeToolFailure('pg_restore --list', list)}`, {
      hint: `${hintForPgRestore(list.stderr)} The object must be a pg_dump custom-format archive written by pg-s3-backup.`,
    });
  }
  return parseTocList(list.stdout);
}
