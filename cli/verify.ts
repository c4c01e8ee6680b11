/** `pg-s3-backup verify`: the restore drill, with a report (the result line in JSON mode). */
import type { Command } from 'commander';
import { PgS3BackupError } from '../engine/errors.ts';
import { subjectText, SUBJECT_PREFIX } from '../engine/notify.ts';
import { UsageError } from '../engine/errors.ts';
import { verifyNewest } from '../engine/restore/drill.ts';
import { verifyBackup, verifyOnThrowawayServer, type VerifyReport } from '../engine/restore/verify.ts';
import { resolveServerLayer } from './pg-tool.ts';
import type { CliContext } from './context.ts';
import { backupSelectionOptions, EXIT, ExitCode, type BackupSelectionOpts } from './options.ts';
import { formatBytes, formatDuration } from './output.ts';
import { remoteOptions, runRemote, secretServer, taskCommand, type RemoteOpts } from './remote.ts';

interface VerifyOpts extends BackupSelectionOpts, RemoteOpts {
  readonly scratchUrl?: string;
  readonly scratchSecret?: string;
  readonly local?: boolean;
  readonly serverLayer?: string;
  readonly alert?: boolean;
}

export function registerVerify(program: Command, ctx: CliContext): void {
  remoteOptions(backupSelectionOptions(program.command('verify')))
    .description(
      'the restore drill: SHA-256 against the manifest, pg_restore --list, a full restore into a scratch database ' +
        'created and dropped on --scratch-url\'s server, or on a throwaway server started for it (--local), then a report ' +
        '(tables, rows, sizes, time); exit 1 on any problem',
    )
    .option('--scratch-url <url>', 'postgresql://USER[:PASSWORD]@HOST:PORT/postgres: a server where a scratch database may be created (needs CREATEDB)')
    .option('--scratch-secret <arn|name>', 'instead of --scratch-url: a Secrets Manager secret in RDS format naming that server (its dbname, default postgres, is where to connect)')
    .option('--local', 'restore into a throwaway PostgreSQL 18 started in a temporary folder from the pg-server layer, and removed after (no server to provide)')
    .option('--server-layer <dir>', 'with --local: the pg-server layer root (default: /opt/pg-server, else the one built in this repository)')
    .option('--alert', 'also publish the report to ALERT_TOPIC_ARN (whatever the outcome: a drill that passed is news too)')
    .action(async (opts: VerifyOpts, command: Command) => {
      if ([opts.local, opts.scratchUrl, opts.scratchSecret].filter(Boolean).length !== 1) {
        throw new UsageError('verify needs exactly one of --scratch-url, --scratch-secret and --local', {
          hint: '--local starts a throwaway server on this machine (npm run build:layer:server once); --scratch-url uses a server you provide.',
        });
      }
      if (opts.serverLayer && !opts.local) throw new UsageError('--server-layer goes with --local');
      if (opts.remote) {
        const secrets = [opts.scratchSecret, opts.identitySecret].filter((s): s is string => s !== undefined);
        // The task prints its report as its result line; this side renders it as the operator asked.
        const command_ = taskCommand(command, ['--scratch-secret']);
        return runRemote(ctx, opts, { command: command_, secrets, show: (r: VerifyReport) => ctx.out.result(r, describeReport(r)) });
      }
      // After --remote's branch: --local there is refused for what it is, not for a layer this machine lacks.
      const layerRoot = opts.local ? resolveServerLayer(opts.serverLayer) : undefined;
      const scratch = opts.scratchUrl ? ctx.target(opts.scratchUrl, '--scratch-url') : opts.scratchSecret ? await secretServer(ctx, opts.scratchSecret, undefined, 'postgres') : undefined;
      const deps = ctx.restoreDeps(opts.tempDir, opts);
      const verify = (key: string) => (scratch ? verifyBackup(deps, { key, scratch, jobs: opts.jobs }) : verifyOnThrowawayServer(deps, { key, jobs: opts.jobs, server: { layerRoot, parentDir: opts.tempDir } }));
      // --latest: a backup a prune deleted while it was verified is not a failed one; the newest then is verified.
      const report = opts.latest
        ? await verifyNewest(() => ctx.selectBackup(opts), verify, (key) => deps.source.readManifest(key), (key) => ctx.out.warn(`backup ${key} was deleted (by a prune, or by hand) while it was verified: verifying the newest backup now`))
        : await verify(await ctx.selectBackup(opts));
      ctx.out.result(report, describeReport(report));
      if (opts.alert) {
        const subject = subjectText(`${SUBJECT_PREFIX} restore drill ${report.status === 'ok' ? 'OK' : 'FAILED'}: ${report.database ?? report.key}`);
        const delivery = await ctx.deps().alerts.send({ kind: report.status === 'ok' ? 'news' : 'failed', message: { subject, body: JSON.stringify(report, null, 2) } });
        const sent = delivery.sns === true;
        if (!sent) throw new PgS3BackupError('config', 'the report could not be published', { hint: 'Set ALERT_TOPIC_ARN and check sns:Publish on it (the messages above say why).' });
      }
      if (report.status !== 'ok') throw new ExitCode(EXIT.failure);
    });
}

export function describeReport(r: VerifyReport): string {
  const lines = [
    `verify ${r.status === 'ok' ? 'OK' : 'FAILED'}: ${r.key}`,
    `  database        ${r.database ?? '?'} (backup started ${r.backupStartedAt ?? '?'})`,
    ...(r.backupServerVersion || r.scratchServerVersion ? [`  servers         backup of PostgreSQL ${r.backupServerVersion ?? '?'}, restored on PostgreSQL ${r.scratchServerVersion ?? '?'}`] : []),
    `  size            ${r.bytes === undefined ? '?' : formatBytes(r.bytes)}, sha256 ${r.sha256Verified ? 'verified' : 'NOT verified'}${r.encrypted ? (r.sha256Verified ? ', decrypted (age) and verified' : ', encrypted (age)') : ''}`,
    `  archive         ${r.tocEntries ?? '?'} TOC entries, data for ${r.tocTablesWithData ?? '?'} tables`,
    `  restored        ${r.tables.length} tables, ${r.totalRows} rows, ${r.restoredBytes === undefined ? '?' : formatBytes(r.restoredBytes)} (scratch database ${r.scratchDatabase}, dropped)`,
    `  time            ${Object.entries(r.timingsMs).map(([k, v]) => `${k} ${formatDuration(v ?? 0)}`).join(', ')}`,
  ];
  if (r.tables.length > 0) {
    const width = Math.max(...r.tables.map((t) => `${t.schema}.${t.table}`.length), 5);
    lines.push('', `  ${'table'.padEnd(width)}  ${'rows'.padStart(12)}  ${'size'.padStart(10)}`);
    for (const t of r.tables) lines.push(`  ${`${t.schema}.${t.table}`.padEnd(width)}  ${String(t.rows).padStart(12)}  ${formatBytes(t.bytes).padStart(10)}`);
  }
  if (r.versionNote) lines.push(`  note: ${r.versionNote}`);
  for (const w of r.warnings) lines.push(`  warning: ${w}`);
  for (const p of r.problems) lines.push(`  PROBLEM (${p.stage}): ${p.message}${p.hint ? `\n    what to do: ${p.hint}` : ''}`);
  return lines.join('\n');
}
