/**
 * `pg-s3-backup doctor`: what would fail tonight, before it does. By default it checks the
 * deployed stack from the operator's machine (cli/doctor-aws.ts), the function's own check mode
 * included; `--local` runs the engine's checks here with the CLI's configuration (host mode).
 * Human output with ✓/!/✗ and what to do, or JSON (the checks in the result line); exit 0 when nothing failed (warnings
 * allowed), 1 when a check failed, 2 on a usage error.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { UsageError } from '../engine/errors.ts';
import { fail, report, type Check, type CheckReport } from '../engine/check/check.ts';
import { runChecks } from '../engine/check/run-checks.ts';
import { createDeps } from '../engine/deps.ts';
import { ignoreEvents } from '../engine/events.ts';
import { deployedChecks, doctorClients } from './doctor-aws.ts';
import type { CliContext } from './context.ts';
import { collect, DEFAULT_STACK_NAME, EXIT, ExitCode } from './options.ts';
import { LOCAL_PG_TOOLS } from './pg-tool.ts';

interface DoctorOpts {
  readonly stack: string;
  readonly function?: string;
  readonly local?: boolean;
  readonly database?: string[];
  readonly alarmTest: boolean;
  readonly alarmTimeout: number;
}


function seconds(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 900) throw new InvalidArgumentError('expected a whole number of seconds from 1 to 900');
  return Number(value);
}

export function registerDoctor(program: Command, ctx: CliContext): void {
  program
    .command('doctor')
    .description('check what tonight\'s backup needs, without taking one: the deployed stack (default) or, with --local, this machine\'s configuration')
    .addOption(new Option('--stack <name>', 'CloudFormation stack name (the context key stackName)').env('PG_S3_BACKUP_STACK').default(DEFAULT_STACK_NAME))
    .addOption(new Option('--function <name>', 'the function to run in check mode (default: the stack output FunctionName)').conflicts('local'))
    .addOption(new Option('--local', 'run the engine\'s checks here with the CLI\'s configuration (DB_SECRET_ID or DATABASE_URL, BACKUP_BUCKET, …): host mode').conflicts(['function']))
    .option('--database <name>', 'with --local: check this database instead of the configured ones (repeatable)', collect)
    .option('--no-alarm-test', 'do not set each alarm\'s state to test its delivery (the test sends one notification per alarm)')
    .option('--alarm-timeout <seconds>', 'how long to wait for each alarm\'s notification to show in its history', seconds, 60)
    .action(async (opts: DoctorOpts, command: Command) => {
      if (opts.database && !opts.local) throw new UsageError('--database goes with --local (the deployed function checks its configured databases)', { hint: 'Run pg-s3-backup doctor --help.' });
      if (opts.local && command.getOptionValueSource('stack') === 'cli') throw new UsageError('--stack and --local exclude each other', { hint: 'Run pg-s3-backup doctor --help.' });
      const result = opts.local ? await localChecks(ctx, opts) : report(await deployedChecks(doctorClients(ctx.aws), {
        stackName: opts.stack,
        functionName: opts.function,
        alarmTest: opts.alarmTest,
        alarmTimeoutMs: opts.alarmTimeout * 1000,
        now: ctx.now,
      }));
      const mode = opts.local ? 'local' : 'deployed';
      ctx.out.result(
        { ok: result.ok, mode, ...(opts.local ? {} : { stack: opts.stack }), checks: result.checks },
        formatReport(result, opts.local ? 'pg-s3-backup doctor --local: this machine\'s configuration' : `pg-s3-backup doctor: stack ${opts.stack}`),
      );
      if (!result.ok) throw new ExitCode(EXIT.failure);
    });
}

async function localChecks(ctx: CliContext, opts: DoctorOpts): Promise<CheckReport> {
  let config;
  try {
    config = ctx.cfg({ needsCredentials: true });
  } catch (err) {
    return report([fail('configuration', (err as Error).message, (err as { hint?: string }).hint ?? 'Set the variables in docs/configuration.md.')]);
  }
  // No engine log lines or metrics: the report is the output. The CLI's tool search (PG_DUMP_BIN,
  // /opt, the repository's layer, PATH), as `run` uses it: doctor must find what run will run.
  const deps = createDeps(config, { events: ignoreEvents, now: () => new Date(ctx.now()), pgTools: LOCAL_PG_TOOLS });
  return runChecks({ databases: opts.database }, config, deps, { source: 'pg-s3-backup doctor --local' });
}

const MARK = { ok: '✓', warn: '!', fail: '✗' } as const;

/** Pure: the report as text, one line per check, what to do under each warning and failure, a tally. */
export function formatReport(result: CheckReport, title: string): string {
  const lines = [title, ''];
  for (const c of result.checks) {
    lines.push(`${MARK[c.status]} ${c.name}: ${c.detail}`);
    if (c.status !== 'ok' && c.fix) lines.push(`    what to do: ${c.fix}`);
  }
  const count = (s: Check['status']) => result.checks.filter((c) => c.status === s).length;
  lines.push('', `${result.checks.length} checks: ${count('ok')} passed, ${count('warn')} warning(s), ${count('fail')} failed${result.ok ? '' : ' — tonight\'s backup would not work as it should'}`);
  return lines.join('\n');
}
