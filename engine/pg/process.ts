/**
 * The one process runner for the PostgreSQL programs (client tools, and the throwaway server's
 * initdb/postgres): no shell, argument lists, an explicit environment (env.ts; nothing inherited),
 * optionally another uid/gid, stderr kept as a bounded tail with secrets redacted, and one outcome
 * type with one table of what exit codes and signals mean.
 */
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { DumpError, RestoreError, type ProcessOutcome } from '../errors.ts';
import { openDirectChannel, type DirectChannel, type DirectOutput } from './direct-output.ts';

export { openDirectChannel };
import type { PgTool, ServerTool, SpawnCommand } from './tools.ts';

export type { ProcessOutcome };

export type SpawnFn = (file: string, args: readonly string[], options: SpawnOptions) => ChildProcess;

const SIGNAL_MEANING: Partial<Record<NodeJS.Signals, string>> = {
  SIGKILL: 'killed (out of memory, or by force)',
  SIGTERM: 'terminated',
  SIGSEGV: 'crashed (segmentation fault)',
  SIGABRT: 'aborted',
  SIGPIPE: 'its output pipe was closed',
  SIGINT: 'interrupted',
};

/** What an exit code or signal means, or undefined when there is nothing to add. */
export function exitMeaning(exitCode: number | null, signal: NodeJS.Signals | null, tool = 'pg_dump'): string | undefined {
  if (signal) return SIGNAL_MEANING[signal];
  if (exitCode === 0) return 'success';
  if (exitCode === 1) return `${tool} reported an error`;
  if (exitCode === 126) return 'not executable';
  if (exitCode === 127) return 'command or library not found';
  if (exitCode !== null && exitCode > 128) return `killed by signal ${exitCode - 128}`;
  return undefined;
}

/** The meaning of an exit code or signal, for alerts and errors: `exit code 1 (pg_dump reported an error)`. */
export function describeExit(exitCode: number | null, signal: NodeJS.Signals | null, tool = 'pg_dump'): string {
  const meaning = exitMeaning(exitCode, signal, tool);
  if (signal) return `killed by signal ${signal}${meaning ? ` (${meaning})` : ''}`;
  return `exit code ${exitCode}${meaning ? ` (${meaning})` : ''}`;
}

/** `pg_restore exited with code 1 (…); last lines of its output:` and the stderr tail. */
export function describeToolFailure(tool: string, outcome: Pick<ProcessOutcome, 'exitCode' | 'signal' | 'stderrTail'>, maxLines = 20): string {
  const meaning = exitMeaning(outcome.exitCode, outcome.signal, tool);
  const how = outcome.signal
    ? `was killed by signal ${outcome.signal}${meaning ? ` (${meaning})` : ''}`
    : `exited with code ${outcome.exitCode}${meaning ? ` (${meaning})` : ''}`;
  const tail = outcome.stderrTail.slice(-maxLines).join('\n');
  return `${tool} ${how}${tail ? `; last lines of its output:\n${tail}` : ''}`;
}

