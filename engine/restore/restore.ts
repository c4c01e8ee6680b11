/**
 * Restore: the core the CLI's `restore` and `verify` (and the demo) share.
 *
 * Order matters. The target is only inspected (read-only) until the dump has been downloaded to
 * a temporary file and its SHA-256 and size match the manifest: a tampered or truncated object
 * never reaches the database. The dump always goes through a file, even single-job: streaming
 * into pg_restore would touch the target before the checksum is known, and `--jobs` needs a
 * seekable file anyway. The free space of the temporary directory is checked first.
 *
 * Connection settings reach pg_restore through PG* environment variables, never argv, so the
 * password cannot show in `ps`; URLs are redacted before they appear in any message.
 */
import { spawn as nodeSpawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { ConnectError, DatabaseMissingError, DownloadError, IntegrityError, PgS3BackupError, RestoreError, TargetNotEmptyError, UsageError } from '../errors.ts';
import type { Manifest } from '../store/manifest.ts';
import type { SpawnFn } from '../pg/pg-dump.ts';
import type { SpawnCommand } from '../pg/tools.ts';

/** Where backups come from: the engine's S3 store, adapted by the caller. */
export interface BackupSource {
  /** The manifest of a complete backup (throws when the backup has none). */
  readManifest(dumpKey: string): Promise<Manifest>;
  /** The dump's bytes, as stored. */
  openDump(dumpKey: string): Promise<Readable>;
}

/** Something happened that an operator may want to see: rendered by the CLI (bar or JSON line). */
export interface ProgressEvent {
  readonly event: string;
  /** Bytes done so far, for events that move (`download`). */
  readonly bytes?: number;
  /** Bytes expected in total, when known. */
  readonly total?: number;
  readonly [detail: string]: unknown;
}

export type ProgressListener = (event: ProgressEvent) => void;

export interface RestoreDeps {
  readonly source: BackupSource;
  /** How to run pg_restore (layer loader, PG_DUMP_BIN sibling, or PATH). */
  readonly pgRestore: SpawnCommand;
  readonly spawn?: SpawnFn;
  /** Directory for the downloaded dump (default: the OS temporary directory). */
  readonly tempDir: string;
  readonly now?: () => number;
  readonly onProgress?: ProgressListener;
  /** Environment pg_restore inherits (default: process.env, less any PG* variable). */
  readonly env?: NodeJS.ProcessEnv;
}

// ---------------------------------------------------------------------------------------------
// Connection targets

/** A PostgreSQL server and database, parsed from a `postgresql://` URL. */
export interface PgTarget {
  readonly host: string;
  readonly port: number;
  readonly user: string | undefined;
  readonly password: string | undefined;
  readonly database: string;
  /** Other libpq parameters from the query string (sslmode, sslrootcert, …). */
  readonly params: Readonly<Record<string, string>>;
}

/** libpq URL parameters and the environment variables that carry them to pg_restore. */
const PARAM_ENV: Readonly<Record<string, string>> = {
  host: 'PGHOST',
  port: 'PGPORT',
  user: 'PGUSER',
  sslmode: 'PGSSLMODE',
  sslrootcert: 'PGSSLROOTCERT',
  sslcert: 'PGSSLCERT',
  sslkey: 'PGSSLKEY',
  sslcrl: 'PGSSLCRL',
  application_name: 'PGAPPNAME',
  connect_timeout: 'PGCONNECT_TIMEOUT',
  options: 'PGOPTIONS',
  target_session_attrs: 'PGTARGETSESSIONATTRS',
};

/** Parses `postgres[ql]://user:password@host:port/database?sslmode=…`; the error never echoes the URL. */
export function parseTargetUrl(url: string, what = '--target-url'): PgTarget {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UsageError(`${what} is not a valid URL`, {
      hint: 'Use postgresql://USER:PASSWORD@HOST:PORT/DATABASE (percent-encode special characters in the password).',
    });
  }
  if (u.protocol !== 'postgresql:' && u.protocol !== 'postgres:') {
    throw new UsageError(`${what} must start with postgresql:// (got ${u.protocol}//)`, {
      hint: 'Use postgresql://USER:PASSWORD@HOST:PORT/DATABASE.',
    });
  }
  const params: Record<string, string> = {};
  for (const [name, value] of u.searchParams) {
    if (!(name in PARAM_ENV)) {
      throw new UsageError(`${what}: unsupported connection parameter "${name}"`, {
        hint: `Supported parameters: ${Object.keys(PARAM_ENV).join(', ')}.`,
      });
    }
    params[name] = value;
  }
  const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (!database) {
    throw new UsageError(`${what} names no database`, { hint: 'Add the database name: postgresql://USER@HOST:PORT/DATABASE.' });
  }
  // `?host=/var/run/postgresql` selects a Unix socket, as with libpq.
  const host = params.host ?? (u.hostname.replace(/^\[(.*)\]$/, '$1') || 'localhost');
  const { host: _h, ...rest } = params;
  return {
    host,
    port: Number(params.port ?? (u.port || 5432)),
    user: u.username ? decodeURIComponent(u.username) : params.user,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    database,
    params: rest,
  };
}

