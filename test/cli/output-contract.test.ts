/**
 * The CLI's one output contract (docs/operations.md, "Output"), per command, with the real program
 * against PostgreSQL and moto, piped and on a pseudo-terminal (`script` from util-linux gives the
 * child a real pty; its stderr goes to a file so that the pty shows stdout alone):
 *  - text on a terminal: sentences and tables, no event identifier, no JSON, no `_globals` folder
 *    named as a database, warnings on stderr;
 *  - JSON lines with --json (or, for the commands that stream events, in a pipe): every stdout
 *    line one JSON object, the `result` line last, a failure's too;
 *  - `--output text` forces text in a pipe, `--quiet` leaves the result alone, `--no-progress`
 *    drops the redrawn line. Exit codes as before.
 * `invoke` needs a Lambda: it runs in-process with an injected client, its stdout a stream whose
 * isTTY is true or not, which is all the CLI reads of a terminal (cli/context.ts).
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_EVENT_NAMES } from '../../cli/events.ts';
import { main } from '../../cli/main.ts';
import { buildDumpKey, manifestKeyFor } from '../../engine/store/backup-key.ts';
import { CLI, jsonLines, runCli, startCliServices, type CliRun, type CliServices } from '../support/cli.ts';

let svc: CliServices;
let env: Record<string, string>;
let dir: string;
/** A backup whose manifest is not JSON: `list` warns about it. */
let unreadableKey: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pgs3b-output-'));
  svc = await startCliServices();
  // The globals files too: `prune` meets the `_globals` folder, which is not a database.
  env = { ...svc.env, BACKUP_GLOBALS: 'true' };
  const first = await runCli(['run'], env);
  expect(first.code, first.stderr).toBe(0);
  unreadableKey = buildDumpKey('pg-s3-backup/', 'app', new Date(Date.UTC(2026, 0, 2, 3, 4, 5)));
  await svc.clients.s3.send(new PutObjectCommand({ Bucket: svc.bucket, Key: unreadableKey, Body: 'x' }));
  await svc.clients.s3.send(new PutObjectCommand({ Bucket: svc.bucket, Key: manifestKeyFor(unreadableKey), Body: 'not json' }));
}, 180_000);
afterAll(async () => {
  await svc?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** The real program on a pseudo-terminal: stdout is what the terminal shows, stderr a file. */
async function runOnPty(args: readonly string[], runEnv: Record<string, string> = env): Promise<CliRun & { screen: string }> {
  const errFile = join(dir, `stderr-${Math.random().toString(36).slice(2)}`);
  const command = `exec ${[process.execPath, CLI, ...args].map(quote).join(' ')} 2>${quote(errFile)}`;
  return new Promise((resolve, reject) => {
    const child = spawn('script', ['-qec', command, '/dev/null'], { env: runEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stdout += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      // The terminal's line discipline turns \n into \r\n; a redrawn line (`\r`, erase line) shows
      // only its last drawing, which is what the assertions read (the raw text keeps the redraws).
      const text = stdout.replace(/\r\n/g, '\n');
      const stderr = readFileSync(errFile, 'utf8');
      rmSync(errFile, { force: true });
      const events = jsonLines(text);
      resolve({ code, stdout: text, stderr, events, result: events.find((e) => e.event === 'result'), screen: screen(text) });
    });
  });
}

/** What a terminal shows of `text`: each line as last drawn after its carriage returns and erases. */
function screen(text: string): string {
  return text.split('\n').map((line) => line.split('\r').at(-1)!.replaceAll('\x1b[2K', '')).join('\n');
}

/** JSON lines: every non-empty stdout line is a JSON object with an `event`, the result last. */
function expectJsonLines(run: CliRun): Record<string, unknown> {
  const lines = run.stdout.split('\n').filter((l) => l !== '');
  expect(lines.length, run.stdout).toBeGreaterThan(0);
  for (const line of lines) {
    expect(() => JSON.parse(line) as unknown, `not a JSON line: ${line}`).not.toThrow();
    expect(typeof (JSON.parse(line) as { event?: unknown }).event, line).toBe('string');
  }
  const last = JSON.parse(lines.at(-1)!) as Record<string, unknown>;
  expect(last.event).toBe('result');
  expect(lines.filter((l) => l.includes('"event":"result"'))).toHaveLength(1);
  for (const e of run.events) expect(CLI_EVENT_NAMES, `undeclared event ${String(e.event)}`).toContain(e.event);
  return last;
}

/** Text: no JSON line, no event identifier at a line's start, no `key=value` dump of fields, no `_globals`. */
function expectText(run: CliRun): void {
  const text = run.stdout + run.stderr;
  expect(run.events, run.stdout).toEqual([]);
  for (const line of text.split(/[\n\r]/)) {
    const plain = line.replaceAll('\x1b[2K', '');
    for (const name of CLI_EVENT_NAMES) {
      if (plain === name || plain.startsWith(`${name}:`)) throw new Error(`raw event name in text mode: ${JSON.stringify(line)}`);
    }
    expect(plain, 'fields dumped as key=value').not.toMatch(/\b(stage|database|bytes|kept)=/);
  }
  expect(text).not.toContain('_globals');
}

describe('run', () => {
  it('piped: JSON lines, the result last; on a terminal: sentences, a progress line, the summary', async () => {
    const piped = await runCli(['run', '--reason', 'piped'], env);
    expect(piped.code, piped.stderr).toBe(0);
    expect(expectJsonLines(piped)).toMatchObject({ status: 'succeeded' });
    // Each engine event keeps its wording beside the identifier.
    expect(piped.events.filter((e) => e.event !== 'result').every((e) => typeof e.message === 'string')).toBe(true);

    const tty = await runOnPty(['run', '--reason', 'tty'], env);
    expect(tty.code, tty.stderr).toBe(0);
    expectText(tty);
    expect(tty.screen).toMatch(/^app: connecting to /m);
    expect(tty.screen).toMatch(/^app: uploaded .* in /m);
    expect(tty.screen).toMatch(/^roles and tablespaces \(globals\): uploaded /m);
    expect(tty.screen).toMatch(/^backup succeeded$/m);
  });
});

describe('list', () => {
  it('piped: the table, its warning on stderr only; --json: JSON lines, the warning then the rows in the result', async () => {
    const text = await runCli(['list'], env);
    expect(text.code, text.stderr).toBe(0);
    expectText({ ...text, stderr: '' });
    expect(text.stdout).toMatch(/^DATABASE\s+STARTED \(UTC\)/);
    expect(text.stderr).toContain(`warning: skipped ${unreadableKey}`);

    const json = await runCli(['list', '--json'], env);
    expect(json.code, json.stderr).toBe(0);
    const result = expectJsonLines(json);
    expect(json.events[0]).toMatchObject({ event: 'warning', level: 'warn', message: expect.stringContaining(unreadableKey) });
    const backups = result.backups as { database: string; complete: boolean }[];
    expect(backups.length).toBeGreaterThan(0);
    expect(backups.every((b) => b.database === 'app' && b.complete)).toBe(true);
  });

  it('on a terminal: the table; --json there: JSON lines', async () => {
    const tty = await runOnPty(['list'], env);
    expect(tty.code, tty.stderr).toBe(0);
    expectText({ ...tty, stderr: '' });
    expect(tty.screen).toMatch(/^DATABASE\s+STARTED \(UTC\)/);
    expect(tty.stderr).toContain('warning: skipped');
    const json = await runOnPty(['list', '--output', 'json'], env);
    expect(json.code, json.stderr).toBe(0);
    expectJsonLines(json);
  });
});

describe('status', () => {
  it('piped: JSON lines; --output text in a pipe and a terminal: the screen', async () => {
    const piped = await runCli(['status', '--no-stack'], env);
    expect(piped.code, piped.stderr).toBe(0);
    expect(expectJsonLines(piped)).toMatchObject({ ok: true });
    const text = await runCli(['status', '--no-stack', '--output', 'text'], env);
    expect(text.code, text.stderr).toBe(0);
    expectText({ ...text, stderr: '' });
    expect(text.stdout).toMatch(/^pg-s3-backup status: s3:\/\//);
    const tty = await runOnPty(['status', '--no-stack'], env);
    expect(tty.code, tty.stderr).toBe(0);
    expect(tty.screen).toMatch(/^pg-s3-backup status: s3:\/\//);
    expectText({ ...tty, stderr: '' });
  });
});

describe('restore', () => {
  it('piped: JSON lines; on a terminal: a progress line and the summary', async () => {
    const piped = await runCli(['restore', '--latest', '--database', 'app', '--target-url', svc.pg.urlFor('contract_piped'), '--create'], env);
    expect(piped.code, piped.stderr).toBe(0);
    expect(expectJsonLines(piped)).toMatchObject({ status: 'restored' });

    const tty = await runOnPty(['restore', '--latest', '--database', 'app', '--target-url', svc.pg.urlFor('contract_tty'), '--create'], env);
    expect(tty.code, tty.stderr).toBe(0);
    expectText(tty);
    expect(tty.stdout).toContain('\r\x1b[2Kdownloaded: ');
    expect(tty.screen).toMatch(/^SHA-256 verified/m);
    expect(tty.screen).toMatch(/^restored pg-s3-backup\/app\//m);
  });

  it('a failure, piped: the error line, then the result line (ok false), exit 1', async () => {
    const missing = buildDumpKey('pg-s3-backup/', 'app', new Date(Date.UTC(2020, 0, 1)));
    const failed = await runCli(['restore', '--key', missing, '--target-url', svc.pg.urlFor('contract_none'), '--create'], env);
    expect(failed.code).toBe(1);
    const result = expectJsonLines(failed);
    expect(failed.events.at(-2)).toMatchObject({ event: 'error', level: 'error' });
    expect(result).toMatchObject({ ok: false, exitCode: 1, error: { message: expect.any(String) } });
  });
});

describe('verify', () => {
  it('--json: JSON lines, the report in the result; on a terminal with --no-progress: the report as text, no redrawn line', async () => {
    const json = await runCli(['verify', '--latest', '--database', 'app', '--scratch-url', svc.pg.url, '--json'], env);
    expect(json.code, json.stderr).toBe(0);
    expect(expectJsonLines(json)).toMatchObject({ status: 'ok', database: 'app' });
    expect(json.events.length).toBeGreaterThan(1);

    const tty = await runOnPty(['verify', '--latest', '--database', 'app', '--scratch-url', svc.pg.url, '--no-progress'], env);
    expect(tty.code, tty.stderr).toBe(0);
    expectText(tty);
    expect(tty.stdout).not.toContain('\x1b[2K');
    expect(tty.screen).toMatch(/^downloaded: .* in /m);
    expect(tty.screen).toMatch(/^verify OK: pg-s3-backup\/app\//m);
  });
});

describe('prune', () => {
  it('piped: JSON lines; on a terminal: the globals files named as such, no event identifiers', async () => {
    const piped = await runCli(['prune', '--dry-run'], env);
    expect(piped.code, piped.stderr).toBe(0);
    expect(expectJsonLines(piped)).toMatchObject({ dryRun: true });

    const tty = await runOnPty(['prune', '--dry-run'], env);
    expect(tty.code, tty.stderr).toBe(0);
    expectText(tty);
    expect(tty.screen).toMatch(/^roles and tablespaces \(globals\): kept \d+/m);
    expect(tty.screen).toMatch(/^app: kept \d+/m);
  });

  it('--quiet: the result and warnings only (piped), the summary only (terminal)', async () => {
    const piped = await runCli(['prune', '--dry-run', '--quiet'], env);
    expect(piped.code, piped.stderr).toBe(0);
    expectJsonLines(piped);
    expect(piped.events.filter((e) => e.event !== 'result').every((e) => e.level === 'warn' || e.level === 'error')).toBe(true);
    const tty = await runOnPty(['prune', '--dry-run', '--quiet'], env);
    expect(tty.code, tty.stderr).toBe(0);
    expect(tty.screen).toMatch(/^app: kept \d+ \(RETENTION_COUNT/);
    expect(tty.stdout.match(/^app: kept/gm)).toHaveLength(1);
  });
});

describe('doctor --local', () => {
  it('piped: the report as text; --json: JSON lines, the checks in the result; on a terminal: the report', async () => {
    const text = await runCli(['doctor', '--local'], env);
    expect(text.code, text.stderr + text.stdout).toBe(0);
    expectText({ ...text, stderr: '' });
    expect(text.stdout).toMatch(/^pg-s3-backup doctor --local/);
    expect(text.stdout).toMatch(/^✓ /m);

    const json = await runCli(['doctor', '--local', '--json'], env);
    expect(json.code, json.stderr).toBe(0);
    const result = expectJsonLines(json);
    expect(result).toMatchObject({ ok: true, mode: 'local' });
    expect((result.checks as unknown[]).length).toBeGreaterThan(3);

    const tty = await runOnPty(['doctor', '--local'], env);
    expect(tty.code, tty.stderr).toBe(0);
    expect(tty.screen).toMatch(/^✓ /m);
  });
});

describe('alert', () => {
  it('exit 1 when nothing took it, with the result last (piped) or a sentence (terminal)', async () => {
    const piped = await runCli(['alert', '--stage', 'lock', '--message', 'held'], env);
    expect(piped.code).toBe(1);
    expect(expectJsonLines(piped)).toMatchObject({ alerted: null, pinged: null });
    const tty = await runOnPty(['alert', '--stage', 'lock', '--message', 'held'], env);
    expect(tty.code).toBe(1);
    expectText(tty);
    expect(tty.screen).toMatch(/^alert: no ALERT_TOPIC_ARN; no HEARTBEAT_URL/m);
  });
});

describe('usage', () => {
  it('--json and --output text exclude each other (exit 2)', async () => {
    const both = await runCli(['list', '--json', '--output', 'text'], env);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/--json and --output text exclude each other/);
  });
});

describe('invoke (in-process: the injected Lambda client)', () => {
  const result = { status: 'succeeded', backups: [], failures: [], pruned: [] };
  const lambda = () => ({ send: async () => ({ StatusCode: 200, Payload: new TextEncoder().encode(JSON.stringify(result)) }) });
  async function invoke(isTTY: boolean, args: readonly string[] = []) {
    let stdout = '';
    let stderr = '';
    const code = await main(['invoke', '--function', 'backup-fn', ...args], {
      stdout: { write: (s: string) => (stdout += s), isTTY },
      stderr: { write: (s: string) => (stderr += s) },
      env: {},
      lambda: lambda as never,
    });
    const events = jsonLines(stdout);
    return { code, stdout, stderr, events, result: events.find((e) => e.event === 'result') };
  }

  it('piped: JSON lines, the start then the result; on a terminal: sentences', async () => {
    const piped = await invoke(false);
    expect(piped.code).toBe(0);
    expect(expectJsonLines(piped)).toMatchObject({ function: 'backup-fn', result });
    expect(piped.events.map((e) => e.event)).toEqual(['invoke.started', 'result']);
    const tty = await invoke(true);
    expect(tty.code).toBe(0);
    expectText(tty);
    expect(tty.stdout).toMatch(/^invoking backup-fn /m);
    const forced = await invoke(true, ['--json']);
    expectJsonLines(forced);
  });
});