/** Keeps the last `maxLines` lines of a stream (each line capped), for error reports. */
export class TailBuffer {
  private lines: string[] = [];
  private partial = '';
  constructor(
    private readonly maxLines = 20,
    private readonly maxLineLength = 500,
    /** Sees every complete line; false drops it (progress chatter need not be kept). */
    private readonly keep: (line: string) => boolean = () => true,
  ) {}
  push(chunk: Buffer | string): void {
    const parts = (this.partial + chunk.toString()).split('\n');
    this.partial = parts.pop()!.slice(-this.maxLineLength * 2);
    for (const p of parts) this.add(p);
  }
  /** The stream ended: its unterminated last line is a line too. */
  end(): void {
    if (this.partial === '') return;
    const last = this.partial;
    this.partial = '';
    this.add(last);
  }
  private add(line: string): void {
    const l = line.replace(/\r$/, '');
    if (l.trim() === '' || !this.keep(l)) return;
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
  /** stdout read straight into the reader's buffers (startToolDirect); `child.stdout` is then null. */
  readonly output?: DirectOutput | undefined;
  readonly stderr: TailBuffer;
  /** Resolves when the process has exited and its pipes are closed; rejects if it could not start. */
  readonly finished: Promise<ProcessOutcome>;
}

export interface StartToolOptions {
  /** The whole environment of the program (libpqEnv). */
  readonly env: Record<string, string>;
  /** Applied to every stderr line kept (secrets out). */
  readonly redact?: (s: string) => string;
  /** stderr lines kept for the outcome (default 20). */
  readonly stderrLines?: number;
  /** Sees each stderr line as it comes; false leaves it out of the outcome. */
  readonly onStderrLine?: (line: string) => boolean;
  /** Which tool this is, for the error when it cannot start and the exit-code table (default pg_dump). */
  readonly tool?: PgTool | ServerTool;
  /**
   * The uid/gid the program runs as (the throwaway server when we are root: initdb and postgres
   * refuse root). Starting as another user needs root; the environment is still exactly `env`.
   */
  readonly runAs?: { readonly uid: number; readonly gid: number } | undefined;
  /**
   * stdout lines go to the kept tail too (the server programs write their messages to either
   * stream); `child.stdout` is then consumed, and runTool's `stdout` is empty.
   */
  readonly stdoutInTail?: boolean | undefined;
  /**
   * The error for a program that cannot be started at all (spawn failed, synchronously or not);
   * default: the client tools' DumpError/RestoreError with their hints.
   */
  readonly cannotStart?: ((err: NodeJS.ErrnoException) => Error) | undefined;
  /**
   * runTool only: the program is killed (SIGKILL) after this many ms; the outcome then says
   * `timedOut`.
   */
  readonly timeoutMs?: number | undefined;
  /**
   * runTool only: aborted on SIGTERM/SIGINT of the command; the tool is stopped (it must not
   * outlive the CLI) and the signal's reason is thrown.
   */
  readonly signal?: AbortSignal | undefined;
  /**
   * startTool only: the tool's stdout is this channel's child end (openDirectChannel), read
   * straight into the reader's buffers through `RunningTool.output`; `child.stdout` is then null.
   * Opened beforehand (it is asynchronous) so that the spawn itself stays synchronous.
   */
  readonly stdout?: DirectChannel | undefined;
  /** startTool only: `child.stdin` is a pipe the caller writes (pg_restore reading an archive streamed from S3); default: none. */
  readonly stdin?: 'pipe' | undefined;
}

/** Spawns a client tool (no shell) with stdout piped and the stderr tail kept. */
export function startTool(spawn: SpawnFn, command: SpawnCommand, toolArgs: readonly string[], options: StartToolOptions): RunningTool {
  const channel = options.stdout;
  let child: ChildProcess;
  try {
    child = spawnWithStdout(spawn, command, toolArgs, options, channel);
  } catch (err) {
    channel?.output.destroy();
    throw options.cannotStart ? options.cannotStart(err as NodeJS.ErrnoException) : err;
  }
  if (!channel) return watchTool(child, command, options);
  // A child that could not start leaves nothing to read.
  child.once('error', () => channel.output.destroy());
  return { ...watchTool(child, command, options), output: channel.output };
}

function spawnWithStdout(spawn: SpawnFn, command: SpawnCommand, toolArgs: readonly string[], options: StartToolOptions, channel: DirectChannel | undefined): ChildProcess {
  const ids = options.runAs ? { uid: options.runAs.uid, gid: options.runAs.gid } : {};
  try {
    return spawn(command.file, [...command.args, ...toolArgs], { env: options.env, stdio: [options.stdin ?? 'ignore', channel?.childEnd ?? 'pipe', 'pipe'], shell: false, ...ids });
  } finally {
    // The child has its own copy: ours must go, or the reader would never see the end.
    channel?.childEnd.destroy();
  }
}

/**
 * startTool with stdout read straight into the reader's buffers (direct-output.ts: no 64 KiB
 * allocation per read, no stream machinery): `output` is set and `child.stdout` is null. Falls
 * back to a plain pipe (`output` unset) when the channel cannot be opened.
 */
export async function startToolDirect(spawn: SpawnFn, command: SpawnCommand, toolArgs: readonly string[], options: StartToolOptions): Promise<RunningTool> {
  return startTool(spawn, command, toolArgs, { ...options, stdout: await openDirectChannel() });
}

function watchTool(child: ChildProcess, command: SpawnCommand, options: StartToolOptions): RunningTool {
  const redact = options.redact ?? ((s: string) => s);
  const tool = options.tool ?? 'pg_dump';
  const stderr = new TailBuffer(options.stderrLines ?? 20, 500, options.onStderrLine);
  child.stderr?.on('data', (c: Buffer) => stderr.push(c));
  if (options.stdoutInTail) child.stdout?.on('data', (c: Buffer) => stderr.push(c));
  const finished = new Promise<ProcessOutcome>((resolve, reject) => {
    child.once('error', (err: NodeJS.ErrnoException) => reject(options.cannotStart ? options.cannotStart(err) : cannotStart(tool, command, err)));
    child.once('close', (exitCode: number | null, signal: NodeJS.Signals | null) => {
      stderr.end();
      resolve({ exitCode, signal, stderrTail: stderr.get().map(redact) });
    });
  });
  // Reported through `finished`; keep Node from treating the first rejection as unhandled.
  finished.catch(() => {});
  return { child, stderr, finished };
}

/** Runs a tool to its end, keeping its stdout (small outputs only: `--version`, `--list`). */
export async function runTool(
  spawn: SpawnFn,
  command: SpawnCommand,
  toolArgs: readonly string[],
  options: StartToolOptions,
): Promise<ProcessOutcome & { readonly stdout: string; readonly stdoutBytes: Buffer; readonly timedOut: boolean }> {
  const signal = options.signal;
  signal?.throwIfAborted();
  const run = startTool(spawn, command, toolArgs, options);
  const onAbort = () => run.child.kill('SIGTERM');
  signal?.addEventListener('abort', onAbort, { once: true });
  let timedOut = false;
  const timer =
    options.timeoutMs === undefined
      ? undefined
      : setTimeout(() => {
          // Still running (kill fails once it has exited): the bound, not the program, ended it.
          timedOut = run.child.kill('SIGKILL');
        }, options.timeoutMs);
  const out: Buffer[] = [];
  if (!options.stdoutInTail) run.child.stdout?.on('data', (c: Buffer) => out.push(c));
  try {
    const outcome = await run.finished;
    signal?.throwIfAborted();
    // stdoutBytes: for output whose bytes are not UTF-8 text (a LATIN1 database's script).
    const stdoutBytes = Buffer.concat(out);
    return { ...outcome, stdout: stdoutBytes.toString('utf8'), stdoutBytes, timedOut };
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}

function cannotStart(tool: PgTool | ServerTool, command: SpawnCommand, err: NodeJS.ErrnoException): DumpError | RestoreError {
  if (tool === 'pg_restore') {
    return new RestoreError(`cannot run ${command.file}: ${err.message}`, {
      cause: err,
      hint: 'pg_restore 18 is needed: build the layer (npm run build:layer -- x86_64), set PG_DUMP_BIN to a pg_dump 18 whose pg_restore sits beside it, or install postgresql-client-18.',
    });
  }
  const hint =
    err.code === 'ENOENT'
      ? 'pg_dump is not there: attach the pg_dump layer to the function, or set PG_DUMP_BIN to a pg_dump 18 binary.'
      : err.code === 'EACCES'
        ? 'pg_dump is not executable: check PG_DUMP_BIN and its permissions.'
        : 'Check PG_DUMP_BIN and the layer.';
  return new DumpError(`cannot start ${command.file}: ${err.code ?? err.message}`, { cause: err, hint });
}