/** The target as a URL without its password, for messages and reports. */
export function describeTarget(target: PgTarget, database = target.database): string {
  const user = target.user ? `${encodeURIComponent(target.user)}${target.password ? ':***' : ''}@` : '';
  const host = target.host.startsWith('/') ? `?host=${target.host}` : `${target.host}:${target.port}`;
  return host.startsWith('?')
    ? `postgresql://${user}/${encodeURIComponent(database)}${host}`
    : `postgresql://${user}${host}/${encodeURIComponent(database)}`;
}

/** Environment for a libpq program: the target's settings, and nothing inherited that could redirect it. */
export function pgEnv(target: PgTarget, base: NodeJS.ProcessEnv, database = target.database): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  // PGPASSFILE stays: ~/.pgpass is how an operator keeps the password out of the URL.
  for (const [k, v] of Object.entries(base)) if (!k.startsWith('PG') || k === 'PGPASSFILE') env[k] = v;
  env.PGHOST = target.host;
  env.PGPORT = String(target.port);
  if (target.user) env.PGUSER = target.user;
  if (target.password !== undefined) env.PGPASSWORD = target.password;
  env.PGDATABASE = database;
  for (const [name, value] of Object.entries(target.params)) env[PARAM_ENV[name]!] = value;
  return env;
}

