/**
 * Everything the CLI writes goes through here, so one contract holds for every command
 * (docs/operations.md, "Output"):
 *  - text: readable lines and tables on stdout, a live progress line (bytes, rate, time left) when
 *    stdout is a terminal, warnings and errors on stderr; no event identifier, no JSON;
 *  - json: one JSON object per line on stdout: every event as it happens, then one
 *    `{"event":"result",…}` line, always the last (a failure adds an `error` line before it);
 *    warnings and errors are also written as text on stderr, for whoever reads cron's mail;
 *  - every secret the CLI was given (passwords in URLs) is scrubbed from every line written.
 * Which one: `--output text|json` (or `--json`), else text on a terminal, and in a pipe the
 * command's own default (JSON for the commands that stream events, text for `list` and `doctor`).
 */
import { redact } from '../engine/redact.ts';

/** What the CLI draws: an engine event (cli/events.ts adapts them) or the CLI's own. */
export interface ProgressEvent {
  readonly event: string;
  /** Bytes done so far, for events that move (`download`, `dump`). */
  readonly bytes?: number;
  /** Bytes expected in total, when known. */
  readonly total?: number;
  readonly [detail: string]: unknown;
}

/**
 * How an event reads in text mode (cli/events.ts writes these for the engine's events): `line`,
 * one line of text (none: the event is not shown unless --verbose); `label`, what a moving
 * event's progress line starts with; `level`, warnings and errors go to stderr.
 */
export interface HumanText {
  readonly line?: string | undefined;
  readonly label?: string;
  readonly level?: 'warn' | 'error';
}

export interface Stream {
  write(text: string): unknown;
}

export type OutputFormat = 'text' | 'json';

export interface OutputMode {
  readonly format: OutputFormat;
  /** Only the result, warnings and errors: no progress, no event lines. */
  readonly quiet: boolean;
  /** Text mode: every event, with its identifier and fields (what a bug report needs). */
  readonly verbose: boolean;
  /** Moving events: a redrawn line on a terminal, throttled JSON lines. Off: only when they end. */
  readonly progress: boolean;
}

export interface OutputOptions {
  readonly stdout: Stream;
  readonly stderr: Stream;
  /** stdout is a terminal: text by default, and a redrawn progress line. */
  readonly tty: boolean;
  readonly now?: () => number;
}

interface ErrorReport {
  readonly name?: string;
  readonly message: string;
  readonly stage?: string;
  readonly hint?: string | undefined;
}

export class Output {
  readonly tty: boolean;
  private readonly stdout: Stream;
  private readonly stderr: Stream;
  private readonly now: () => number;
  private readonly secrets = new Set<string>();
  private mode: OutputMode;
  /** Start of the current moving phase, for rate and ETA. */
  private phase: { event: string; startedAt: number; startBytes: number } | undefined;
  private lastJsonProgress = 0;
  private barShown = false;
  private resultWritten = false;
  /** A command chose its output (usage errors before that are commander's text only). */
  private configured = false;
  private lastError: ErrorReport | undefined;

  constructor(options: OutputOptions) {
    this.stdout = options.stdout;
    this.stderr = options.stderr;
    this.tty = options.tty;
    this.now = options.now ?? Date.now;
    this.mode = { format: this.tty ? 'text' : 'json', quiet: false, verbose: false, progress: true };
  }

  /** The command's choice (cli/output-options.ts), made before it runs. */
  configure(mode: Partial<OutputMode>): void {
    this.mode = { ...this.mode, ...mode };
    this.configured = true;
  }

  get verbose(): boolean {
    return this.mode.verbose;
  }

  get json(): boolean {
    return this.mode.format === 'json';
  }

  /** Registers a secret to scrub from all output (the engine's `redact`: raw and URL-encoded). */
  addSecret(secret: string | undefined): void {
    if (secret) this.secrets.add(secret);
  }

  redact(text: string): string {
    return redact(text, [...this.secrets]);
  }

