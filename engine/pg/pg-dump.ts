/**
 * pg_dump and pg_dumpall: their argument lists, where to find them, their version, and the
 * check that pg_dump can dump the server at all. Connections, the environment, TLS and the
 * process runner they share with pg_restore live beside this file.
 */
import type { Config } from '../config.ts';
import { DumpError, ServerVersionError } from '../errors.ts';
import { describeExit, runTool, type SpawnFn } from './process.ts';
import { resolvePgTool, type PgTool, type SpawnCommand, type ToolSearch } from './tools.ts';

/**
 * Custom format to stdout; `--no-sync` because stdout is a pipe (fsync of a pipe fails).
 * `--lock-wait-timeout`: pg_dump takes ACCESS SHARE on every table first, and without a bound it
 * waits forever behind an ACCESS EXCLUSIVE holder (a migration, VACUUM FULL), holding its snapshot.
 */
export function pgDumpArgs(compression: string, lockWaitTimeoutSeconds?: number): string[] {
  return ['--format=custom', `--compress=${compression}`, '--no-sync', ...(lockWaitTimeoutSeconds === undefined ? [] : [`--lock-wait-timeout=${lockWaitTimeoutSeconds}s`])];
}

export function pgDumpallGlobalsArgs(): string[] {
  // --no-role-passwords: RDS forbids reading pg_authid; the passwords must not be in S3 anyway.
  return ['--globals-only', '--no-role-passwords'];
}

/** The tool from PG_DUMP_BIN or the layer (`search` adds the CLI's other places); DumpError when missing. */
export function toolCommand(tool: PgTool, config: Pick<Config, 'pgDumpBin'>, search: Omit<ToolSearch, 'pgDumpBin'> = {}): SpawnCommand {
  try {
    return resolvePgTool(tool, { ...search, pgDumpBin: config.pgDumpBin });
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

/** Runs `<tool> --version`. */
export async function toolVersion(spawn: SpawnFn, command: SpawnCommand): Promise<Version> {
  const outcome = await runTool(spawn, command, ['--version'], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
  const version = parsePgDumpVersion(outcome.stdout);
  if (outcome.exitCode !== 0 || !version) {
    throw new DumpError(`${command.file} --version failed: ${describeExit(outcome.exitCode, outcome.signal)}${outcome.stderrTail.length ? `: ${outcome.stderrTail.join(' | ')}` : ''}`, {
      outcome: { exitCode: outcome.exitCode, signal: outcome.signal, stderrTail: outcome.stderrTail },
      hint: 'PG_DUMP_BIN (or the layer) must be a working pg_dump 18: run it with --version to see why it does not start.',
    });
  }
  return version;
}
