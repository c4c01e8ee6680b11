/** `pg-s3-backup restore`: a verified backup into a database (see lambda/restore.ts for the order of things). */
import { Option, type Command } from 'commander';
import { UsageError } from '../engine/errors.ts';
import { restoreBackup, type RestoreResult } from '../engine/restore/restore.ts';
import type { CliContext } from './context.ts';
import { backupSelectionOptions, collect, type BackupSelectionOpts } from './options.ts';
import { formatBytes, formatDuration } from './output.ts';
import { remoteOptions, runRemote, secretServer, taskCommand, type RemoteOpts } from './remote.ts';

interface RestoreOpts extends BackupSelectionOpts, RemoteOpts {
  readonly targetUrl?: string;
  readonly targetSecret?: string;
  readonly targetDatabase?: string;
  readonly create?: boolean;
  readonly clean?: boolean;
  readonly owner: boolean;
  readonly acl: boolean;
  readonly table?: string[];
  readonly schemaOnly?: boolean;
  readonly dataOnly?: boolean;
  readonly keepGoing?: boolean;
}

export function registerRestore(program: Command, ctx: CliContext): void {
  remoteOptions(backupSelectionOptions(program.command('restore')))
    .description(
      'download a backup, check its SHA-256 against the manifest, then pg_restore it into --target-url ' +
        '(an empty database, a new one with --create, or a non-empty one with --clean)',
    )
    .addOption(new Option('--target-url <url>', 'postgresql://USER[:PASSWORD]@HOST:PORT/DATABASE to restore into (the password may come from PGPASSWORD or ~/.pgpass instead)').conflicts('targetSecret'))
    .option('--target-secret <arn|name>', 'instead of --target-url: a Secrets Manager secret in RDS format (host, port, username, password, dbname[, sslmode]) naming the server to restore into')
    .option('--target-database <name>', 'with --target-secret: the database to restore into (default: the secret\'s dbname)')
    .addOption(new Option('--create', 'create the target database (it must not exist) as the backup defines it: encoding, locale, comment, grants, owner, settings').conflicts('clean'))
    .option('--clean', 'drop the objects the backup contains before recreating them (a non-empty target needs it)')
    .option('--no-owner', 'do not restore owners (nor ALTER ROLE … IN DATABASE settings) when the source roles do not exist on the target')
    .option('--no-acl', 'do not restore grants (GRANT/REVOKE)')
    .option('--table <name>', 'restore only this table ([schema.]name as written, or "schema"."name" as in SQL; repeatable), with what it needs (schema, types, sequences) and what belongs to it (identity, indexes, constraints, grants)', collect)
    .addOption(new Option('--schema-only', 'restore the definitions, no data').conflicts('dataOnly'))
    .addOption(new Option('--data-only', 'restore the data only, into tables that exist').conflicts(['create', 'clean']))
    .option('--keep-going', 'on errors, keep the database as restored, list every error and exit 1 (default: stop, and drop a database --create made)')
    .action(async (opts: RestoreOpts, command: Command) => {
      if (opts.targetUrl === undefined && opts.targetSecret === undefined) throw new UsageError('restore needs --target-url or --target-secret');
      if (opts.targetDatabase !== undefined && opts.targetSecret === undefined) throw new UsageError('--target-database goes with --target-secret');
      if (opts.remote) {
        const secrets = [opts.targetSecret, opts.identitySecret].filter((s): s is string => s !== undefined);
        return runRemote(ctx, opts, { command: taskCommand(command, ['--target-secret']), secrets, show: (r: RestoreResult) => ctx.out.result(r, describeRestore(r)) });
      }
      const target = opts.targetSecret !== undefined ? await secretServer(ctx, opts.targetSecret, opts.targetDatabase) : ctx.target(opts.targetUrl!, '--target-url');
      const key = await ctx.selectBackup(opts);
      const result = await restoreBackup(ctx.restoreDeps(opts.tempDir, opts), {
        key,
        target,
        jobs: opts.jobs,
        create: opts.create,
        clean: opts.clean,
        noOwner: !opts.owner,
        noAcl: !opts.acl,
        tables: opts.table,
        schemaOnly: opts.schemaOnly,
        dataOnly: opts.dataOnly,
        keepGoing: opts.keepGoing,
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
    ...(r.decrypted ? [`  decrypted       ${formatBytes(r.decrypted.bytes)}, sha256 ${r.decrypted.sha256} (verified; age)`] : []),
    `  time            download ${formatDuration(r.downloadMs)}, pg_restore ${formatDuration(r.restoreMs)}, total ${formatDuration(r.totalMs)}`,
    ...(r.tables ? [`  tables          ${r.tables.join(', ')} (with what they need)`] : []),
    ...r.warnings.map((w) => `  warning         ${w}`),
    ...r.notRestored.map((n) => `  not restored    ${n}`),
  ].join('\n');
}