  /** An event: a JSON line, or in text mode its `human` line (a redrawn progress line when it moves). */
  readonly progress = (e: ProgressEvent, human: HumanText = {}): void => {
    const t = this.now();
    // Moving events carry bytes done and the total expected; the last one says `done`.
    // A streaming event (pg_dump's output) has bytes and a rate but no total.
    const metered = typeof e.bytes === 'number' && (typeof e.total === 'number' || e.streaming === true);
    // Counted events (pg_restore's tables) move too, without a byte rate.
    const counted = typeof e.tablesDone === 'number';
    const moving = (metered && e.done !== true) || counted;
    const first = (metered && e.bytes === 0) || (counted && e.tablesDone === 0);
    const level = human.level ?? (e.level === 'warn' || e.level === 'error' ? e.level : undefined);
    if (this.mode.quiet && level === undefined) return;
    if (metered) {
      if (!this.phase || this.phase.event !== e.event || e.bytes < this.phase.startBytes) this.phase = { event: e.event, startedAt: t, startBytes: e.bytes };
    }
    const rate = this.rate(e, t);
    const eta = rate && typeof e.total === 'number' && typeof e.bytes === 'number' && rate > 0 ? Math.max(0, (e.total - e.bytes) / rate) : undefined;
    if (this.json) {
      if (moving && !this.mode.progress) return;
      if (moving && !first && t - this.lastJsonProgress < 1000) return;
      if (moving) this.lastJsonProgress = t;
      this.jsonLine({ time: new Date(t).toISOString(), ...e, ...(rate !== undefined ? { bytesPerSecond: Math.round(rate) } : {}), ...(eta !== undefined ? { etaSeconds: Math.round(eta) } : {}) });
      return;
    }
    if (this.mode.verbose) {
      this.line(`${describeEvent(e)}`, level);
      return;
    }
    // A redrawn line only where it can be redrawn: on a terminal, unless --no-progress.
    const bar = this.tty && this.mode.progress;
    const label = human.label ?? (typeof e.message === 'string' ? e.message : e.event);
    if (metered) {
      const speed = rate ? `  ${formatBytes(rate)}/s` : '';
      if (!bar) {
        if (e.done === true) this.line(`${label}: ${formatBytes(e.bytes as number)} in ${formatDuration(Number(e.ms ?? t - (this.phase?.startedAt ?? t)))}`);
        return;
      }
      const pct = e.total ? ` ${Math.min(100, Math.floor((e.bytes / e.total) * 100))}%` : '';
      const of = e.total ? ` / ${formatBytes(e.total)}` : '';
      const left = e.done === true ? `  done in ${formatDuration(Number(e.ms ?? t - (this.phase?.startedAt ?? t)))}` : eta !== undefined ? `  ETA ${formatDuration(eta * 1000)}` : '';
      this.stdout.write(this.redact(`\r\x1b[2K${label}: ${formatBytes(e.bytes as number)}${of}${pct}${speed}${left}`));
      this.barShown = true;
      if (e.done === true) {
        // A finished transfer stays on the screen; a bar that just stops (pg_dump's, whose size the next line says) is cleared.
        this.stdout.write('\n');
        this.barShown = false;
      }
      return;
    }
    if (counted) {
      if (!bar) return;
      const of = typeof e.tablesTotal === 'number' ? `/${e.tablesTotal}` : '';
      const now = typeof e.table === 'string' ? `, ${e.table}` : '';
      const elapsed = typeof e.elapsedMs === 'number' ? `, ${formatDuration(e.elapsedMs)}` : '';
      this.stdout.write(this.redact(`\r\x1b[2K${label}: ${String(e.tablesDone)}${of} tables${now}${elapsed}`));
      this.barShown = true;
      return;
    }
    if (human.line !== undefined) this.line(human.line, level);
  };

  /** A line of text mode: on stdout, or on stderr for a warning or an error. */
  private line(text: string, level?: 'warn' | 'error'): void {
    this.endBar();
    if (level) this.stderr.write(this.redact(`pg-s3-backup: ${level === 'warn' ? 'warning' : 'error'}: ${text}\n`));
    else this.stdout.write(this.redact(`${text}\n`));
  }

