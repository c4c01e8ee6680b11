/**
 * Everything about talking to PostgreSQL: connection settings (TLS defaults), the allow-listed
 * environment pg_dump gets (the password travels only there), argument lists, the server version
 * check, and spawning the client tools with their stderr tail and exit status kept for errors.
 */
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import pg from 'pg';
import { LAMBDA_CA_BUNDLE, type Config, type SslMode } from '../config.ts';
import { ConnectError, DumpError, ServerVersionError, type ProcessOutcome } from '../errors.ts';
import { resolvePgTool, type PgTool, type SpawnCommand } from './tools.ts';
import type { DbCredentials } from '../secrets.ts';

export const APPLICATION_NAME = 'pg-s3-backup';

/** Everything needed to reach one database. */
export interface PgConnection {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly database: string;
  readonly sslmode: SslMode;
  readonly sslrootcert: string | undefined;
  readonly connectTimeoutSeconds: number;
}

/**
 * Precedence: DB_SSLMODE, then the secret's sslmode, then the default: `verify-full` against the
 * Lambda runtime's CA bundle in AWS, `prefer` elsewhere (a developer's laptop, a host's cron).
 */
export function connectionFor(creds: DbCredentials, database: string, config: Pick<Config, 'sslMode' | 'sslRootCert' | 'inLambda' | 'connectTimeoutSeconds'>): PgConnection {
  const sslmode = config.sslMode ?? creds.sslmode ?? (config.inLambda ? 'verify-full' : 'prefer');
  const wantsCa = sslmode === 'verify-full' || sslmode === 'verify-ca';
  const sslrootcert = config.sslRootCert ?? creds.sslrootcert ?? (config.inLambda && wantsCa ? LAMBDA_CA_BUNDLE : undefined);
  return {
    host: creds.host,
    port: creds.port,
    user: creds.username,
    password: creds.password,
    database,
    sslmode,
    sslrootcert,
    connectTimeoutSeconds: config.connectTimeoutSeconds,
  };
}

/**
 * The whole environment the client tools get: libpq's variables and PATH, nothing else (no AWS
 * credentials, no HOME with a .pgpass). The password is here and never in argv.
 */
export function pgEnv(conn: PgConnection, parentEnv: Readonly<Record<string, string | undefined>> = process.env): Record<string, string> {
  const env: Record<string, string> = {
    PGHOST: conn.host,
    PGPORT: String(conn.port),
    PGUSER: conn.user,
    PGPASSWORD: conn.password,
    PGDATABASE: conn.database,
    PGSSLMODE: conn.sslmode,
    PGCONNECT_TIMEOUT: String(conn.connectTimeoutSeconds),
    PGAPPNAME: APPLICATION_NAME,
    // No ~/.pgpass or service file may override what the secret says.
    PGPASSFILE: '/dev/null',
  };
  if (conn.sslrootcert) env.PGSSLROOTCERT = conn.sslrootcert;
  if (parentEnv.PATH) env.PATH = parentEnv.PATH;
  return env;
}

/** Custom format to stdout; `--no-sync` because stdout is a pipe (fsync of a pipe fails). */
export function pgDumpArgs(compression: string): string[] {
  return ['--format=custom', `--compress=${compression}`, '--no-sync'];
}

export function pgDumpallGlobalsArgs(): string[] {
  // --no-role-passwords: RDS forbids reading pg_authid; the passwords must not be in S3 anyway.
  return ['--globals-only', '--no-role-passwords'];
}

export function toolCommand(tool: PgTool, config: Pick<Config, 'pgDumpBin'>): SpawnCommand {
  try {
    return resolvePgTool(tool, { pgDumpBin: config.pgDumpBin });
  } catch (err) {
    throw new DumpError(`cannot find ${tool}: ${(err as Error).message}`, {
      cause: err,
      hint: 'Attach the pg_dump layer to the function, or set PG_DUMP_BIN to a pg_dump 18 binary.',
    });
  }
}

export interface Version {
  /** e.g. `18.1`, `15.18`. */
  readonly text: string;
  readonly major: number;
}

/** `pg_dump (PostgreSQL) 18.1 (Debian 18.1-1)` → 18.1. */
export function parsePgDumpVersion(output: string): Version | undefined {
  const m = /\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?/.exec(output);
  if (!m) return undefined;
  return { text: m[2] === undefined ? m[1]! : `${m[1]}.${m[2]}`, major: Number(m[1]) };
}

/** `server_version_num` (e.g. 150018, 90624) → major (15, 9). */
export function serverMajor(versionNum: number): number {
  return versionNum >= 100000 ? Math.floor(versionNum / 10000) : Math.floor(versionNum / 100) / 100;
}

