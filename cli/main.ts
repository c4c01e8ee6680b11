/**
 * `pg-s3-backup`: the operators' front door to the same core as the Lambda handler.
 * Exit codes: 0 success, 1 failure, 2 usage error (commander's parse errors included), 124 stopped
 * at its deadline (TASK_TIMEOUT_SECONDS), 130/143 stopped by SIGINT/SIGTERM.
 */
import { Command, CommanderError, Help } from 'commander';
import { constants } from 'node:os';
import { TimeBudget } from '../engine/budget.ts';
import { MAX_TASK_TIMEOUT_SECONDS } from '../engine/settings/limits.ts';
import { InterruptedError, PgS3BackupError, TimeBudgetError } from '../engine/errors.ts';
import { redactUrls } from '../engine/redact.ts';
import { TOOL_VERSION } from '../engine/version.ts';
import type { CliContext, CliIo } from './context.ts';
import { EXIT, ExitCode, outputOptions } from './options.ts';
import type { OutputFormat } from './output.ts';

type Register = (program: Command, ctx: CliContext) => void;

/**
 * Every command, in help order, with the one-line summary the command list shows. A command's
 * module (its options, the engine and AWS clients it needs) is imported only when that command
 * runs: `--help` and a mistyped command load none of them. `piped`: the output format when stdout
 * is not a terminal (cli/options.ts outputOptions; default json): text for the reports people read.
 */
export const COMMANDS: readonly {
  readonly name: string;
  /** Other names that run it (`run`, the backup's first name: crontabs and scripts use it). */
  readonly aliases?: readonly string[];
  /** Plumbing for scripts, left out of the command list. */
  readonly hidden?: boolean;
  readonly summary: string;
  readonly load: () => Promise<Register>;
  /** The output format when stdout is not a terminal (default json): text for the reports people read. */
  readonly piped?: OutputFormat;
}[] = [
  { name: 'backup', aliases: ['run'], summary: 'take a backup now from this machine (the Lambda function\'s pipeline; --dry-run writes nothing)', load: async () => (await import('./run.ts')).registerRun },
  { name: 'invoke', summary: 'ask the deployed Lambda function for a backup now', load: async () => (await import('./invoke.ts')).registerInvoke },
  { name: 'list', summary: 'complete backups, newest first, with the last restore drill\'s result', load: async () => (await import('./list.ts')).registerList, piped: 'text' },
  { name: 'status', summary: 'one screen for the whole bucket: each database\'s newest backup, its age, size trend and last drill; exit 1 when one is overdue', load: async () => (await import('./status.ts')).registerStatus },
  { name: 'restore', summary: 'download a backup, check its SHA-256, pg_restore it into --target-url', load: async () => (await import('./restore.ts')).registerRestore },
  { name: 'verify', summary: 'the restore drill: restore into a scratch database and report; exit 1 on any problem', load: async () => (await import('./verify.ts')).registerVerify },
  { name: 'prune', summary: 'delete backups kept by no retention rule, and day-old incomplete leftovers', load: async () => (await import('./prune.ts')).registerPrune },
  { name: 'doctor', summary: 'check what tonight\'s backup needs, without taking one', load: async () => (await import('./doctor.ts')).registerDoctor, piped: 'text' },
  { name: 'alert', hidden: true, summary: 'report a failure that happened outside a run (host mode uses it)', load: async () => (await import('./alert.ts')).registerAlert },
];

/**
 * The options every command takes, each the same as its variable set for this one command (the
 * option wins over the environment). `--profile` is AWS_PROFILE: it picks a profile of the AWS
 * shared config and credentials files for every AWS client (credentials in AWS_ACCESS_KEY_ID…
 * still come first, as with AWS_PROFILE).
 */
export const GLOBAL_OPTIONS = [
  { flag: '--bucket <name>', key: 'bucket', variable: 'BACKUP_BUCKET', help: 'the bucket of the backups (e.g. the replica\'s)' },
  { flag: '--prefix <prefix>', key: 'prefix', variable: 'BACKUP_PREFIX', help: 'the key prefix of the backups' },
  { flag: '--region <region>', key: 'region', variable: 'AWS_REGION', help: 'the AWS region of every AWS call' },
  { flag: '--profile <name>', key: 'profile', variable: 'AWS_PROFILE', help: 'the AWS shared-config profile for credentials and region' },
] as const;

/** The environment variables the global options given set (program.opts() of commander). */
export function globalOptionVariables(opts: Readonly<Record<string, unknown>>): Record<string, string> {
  const set: Record<string, string> = {};
  for (const o of GLOBAL_OPTIONS) if (typeof opts[o.key] === 'string') set[o.variable] = opts[o.key] as string;
  return set;
}

