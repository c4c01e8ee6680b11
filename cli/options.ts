/** Small pieces the command modules share: exit codes and commander option parsers. */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { UsageError } from '../engine/errors.ts';
import type { Output, OutputFormat } from './output.ts';

/** The CloudFormation stack the CLI reads (outputs, alarms, schedule) when --stack and PG_S3_BACKUP_STACK are not set: the CDK app's default stackName. */
export const DEFAULT_STACK_NAME = 'PgS3Backup';

/** 124 as coreutils' `timeout` says it: the command was stopped at its deadline (TASK_TIMEOUT_SECONDS, `--remote --timeout`). */
export const EXIT = { ok: 0, failure: 1, usage: 2, timeout: 124 } as const;

/** Thrown by a command that already reported its outcome and only needs the exit code set. */
export class ExitCode extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
    this.name = 'ExitCode';
  }
}

/** commander option parser for `--jobs`. */
export function positiveInt(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 64) throw new InvalidArgumentError('expected a whole number from 1 to 64');
  return Number(value);
}

/** commander option collector for repeatable options (`--database A --database B`). */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** What `restore` and `verify` share: which backup, how many pg_restore jobs, where to download. */
export interface BackupSelectionOpts {
  readonly latest?: boolean;
  readonly key?: string;
  readonly database?: string;
  readonly jobs: number;
  readonly tempDir?: string;
  readonly identityFile?: string;
  readonly identitySecret?: string;
}

/** Adds the options of `BackupSelectionOpts` (the URL option stays each command's own). */
export function backupSelectionOptions(command: Command): Command {
  return command
    .addOption(new Option('--latest', 'the newest complete backup (of --database)').conflicts('key'))
    .option('--key <key>', 'the dump key of the backup (from `list`)')
    .option('--database <name>', 'the backed-up database (needed with --latest when the bucket holds several)')
    .option('--jobs <n>', 'parallel pg_restore jobs', positiveInt, 1)
    .option('--temp-dir <dir>', 'where to download the dump (needs its size free; default: TMPDIR)')
    .addOption(new Option('--identity-file <path>', 'encrypted backups: the age identity file (AGE-SECRET-KEY-1…, as age-keygen writes it; default: AGE_IDENTITY_FILE)').conflicts('identitySecret'))
    .option('--identity-secret <arn>', 'encrypted backups: a Secrets Manager secret whose text is the age identity file (default: AGE_IDENTITY_SECRET_ARN)');
}

/** The output options every command has (docs/operations.md, "Output"). */
interface OutputOpts {
  readonly output?: OutputFormat;
  readonly json?: boolean;
  readonly quiet?: boolean;
  readonly verbose?: boolean;
  readonly progress: boolean;
}

/**
 * Adds the output options to a command and applies them before it runs. `piped`: the format when
 * stdout is not a terminal and neither `--output` nor `--json` says: `json` for the commands that
 * stream events (a pipe is usually a program or a log), `text` for the reports a person reads
 * (`list`, `doctor`).
 */
export function outputOptions(command: Command, out: Output, piped: OutputFormat): Command {
  return command
    .addOption(new Option('--output <format>', `text, or json (one JSON object per line, the result last); default: text on a terminal, ${piped} otherwise`).choices(['text', 'json']))
    .option('--json', 'the same as --output json')
    .addOption(new Option('--quiet', 'only the result, warnings and errors: no progress, no event lines').conflicts('verbose'))
    .option('--verbose', 'text: every event, with its identifier and fields')
    .option('--no-progress', 'no progress line on a terminal, no moving-progress lines in JSON (only when a transfer ends)')
    .hook('preAction', (cmd) => {
      const o = cmd.opts<OutputOpts>();
      if (o.json && o.output === 'text') throw new UsageError('--json and --output text exclude each other');
      out.configure({ format: o.output ?? (o.json ? 'json' : out.tty ? 'text' : piped), quiet: o.quiet === true, verbose: o.verbose === true, progress: o.progress });
    });
}