/** pg_dump refuses servers newer than itself and dumps back to 9.2: say so before starting. */
export function checkServerVersion(server: { versionNum: number; text: string }, pgDump: Version): void {
  const major = serverMajor(server.versionNum);
  if (major > pgDump.major) {
    throw new ServerVersionError(`server version ${server.text} is newer than pg_dump ${pgDump.text}: pg_dump cannot dump a newer server`, {
      serverVersion: server.text,
      pgDumpVersion: pgDump.text,
    }, { hint: `Rebuild the pg_dump layer with PostgreSQL ${Math.floor(major)} client tools (or newer) and redeploy.` });
  }
  if (server.versionNum < 90200) {
    throw new ServerVersionError(`server version ${server.text} is older than 9.2, which pg_dump ${pgDump.text} no longer supports`, {
      serverVersion: server.text,
      pgDumpVersion: pgDump.text,
    }, { hint: 'Use a pg_dump from the server’s own era for this database.' });
  }
}

export interface ServerInfo {
  readonly versionNum: number;
  /** e.g. `18.1`, or `15.18 (Debian …)` trimmed to the number. */
  readonly text: string;
  /** pg_database_size of the database to dump: sizes the upload's parts. */
  readonly databaseBytes?: number | undefined;
}

/** node-postgres TLS options equivalent to libpq's sslmode. */
export function pgSsl(conn: PgConnection): false | ConnectionOptions {
  switch (conn.sslmode) {
    case 'disable':
    case 'allow':
      return false;
    case 'prefer':
    case 'require':
      return { rejectUnauthorized: false };
    case 'verify-ca':
    case 'verify-full': {
      const ca = conn.sslrootcert ? readFileSync(conn.sslrootcert) : undefined;
      return {
        rejectUnauthorized: true,
        ...(ca ? { ca } : {}),
        ...(conn.sslmode === 'verify-ca' ? { checkServerIdentity: () => undefined } : {}),
      };
    }
  }
}

/**
 * Runs `fn` on a node-postgres client connected with the configured TLS (libpq's `prefer` falls
 * back to plain TCP when the server does not do TLS); any connection failure is a ConnectError
 * with a hint. The client is closed whatever happens.
 */