/** The command `argv` runs (`help X` asks about X), or undefined (top-level help, version, a typo). */
export function commandIn(argv: readonly string[]): (typeof COMMANDS)[number] | undefined {
  const words: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    // `--bucket replica list`: the option's value is no command.
    if (GLOBAL_OPTIONS.some((o) => o.flag.split(' ')[0] === a)) i++;
    else if (!a.startsWith('-')) words.push(a);
  }
  const name = words[0] === 'help' ? words[1] : words[0];
  return COMMANDS.find((c) => c.name === name || c.aliases?.includes(name ?? '') === true);
}

/**
 * The program for `argv`: the command it runs fully registered (its module loaded), every other
 * one as a name and a summary for the command list.
 */
export async function buildProgram(argv: readonly string[], ctx: () => Promise<CliContext>): Promise<Command> {
  const program = new Command('pg-s3-backup')
    .description('PostgreSQL backups in S3: back up, list, verify and restore (the same core as the Lambda function)')
    .version(TOOL_VERSION)
    .showHelpAfterError('(run with --help for usage)')
    // Every command has options; the ones not loaded declare none yet. An alias shows as `backup|run`.
    .configureHelp({ showGlobalOptions: true, subcommandTerm: (cmd) => (COMMANDS.some((c) => c.name === cmd.name()) ? `${[cmd.name(), ...cmd.aliases()].join('|')} [options]` : new Help().subcommandTerm(cmd)) })
    .addHelpText(
      'after',
      '\nConfiguration comes from the environment: BACKUP_BUCKET, BACKUP_PREFIX, RETENTION_COUNT, DB_SECRET_ID or DATABASE_URL,\n' +
        'DATABASES, PG_DUMP_BIN, S3_FORCE_PATH_STYLE, AWS_REGION, AWS_ENDPOINT_URL_S3, … (see docs/operations.md).\n' +
        '--bucket, --prefix, --region and --profile win over BACKUP_BUCKET, BACKUP_PREFIX, AWS_REGION and AWS_PROFILE\n' +
        '(e.g. `pg-s3-backup --bucket my-backups-replica --region eu-central-1 list`); they go before or after the command.\n' +
        'Run `pg-s3-backup <command> --help` for a command\'s options.\n' +
        'Exit codes: 0 success, 1 failure, 2 usage error, 124 stopped at its deadline (--remote --timeout), 130/143 stopped by SIGINT/SIGTERM.',
    );
  for (const o of GLOBAL_OPTIONS) program.option(o.flag, `${o.help}; wins over ${o.variable}`);
  // Before any command's action reads its configuration or makes an AWS client.
  program.hook('preAction', async () => (await ctx()).useVariables(globalOptionVariables(program.opts())));
  const wanted = commandIn(argv);
  for (const command of COMMANDS) {
    if (command === wanted) {
      (await command.load())(program, await ctx());
      // Every command has the same output options (docs/operations.md, "Output").
      outputOptions(program.commands.at(-1)!, (await ctx()).out, command.piped ?? 'json');
    } else program.command(command.name, { hidden: command.hidden === true }).aliases(command.aliases ?? []).summary(command.summary);
  }
  return program;
}

/** 128 + the signal's number, as shells report a process a signal ended (130 for SIGINT, 143 for SIGTERM). */
export function signalExitCode(signal: NodeJS.Signals): number {
  return 128 + (constants.signals[signal] ?? 15);
}

/** Runs the CLI on `argv` (without node and script) and returns the exit code. */
export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  // The context (configuration, output, the engine's dependencies) is only made for a command
  // that runs: help and usage errors need none of it.
  let ctx: CliContext | undefined;
  const context = async () => (ctx ??= new (await import('./context.ts')).CliContext(io));
  const inner = await mainInner(argv, io, context, () => ctx);
  // An interrupted command has cleaned up (pg_dump stopped, upload aborted, temp files and scratch
  // database removed, alert sent) and says so by its exit status, whatever it ended with.
  const reason = io.signal?.aborted ? (io.signal.reason as unknown) : undefined;
  const code = reason instanceof InterruptedError ? signalExitCode(reason.signal) : reason instanceof TimeBudgetError ? EXIT.timeout : inner;
  // JSON mode's last line is the result, a failed or interrupted command's too.
  (ctx as CliContext | undefined)?.out.finish(code);
  return code;
}