  private rate(e: ProgressEvent, t: number): number | undefined {
    if (typeof e.bytes !== 'number' || !this.phase) return undefined;
    const secs = (t - this.phase.startedAt) / 1000;
    return secs > 0.05 ? (e.bytes - this.phase.startBytes) / secs : undefined;
  }

  private endBar(): void {
    if (this.barShown) this.stdout.write('\r\x1b[2K');
    this.barShown = false;
  }

  /** The command's result: the last JSON line (`{"event":"result",…}`), or `text` in text mode. */
  result(value: object, text: string): void {
    this.endBar();
    this.resultWritten = true;
    if (this.json) this.jsonLine({ event: 'result', ...value });
    else this.stdout.write(this.redact(text.endsWith('\n') ? text : `${text}\n`));
  }

  /** A command's own event (`status`'s lines), for JSON mode only: its text is in the result's. */
  event(e: { readonly event: string; readonly [field: string]: unknown }): void {
    const { event, ...fields } = e;
    if (this.json && !this.mode.quiet) this.jsonLine({ event, time: new Date(this.now()).toISOString(), ...fields });
  }

  /**
   * The end of a command that wrote no result (it failed, or was stopped): in JSON mode a last
   * `{"event":"result","ok":false,…}` line, so that the last line is always the result.
   */
  finish(exitCode: number): void {
    if (this.resultWritten || !this.json || !this.configured) return;
    this.resultWritten = true;
    const e = this.lastError;
    this.jsonLine({ event: 'result', ok: exitCode === 0, exitCode, ...(e ? { error: { name: e.name ?? 'Error', stage: e.stage, message: e.message, hint: e.hint } } : {}) });
  }

  /** Something the operator must know although the command goes on (a backup skipped): stderr, and a `warning` line in JSON mode. */
  warn(message: string): void {
    this.endBar();
    this.stderr.write(this.redact(`pg-s3-backup: warning: ${message}\n`));
    if (this.json) this.jsonLine({ event: 'warning', time: new Date(this.now()).toISOString(), level: 'warn', message });
  }

  /** A failure: what failed and what to do, on stderr; in JSON mode also an `error` line on stdout. */
  error(err: ErrorReport): void {
    this.endBar();
    this.lastError = err;
    const stage = err.stage ? ` (${err.stage})` : '';
    this.stderr.write(this.redact(`pg-s3-backup: error${stage}: ${err.message}\n${err.hint ? `what to do: ${err.hint}\n` : ''}`));
    if (this.json) this.jsonLine({ event: 'error', time: new Date(this.now()).toISOString(), level: 'error', error: err.name ?? 'Error', stage: err.stage, message: err.message, hint: err.hint });
  }

  private jsonLine(value: unknown): void {
    this.stdout.write(this.redact(`${JSON.stringify(value)}\n`));
  }
}

/** --verbose's text line: the wording, then the identifier and every field. */
function describeEvent(e: ProgressEvent): string {
  const { event, message, ...rest } = e;
  const details = Object.entries(rest)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  return `${typeof message === 'string' ? `${message} ` : ''}[${event}]${details ? ` ${details}` : ''}`;
}

export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return '?';
  const s = Math.round(ms / 1000);
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (s < 60) return `${(ms / 1000).toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m}m${String(s % 60).padStart(2, '0')}s` : `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/**
 * A name from the bucket made safe for a terminal: control characters (C0, DEL, C1), line and
 * paragraph separators, and the invisible bidirectional and zero-width formatting characters are
 * shown as `\xNN` / `\u{NNNN}` escapes, and a backslash as `\\`, so a hostile database name can
 * neither move the cursor, clear the screen, nor pass for another name. JSON output needs none of
 * this: JSON.stringify escapes what JSON must, and a JSON reader does not interpret the rest.
 */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  return text.replace(/[\\\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/g, (ch) => {
    if (ch === '\\') return '\\\\';
    const code = ch.codePointAt(0)!;
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`;
  });
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