export async function withClient<T>(conn: PgConnection, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const connect = async (ssl: false | ConnectionOptions): Promise<pg.Client> => {
    const client = new pg.Client({
      host: conn.host,
      port: conn.port,
      user: conn.user,
      password: conn.password,
      database: conn.database,
      ssl,
      application_name: APPLICATION_NAME,
      connectionTimeoutMillis: conn.connectTimeoutSeconds * 1000,
    });
    // A socket error after connect would otherwise be an unhandled 'error' event.
    client.on('error', () => {});
    try {
      await client.connect();
      return client;
    } catch (err) {
      await client.end().catch(() => {});
      throw err;
    }
  };
  let client: pg.Client;
  try {
    try {
      client = await connect(pgSsl(conn));
    } catch (err) {
      // libpq's prefer: fall back to plain TCP when the server does not do TLS.
      if (conn.sslmode === 'prefer' && /does not support SSL/i.test(String((err as Error).message))) client = await connect(false);
      else throw err;
    }
  } catch (err) {
    throw new ConnectError(`cannot connect to database ${JSON.stringify(conn.database)} at ${conn.host}:${conn.port} as ${JSON.stringify(conn.user)}: ${describeConnectError(err)}`, {
      cause: err,
      hint: connectHint(err),
    });
  }
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

/** Connects with node-postgres and reads the server version: the connect stage, separate from the dump. */
export async function queryServerInfo(conn: PgConnection): Promise<ServerInfo> {
  return withClient(conn, async (client) => {
    let res;
    try {
      res = await client.query<{ n: string; v: string; s: string }>(
        "select current_setting('server_version_num') as n, current_setting('server_version') as v, pg_database_size(current_database())::text as s",
      );
    } catch (err) {
      throw new ConnectError(`connected to database ${JSON.stringify(conn.database)}, but reading its version and size failed: ${describeConnectError(err)}`, {
        cause: err,
        hint: 'The backup role needs CONNECT on the database.',
      });
    }
    const row = res.rows[0]!;
    return { versionNum: Number(row.n), text: row.v.split(' ')[0]!, databaseBytes: Number(row.s) };
  });
}

function describeConnectError(err: unknown): string {
  const e = err as { message?: string; code?: string };
  const msg = e.message || e.code || String(err);
  return /timeout/i.test(msg) ? `${msg} (no answer within the connect timeout)` : msg;
}

function connectHint(err: unknown): string {
  const e = err as { message?: string; code?: string };
  const text = `${e.code ?? ''} ${e.message ?? ''}`;
  if (/28P01|password authentication/i.test(text)) return 'The password in the secret is wrong or was rotated without updating the database: check the secret.';
  if (/3D000|does not exist/i.test(text)) return 'Check the database name (DATABASES or the secret\'s dbname).';
  if (/certificate|self[- ]signed|SSL|TLS/i.test(text)) return 'Check DB_SSLMODE / the secret\'s sslmode and DB_SSLROOTCERT (the CA bundle that signed the server\'s certificate).';
  if (/ENOTFOUND|EAI_AGAIN/i.test(text)) return 'The host name does not resolve: check the secret\'s host and the function\'s VPC DNS.';
  return 'Check that the function can reach the database: VPC subnets, security group rules (port 5432) and the host and port in the secret; PG_CONNECT_TIMEOUT bounds the wait.';
}

export type SpawnFn = (file: string, args: readonly string[], options: SpawnOptions) => ChildProcess;

/** The meaning of an exit code or signal, for alerts and errors. */
export function describeExit(exitCode: number | null, signal: NodeJS.Signals | null): string {
  if (signal) {
    const meaning: Partial<Record<NodeJS.Signals, string>> = {
      SIGKILL: 'killed (out of memory, or by force)',
      SIGTERM: 'terminated',
      SIGSEGV: 'crashed (segmentation fault)',
      SIGABRT: 'aborted',
      SIGPIPE: 'its output pipe was closed',
      SIGINT: 'interrupted',
    };
    return `killed by signal ${signal}${meaning[signal] ? ` (${meaning[signal]})` : ''}`;
  }
  if (exitCode === 0) return 'exit code 0 (success)';
  if (exitCode === 1) return 'exit code 1 (pg_dump reported an error)';
  if (exitCode === 127) return 'exit code 127 (command or library not found)';
  if (exitCode === 126) return 'exit code 126 (not executable)';
  if (exitCode !== null && exitCode > 128) return `exit code ${exitCode} (killed by signal ${exitCode - 128})`;
  return `exit code ${exitCode}`;
}

/** Keeps the last `maxLines` lines of a stream (each line capped), for error reports. */
export class TailBuffer {
  private lines: string[] = [];
  private partial = '';
  constructor(private readonly maxLines = 20, private readonly maxLineLength = 500) {}
  push(chunk: Buffer | string): void {
    const parts = (this.partial + chunk.toString()).split('\n');
    this.partial = parts.pop()!.slice(-this.maxLineLength * 2);
    for (const p of parts) this.add(p);
  }
  private add(line: string): void {
    const l = line.replace(/\r$/, '');
    if (l.trim() === '') return;
    this.lines.push(l.length > this.maxLineLength ? `${l.slice(0, this.maxLineLength)}…` : l);
    if (this.lines.length > this.maxLines) this.lines.shift();
  }
  get(): string[] {
    const out = [...this.lines];
    if (this.partial.trim() !== '') {
      out.push(this.partial);
      if (out.length > this.maxLines) out.shift();
    }
    return out;
  }
}

export interface RunningTool {
  readonly child: ChildProcess;
  readonly stderr: TailBuffer;
  /** Resolves when the process has exited and its pipes are closed; rejects if it could not start. */
  readonly finished: Promise<ProcessOutcome>;
}

/** Spawns a client tool (no shell) with stdout piped and stderr tail kept; secrets are redacted from the tail. */
export function startTool(spawn: SpawnFn, command: SpawnCommand, toolArgs: readonly string[], env: Record<string, string>, redactFn: (s: string) => string): RunningTool {
  const child = spawn(command.file, [...command.args, ...toolArgs], { env, stdio: ['ignore', 'pipe', 'pipe'], shell: false });
  const stderr = new TailBuffer();
  child.stderr?.on('data', (c: Buffer) => stderr.push(c));
  const finished = new Promise<ProcessOutcome>((resolve, reject) => {
    child.once('error', (err: NodeJS.ErrnoException) => {
      const hint =
        err.code === 'ENOENT'
          ? 'pg_dump is not there: attach the pg_dump layer to the function, or set PG_DUMP_BIN to a pg_dump 18 binary.'
          : err.code === 'EACCES'
            ? 'pg_dump is not executable: check PG_DUMP_BIN and its permissions.'
            : 'Check PG_DUMP_BIN and the layer.';
      reject(new DumpError(`cannot start ${command.file}: ${err.code ?? err.message}`, { cause: err, hint }));
    });
    child.once('close', (exitCode: number | null, signal: NodeJS.Signals | null) => {
      resolve({ exitCode, signal, stderrTail: stderr.get().map(redactFn) });
    });
  });
  // Reported through `finished`; keep Node from treating the first rejection as unhandled.
  finished.catch(() => {});
  return { child, stderr, finished };
}

/** Runs `<tool> --version`. */
export async function toolVersion(spawn: SpawnFn, command: SpawnCommand): Promise<Version> {
  const run = startTool(spawn, command, ['--version'], { PATH: process.env.PATH ?? '/usr/bin:/bin' }, (s) => s);
  let out = '';
  run.child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  const outcome = await run.finished;
  const version = parsePgDumpVersion(out);
  if (outcome.exitCode !== 0 || !version) {
    throw new DumpError(`${command.file} --version failed: ${describeExit(outcome.exitCode, outcome.signal)}${outcome.stderrTail.length ? `: ${outcome.stderrTail.join(' | ')}` : ''}`, {
      outcome,
      hint: 'PG_DUMP_BIN (or the layer) must be a working pg_dump 18: run it with --version to see why it does not start.',
    });
  }
  return version;
}