async function mainInner(argv: readonly string[], io: CliIo, context: () => Promise<CliContext>, made: () => CliContext | undefined): Promise<number> {
  try {
    const program = await buildProgram(argv, context);
    const configure = (cmd: Command) => {
      cmd.exitOverride().configureOutput({
        writeOut: (s) => io.stdout.write(s),
        // A usage error may echo a URL with its password before any command has loaded.
        writeErr: (s) => io.stderr.write(made()?.out.redact(s) ?? redactUrls(s)),
      });
      cmd.commands.forEach(configure);
    };
    configure(program);
    await program.parseAsync([...argv], { from: 'user' });
    return EXIT.ok;
  } catch (err) {
    if (err instanceof ExitCode) return err.code;
    if (err instanceof CommanderError) {
      // --help and --version end through here too, with exit code 0.
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    const out = (await context()).out;
    if (err instanceof PgS3BackupError) {
      out.error(err);
      return err.stage === 'usage' ? EXIT.usage : EXIT.failure;
    }
    const e = err instanceof Error ? err : new Error(String(err));
    out.error({ name: e.name, message: e.message, hint: 'This is unexpected: run again with --verbose (or PG_S3_BACKUP_DEBUG=1) for the stack trace, and report it.' });
    if (io.env.PG_S3_BACKUP_DEBUG || out.verbose) io.stderr.write(out.redact(`${e.stack ?? ''}\n`));
    return EXIT.failure;
  }
}

/** A second signal this soon after the first is the same stop delivered twice, not an operator insisting. */
const DUPLICATE_SIGNAL_MS = 2000;

/** The longest an interrupted command may spend cleaning up before it exits anyway. */
export const INTERRUPT_GRACE_MS = 60_000;

/**
 * TASK_TIMEOUT_SECONDS in milliseconds, or undefined when unset. Read here, before any command
 * loads the configuration (which checks it again and names it when it is malformed): the deadline
 * starts with the process.
 */
export function taskTimeoutMs(env: Readonly<Record<string, string | undefined>>): number | undefined {
  const text = env.TASK_TIMEOUT_SECONDS?.trim();
  if (!text || !/^\d+$/.test(text)) return undefined;
  const seconds = Number(text);
  return seconds >= 1 && seconds <= MAX_TASK_TIMEOUT_SECONDS ? seconds * 1000 : undefined;
}

/**
 * The error a command stops with at its deadline: what happened and what to do. Restore and verify
 * clean up on it as on SIGTERM (engine/restore: pg_restore stopped, the temporary dump removed, a
 * database `--create` made or verify's scratch database dropped).
 */
export function deadlineError(timeoutMs: number): TimeBudgetError {
  const seconds = Math.round(timeoutMs / 1000);
  return new TimeBudgetError(`stopped at its deadline, ${seconds} s after it started (TASK_TIMEOUT_SECONDS=${seconds}: restore --remote / verify --remote pass their --timeout)`, { bytesWritten: 0, elapsedMs: timeoutMs }, {
    hint:
      'Nothing of this run goes on: pg_restore was stopped and, as after any failed restore, a database this restore created (--create) or verify\'s scratch database is dropped if the server still answers (check that it is gone); a restore into an existing database leaves it partly restored (run it again with --clean). ' +
      'Give it more time (--timeout, at most 24h), more task resources (context fargateCpu, fargateMemoryMiB) or more --jobs; verify\'s report shows how long each step takes.',
  });
}

// Run as a program (cli/entry.ts, the bundle's entry, imports this module).
export async function runFromProcess(): Promise<void> {
  const interrupt = new AbortController();
  let forced: NodeJS.Timeout | undefined;
  // The command's own deadline (the restore task's: nothing stops it if the operator who started
  // it went away): it stops as on a signal, and exits anyway after the same grace.
  const timeoutMs = taskTimeoutMs(process.env);
  const budget = timeoutMs === undefined ? undefined : new TimeBudget({ ms: timeoutMs, interrupt: interrupt.signal, expired: () => deadlineError(timeoutMs) });
  budget?.signal.addEventListener('abort', () => {
    if (budget.expired) forced = setTimeout(() => process.exit(EXIT.timeout), INTERRUPT_GRACE_MS);
  }, { once: true });
  // What stops the command: a signal, or the deadline first.
  const stop = budget?.signal ?? interrupt.signal;
  let firstAt = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stop.aborted) {
      // The same stop reaching us twice (systemd signals the group, backup.sh passes it on).
      if (Date.now() - firstAt < DUPLICATE_SIGNAL_MS) return;
      // A second signal: the operator insists. Children got SIGTERM with the first one.
      process.exit(signalExitCode(signal));
    }
    firstAt = Date.now();
    process.stderr.write(`pg-s3-backup: ${signal} received: stopping pg_dump, aborting the upload (another ${signal} exits at once)\n`);
    interrupt.abort(new InterruptedError(signal));
    forced = setTimeout(() => process.exit(signalExitCode(signal)), INTERRUPT_GRACE_MS);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // `pg-s3-backup list | head`: the reader left, which is no error of ours. While an interrupted
  // command cleans up (host mode's log reader may have been stopped with it) the output is lost,
  // but the clean-up must go on.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    if (!stop.aborted) process.exit(process.exitCode ?? EXIT.ok);
  });
  process.stderr.on('error', () => {});
  const code = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env, sdkEnv: process.env, signal: stop });
  if (forced) clearTimeout(forced);
  budget?.end();
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  process.exitCode = code;
}
