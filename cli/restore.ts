/** `pg-s3-backup restore`: a verified backup into a database (see lambda/restore.ts for the order of things). */
import { Option, type Command } from 'commander';
import { restoreBackup, type RestoreResult } from '../engine/restore/restore.ts';
import type { CliContext } from './context.ts';
import { backupSelectionOptions, collect, type BackupSelectionOpts } from './options.ts';
import { formatBytes, formatDuration } from './output.ts';

interface RestoreOpts extends BackupSelectionOpts {
  readonly targetUrl: string;
  readonly create?: boolean;
  readonly clean?: boolean;
  readonly owner: boolean;
  readonly table?: string[];
}

export function registerRestore(program: Command, ctx: CliContext): void {
  backupSelectionOptions(program.command('restore'))
    .description(
      'download a backup, check its SHA-256 against the manifest, then pg_restore it into --target-url ' +
        '(an empty database, a new one with --create, or a non-empty one with --clean)',
    )
    .requiredOption('--target-url <url>', 'postgresql://USER[:PASSWORD]@HOST:PORT/DATABASE to restore into (the password may come from PGPASSWORD or ~/.pgpass instead)')
    .addOption(new Option('--create', 'create the target database (it must not exist)').conflicts('clean'))
    .option('--clean', 'drop the objects the backup contains before recreating them (a non-empty target needs it)')
    .option('--no-owner', 'do not restore ownership and grants (when the source roles do not exist on the target)')
    .option('--table <name>', 'restore only this table (repeatable; like pg_restore -t: no indexes or constraints)', collect)
    .action(async (opts: RestoreOpts) => {
      const target = ctx.target(opts.targetUrl, '--target-url');
      const key = await ctx.selectBackup(opts);
      const result = await restoreBackup(ctx.restoreDeps(opts.tempDir), {
        key,
        target,
        jobs: opts.jobs,
        create: opts.create,
        clean: opts.clean,
        noOwner: !opts.owner,
        tables: opts.table,
      });
      ctx.out.result(result, describeRestore(result));
    });
}

function describeRestore(r: RestoreResult): string {
  return [
    `restored ${r.key}`,
    `  from database   ${r.sourceDatabase}`,
    `  into            ${r.target}${r.created ? ' (created)' : ''}`,
    `  size            ${formatBytes(r.bytes)}, sha256 ${r.sha256} (verified)`,
    `  time            download ${formatDuration(r.downloadMs)}, pg_restore ${formatDuration(r.restoreMs)}, total ${formatDuration(r.totalMs)}`,
    ...r.warnings.map((w) => `  warning         ${w}`),
  ].join('\n');
}
