/**
 * Everything the CLI writes goes through here, so two rules hold everywhere:
 *  - a terminal gets a live progress line (bytes, rate, time left) and readable text; anything else
 *    (a pipe, a file, cron) gets one JSON object per line per event, the result last;
 *  - every secret the CLI was given (passwords in URLs) is scrubbed from every line written.
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

export interface Stream {
  write(text: string): unknown;
}

export interface OutputOptions {
  readonly stdout: Stream;
  readonly stderr: Stream;
  /** Human mode (a terminal on stdout) or JSON lines. */
  readonly tty: boolean;
  readonly now?: () => number;
}

export class Output {
  readonly tty: boolean;
  private readonly stdout: Stream;
  private readonly stderr: Stream;
  private readonly now: () => number;
  private readonly secrets = new Set<string>();
  /** Start of the current moving phase, for rate and ETA. */
  private phase: { event: string; startedAt: number; startBytes: number } | undefined;
  private lastJsonProgress = 0;
  private barShown = false;
  private silent = false;

  constructor(options: OutputOptions) {
    this.stdout = options.stdout;
    this.stderr = options.stderr;
    this.tty = options.tty;
    this.now = options.now ?? Date.now;
  }

  /** Registers a secret to scrub from all output (the engine's `redact`: raw and URL-encoded). */
  addSecret(secret: string | undefined): void {
    if (secret) this.secrets.add(secret);
  }

  /** Drops progress events: `--json` promises a stdout that holds the JSON document only. */
  quiet(): void {
    this.silent = true;
  }

  redact(text: string): string {
    return redact(text, [...this.secrets]);
  }

  /** A progress event: a redrawn line on a terminal, a JSON line (moving events at most 1/s) otherwise. */
  readonly progress = (e: ProgressEvent): void => {
    if (this.silent) return;
    const t = this.now();
    // Moving events carry bytes done and the total expected; the last one says `done`.
    // A streaming event (pg_dump's output) has bytes and a rate but no total.
    const metered = typeof e.bytes === 'number' && (typeof e.total === 'number' || e.streaming === true);
    // Counted events (pg_restore's tables) move too, without a byte rate.
    const counted = typeof e.tablesDone === 'number';
    const moving = (metered && e.done !== true) || counted;
    const first = (metered && e.bytes === 0) || (counted && e.tablesDone === 0);
    if (metered) {
      if (!this.phase || this.phase.event !== e.event || e.bytes < this.phase.startBytes) this.phase = { event: e.event, startedAt: t, startBytes: e.bytes };
    }
    const rate = this.rate(e, t);
    const eta = rate && typeof e.total === 'number' && typeof e.bytes === 'number' && rate > 0 ? Math.max(0, (e.total - e.bytes) / rate) : undefined;
    if (!this.tty) {
      if (moving && !first && t - this.lastJsonProgress < 1000) return;
      if (moving) this.lastJsonProgress = t;
      this.jsonLine({ time: new Date(t).toISOString(), ...e, ...(rate !== undefined ? { bytesPerSecond: Math.round(rate) } : {}), ...(eta !== undefined ? { etaSeconds: Math.round(eta) } : {}) });
      return;
    }
    if (metered) {
      const pct = e.total ? ` ${Math.min(100, Math.floor((e.bytes / e.total) * 100))}%` : '';
      const of = e.total ? ` / ${formatBytes(e.total)}` : '';
      const speed = rate ? `  ${formatBytes(rate)}/s` : '';
      const left = e.done === true ? `  done in ${formatDuration(Number(e.ms ?? t - (this.phase?.startedAt ?? t)))}` : eta !== undefined ? `  ETA ${formatDuration(eta * 1000)}` : '';
      this.stdout.write(`\r\x1b[2K${e.event}: ${formatBytes(e.bytes as number)}${of}${pct}${speed}${left}`);
      this.barShown = true;
      if (e.done === true) this.endBar();
      return;
    }
    if (counted) {
      const of = typeof e.tablesTotal === 'number' ? `/${e.tablesTotal}` : '';
      const now = typeof e.table === 'string' ? `, ${e.table}` : '';
      const elapsed = typeof e.elapsedMs === 'number' ? `, ${formatDuration(e.elapsedMs)}` : '';
      this.stdout.write(this.redact(`\r\x1b[2K${e.event} into ${String(e.database)}: ${String(e.tablesDone)}${of} tables${now}${elapsed}`));
      this.barShown = true;
      return;
    }
    this.endBar();
    this.stdout.write(this.redact(`${describeEvent(e)}\n`));
  };

  private rate(e: ProgressEvent, t: number): number | undefined {
    if (typeof e.bytes !== 'number' || !this.phase) return undefined;
    const secs = (t - this.phase.startedAt) / 1000;
    return secs > 0.05 ? (e.bytes - this.phase.startBytes) / secs : undefined;
  }

  private endBar(): void {
    if (this.barShown) this.stdout.write('\n');
    this.barShown = false;
  }

  /** Writes the command's result: JSON (always the last line in JSON mode), or text on a terminal. */
  result(value: unknown, text?: string): void {
    this.endBar();
    if (!this.tty || text === undefined) {
      this.jsonLine(this.tty ? value : { event: 'result', ...(value as object) }, this.tty);
    } else {
      this.stdout.write(this.redact(text.endsWith('\n') ? text : `${text}\n`));
    }
  }

  /** Plain text to stdout (tables, JSON documents asked for with --json). */
  print(text: string): void {
    this.endBar();
    this.stdout.write(this.redact(text.endsWith('\n') ? text : `${text}\n`));
  }

  /**
   * Something the operator must know although the command goes on (a backup skipped): always on
   * stderr, so that `--json`'s stdout stays one JSON document; also a `warning` event in JSON mode.
   */
  warn(message: string): void {
    this.endBar();
    this.stderr.write(this.redact(`pg-s3-backup: warning: ${message}\n`));
    if (!this.tty && !this.silent) this.jsonLine({ event: 'warning', time: new Date(this.now()).toISOString(), message });
  }

  /** A failure: what failed and what to do, on stderr; in JSON mode also an `error` event on stdout. */
  error(err: { readonly name?: string; readonly message: string; readonly stage?: string; readonly hint?: string | undefined }): void {
    this.endBar();
    const stage = err.stage ? ` (${err.stage})` : '';
    this.stderr.write(this.redact(`pg-s3-backup: error${stage}: ${err.message}\n${err.hint ? `what to do: ${err.hint}\n` : ''}`));
    if (!this.tty) this.jsonLine({ event: 'error', time: new Date(this.now()).toISOString(), error: err.name ?? 'Error', stage: err.stage, message: err.message, hint: err.hint });
  }

  private jsonLine(value: unknown, pretty = false): void {
    this.stdout.write(this.redact(`${JSON.stringify(value, null, pretty ? 2 : undefined)}\n`));
  }
}

function describeEvent(e: ProgressEvent): string {
  // The engine's events carry a timestamp and the stage for log search: noise on a terminal.
  const { event, time: _time, stage: _stage, requestId: _requestId, ...rest } = e;
  const details = Object.entries(rest)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  return `${event}${details ? `: ${details}` : ''}`;
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