/** `dbname='…'` conninfo for `-d`: a plain name containing `=` would otherwise be read as conninfo. */
export function conninfoDbname(database: string): string {
  return `dbname='${database.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

export function pgClientConfig(target: PgTarget, database = target.database): pg.ClientConfig {
  const sslmode = target.params.sslmode;
  const ssl = sslmode === undefined || sslmode === 'disable' || sslmode === 'allow' || sslmode === 'prefer'
    ? undefined
    : { rejectUnauthorized: sslmode === 'verify-full' || sslmode === 'verify-ca' };
  return {
    host: target.host,
    port: target.port,
    user: target.user,
    password: target.password,
    database,
    ...(ssl ? { ssl } : {}),
    application_name: 'pg-s3-backup',
    connectionTimeoutMillis: 15_000,
  };
}

export async function withClient<T>(target: PgTarget, database: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client(pgClientConfig(target, database));
  try {
    await client.connect();
  } catch (err) {
    throw connectError(target, database, err);
  }
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

function connectError(target: PgTarget, database: string, err: unknown): ConnectError | DatabaseMissingError {
  const code = (err as { code?: string }).code;
  const where = describeTarget(target, database);
  if (code === '3D000') {
    return new DatabaseMissingError(`database "${database}" does not exist on ${describeTarget(target, 'postgres').replace(/\/postgres$/, '')}`, { cause: err });
  }
  return new ConnectError(`cannot connect to ${where}: ${(err as Error).message}`, {
    cause: err,
    hint: 'Check the host, port, user and password in the URL, that the server accepts connections from here (pg_hba.conf, security groups) and sslmode.',
  });
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** A database to connect to for CREATE/DROP DATABASE. */
const MAINTENANCE_DATABASES = ['postgres', 'template1'];

async function withMaintenanceClient<T>(target: PgTarget, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  let last: unknown;
  for (const db of MAINTENANCE_DATABASES) {
    try {
      return await withClient(target, db, fn);
    } catch (err) {
      if (!(err instanceof DatabaseMissingError)) throw err;
      last = err;
    }
  }
  throw last;
}

export async function databaseExists(target: PgTarget, database: string): Promise<boolean> {
  return withMaintenanceClient(target, async (c) => (await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [database])).rowCount === 1);
}

export async function createDatabase(target: PgTarget, database: string): Promise<void> {
  await withMaintenanceClient(target, async (c) => {
    try {
      await c.query(`CREATE DATABASE ${quoteIdent(database)}`);
    } catch (err) {
      throw new RestoreError(`cannot create database "${database}": ${(err as Error).message}`, {
        cause: err,
        hint: 'The user in the URL needs CREATEDB (or create the database yourself and restore without --create).',
      });
    }
  });
}

export async function dropDatabase(target: PgTarget, database: string): Promise<void> {
  await withMaintenanceClient(target, async (c) => {
    // WITH (FORCE) (PostgreSQL 13+) ends sessions a failed pg_restore may have left behind.
    const force = Number((await c.query<{ v: string }>("SELECT current_setting('server_version_num') AS v")).rows[0]!.v) >= 130000;
    await c.query(`DROP DATABASE IF EXISTS ${quoteIdent(database)}${force ? ' WITH (FORCE)' : ''}`);
  });
}

/**
 * What the target database already holds besides an empty `public` schema: user tables, views,
 * sequences, functions, types, schemas and extensions other than plpgsql. Zero means "empty".
 */
const USER_OBJECTS_SQL = `
SELECT
  (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_to%' AND n.nspname NOT LIKE 'pg\\_temp%')
  + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema'))
  + (SELECT count(*) FROM pg_namespace n
     WHERE n.nspname NOT IN ('public', 'pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_to%' AND n.nspname NOT LIKE 'pg\\_temp%')
  + (SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql')
  AS n`;

export async function countUserObjects(target: PgTarget, database = target.database): Promise<number> {
  return withClient(target, database, async (c) => Number((await c.query<{ n: string }>(USER_OBJECTS_SQL)).rows[0]!.n));
}

// ---------------------------------------------------------------------------------------------
// Download and integrity

export interface DownloadedDump {
  readonly path: string;
  readonly bytes: number;
  readonly sha256: string;
  readonly ms: number;
  /** Removes the temporary directory. */
  remove(): Promise<void>;
}

/** Free space wanted beyond the dump itself: filesystems misbehave when full. */
export function requiredFreeBytes(dumpBytes: number): number {
  return dumpBytes + Math.max(64 * 1024 * 1024, Math.ceil(dumpBytes * 0.05));
}

/**
 * Downloads the dump to a private temporary file, hashing on the way, and throws IntegrityError
 * (file removed) when its size or SHA-256 differs from the manifest.
 */
export async function downloadVerified(deps: RestoreDeps, manifest: Manifest): Promise<DownloadedDump> {
  const now = deps.now ?? Date.now;
  const need = requiredFreeBytes(manifest.bytes);
  const fs = await statfs(deps.tempDir).catch((err: unknown) => {
    throw new DownloadError(`temporary directory ${deps.tempDir} is not usable: ${(err as Error).message}`, {
      cause: err,
      hint: 'Pass --temp-dir DIR (or set TMPDIR) to an existing writable directory.',
    });
  });
  const free = fs.bavail * fs.bsize;
  if (free < need) {
    throw new DownloadError(`not enough free space in ${deps.tempDir}: the dump needs ${formatBytes(need)} (with margin), ${formatBytes(free)} free`, {
      hint: 'Pass --temp-dir DIR (or set TMPDIR) to a disk with enough free space.',
    });
  }
  const dir = await mkdtemp(join(deps.tempDir, 'pg-s3-backup-'));
  const path = join(dir, 'backup.dump');
  const remove = () => rm(dir, { recursive: true, force: true });
  const started = now();
  const hash = createHash('sha256');
  let bytes = 0;
  let lastEmit = 0;
  deps.onProgress?.({ event: 'download', bytes: 0, total: manifest.bytes, key: manifest.key });
  const meter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      bytes += chunk.length;
      const t = now();
      if (t - lastEmit >= 200) {
        lastEmit = t;
        deps.onProgress?.({ event: 'download', bytes, total: manifest.bytes, key: manifest.key });
      }
      done(null, chunk);
    },
  });
  try {
    const body = await deps.source.openDump(manifest.key);
    await pipeline(body, meter, createWriteStream(path, { mode: 0o600 }));
  } catch (err) {
    await remove();
    if (err instanceof PgS3BackupError) throw err;
    throw new DownloadError(`downloading s3 object ${manifest.key} failed: ${(err as Error).message}`, {
      cause: err,
      hint: 'Check network access to S3 and s3:GetObject permission on the bucket, then retry.',
    });
  }
  const sha256 = hash.digest('hex');
  const ms = now() - started;
  deps.onProgress?.({ event: 'download', bytes, total: manifest.bytes, key: manifest.key, done: true, ms });
  if (bytes !== manifest.bytes || sha256 !== manifest.sha256) {
    await remove();
    throw new IntegrityError(
      `backup ${manifest.key} does not match its manifest: ` +
        (bytes !== manifest.bytes ? `${bytes} bytes downloaded, manifest says ${manifest.bytes}` : `sha256 ${sha256}, manifest says ${manifest.sha256}`) +
        '; nothing was restored',
    );
  }
  deps.onProgress?.({ event: 'sha256-verified', sha256, bytes });
  return { path, bytes, sha256, ms, remove };
}

// ---------------------------------------------------------------------------------------------
// pg_restore

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

// ---------------------------------------------------------------------------------------------
// restore

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

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}
