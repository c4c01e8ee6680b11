/**
 * `pg-s3-backup list`: complete backups, newest first by their time (incomplete ones with --all,
 * marked). A backup whose manifest cannot be trusted is not complete: it is left out (with --all,
 * shown as UNREADABLE) and reported on stderr, and the other backups are listed as usual.
 */
import type { Command } from 'commander';
import { ManifestGoneError } from '../engine/errors.ts';
import { parseKey } from '../engine/store/backup-key.ts';
import { backupTime, clockSkewMs, type DrillSummary, type StoredBackup } from '../engine/store/s3-store.ts';
import type { BackupSource } from '../engine/store/store.ts';
import type { CliContext } from './context.ts';
import { formatBytes, printable } from './output.ts';

export interface ListedBackup {
  readonly database: string;
  readonly key: string;
  /** When pg_dump started (the manifest's for complete backups, else the key's): the clock of the host that ran it. */
  readonly startedAt: string;
  /** When S3 stored it (the manifest's LastModified; the dump's for an incomplete one), as stored now (a copy in place changes it). */
  readonly storedAt: string | null;
  /**
   * How far the clock of the host that took it was off S3's (positive: ahead), in seconds, when off
   * by more than five minutes; null otherwise. Such a backup's startedAt and key time are wrong.
   */
  readonly clockSkewSeconds: number | null;
  readonly bytes: number;
  /** From the manifest; null for an incomplete backup. */
  readonly sha256: string | null;
  readonly complete: boolean;
  /** Why an incomplete backup is not complete: its manifest is missing or unreadable (null when complete). */
  readonly problem: string | null;
  readonly durationMs: number | null;
  readonly compression: string | null;
  readonly pgDumpVersion: string | null;
  readonly serverVersion: string | null;
  readonly reason: string | null;
  /** Encrypted with age (ENCRYPT_RECIPIENTS): its recipients' fingerprints; null when not encrypted or incomplete. */
  readonly encryption: { readonly format: 'age'; readonly recipients: readonly string[] } | null;
  /** The restore drill's last report on this backup (`<key>.verify.json`), or null when it was never drilled (or the report is unreadable). */
  readonly lastDrill: DrillSummary | null;
}

interface ListOpts {
  readonly database?: string;
  readonly all?: boolean;
}

export function registerList(program: Command, ctx: CliContext): void {
  program
    .command('list')
    .description('complete backups, newest first (by when they were taken, capped by S3\'s clock): database, time, size, sha256, key, and the last restore drill\'s result; backups with an unreadable manifest are reported and skipped')
    .option('--database <name>', 'only this database')
    .option('--all', 'also show incomplete backups (a dump without its manifest, or with an unreadable one), marked INCOMPLETE / UNREADABLE')
    .action(async (opts: ListOpts) => {
      const rows = await listAll(ctx, opts);
      // JSON: the rows in the result line (`{"event":"result","backups":[…]}`), warnings before it.
      ctx.out.result({ backups: rows }, table(rows));
    });
}

const iso = (d: Date | undefined) => d?.toISOString() ?? null;
const seconds = (ms: number | undefined) => (ms === undefined ? null : Math.round(ms / 1000));

export async function listAll(ctx: CliContext, opts: { readonly database?: string; readonly all?: boolean }): Promise<ListedBackup[]> {
  const store = ctx.store();
  const databases = opts.database !== undefined ? [opts.database] : await store.listDatabases();
  const rows: ListedBackup[] = [];
  const none = { sha256: null, durationMs: null, compression: null, pgDumpVersion: null, serverVersion: null, reason: null, encryption: null, lastDrill: null } as const;
  for (const database of databases) {
    const dbRows: (ListedBackup & { order: number })[] = [];
    const listing = await store.listBackups(database);
    const { readable, unreadable } = await store.readManifests(listing.complete);
    for (const { manifest: m, ...b } of readable) {
      dbRows.push({
        database, key: b.key, startedAt: m.startedAt, storedAt: iso(b.storedAt), clockSkewSeconds: seconds(clockSkewMs(b, m)),
        // A sharded backup's size is its schema archive's and its data archives' (the manifest's figures: checked on restore).
        bytes: b.bytes + (m.parts ?? []).reduce((n, p) => n + p.bytes, 0), sha256: m.sha256,
        complete: true, problem: null, durationMs: m.durationMs, compression: m.compression, pgDumpVersion: m.pgDumpVersion, serverVersion: m.serverVersion,
        reason: m.reason, encryption: m.encryption ?? null, lastDrill: await lastDrill(ctx, store, b), order: backupTime(b).getTime(),
      });
    }
    for (const b of unreadable) {
      ctx.out.warn(`skipped ${b.key}: ${b.problem}`);
      if (!opts.all) continue;
      dbRows.push({
        database, key: b.key, startedAt: b.startedAt.toISOString(), storedAt: iso(b.storedAt), clockSkewSeconds: seconds(clockSkewMs(b)), bytes: b.bytes,
        complete: false, problem: b.problem, ...none, order: backupTime(b).getTime(),
      });
    }
    if (opts.all) {
      for (const o of listing.orphans) {
        const startedAt = parseKey(store.prefix, o.key)?.startedAt ?? new Date(0);
        dbRows.push({
          database, key: o.key, startedAt: startedAt.toISOString(), storedAt: iso(o.lastModified), clockSkewSeconds: seconds(clockSkewMs({ startedAt, storedAt: o.lastModified })),
          bytes: o.size, complete: false, problem: 'no manifest: the run did not finish, or is still finishing', ...none, order: backupTime({ startedAt, storedAt: o.lastModified }).getTime(),
        });
      }
    }
    // Each backup's own time orders the rows (backupTime: the key's, capped by S3's clock; a copy
    // in place cannot change it); the key breaks ties.
    dbRows.sort((a, b) => b.order - a.order || (a.key < b.key ? 1 : a.key > b.key ? -1 : 0));
    rows.push(...dbRows.map(({ order: _o, ...r }) => r));
  }
  return rows;
}

/** The drill report beside a backup, read only when the listing holds one (no GET per backup otherwise). */
async function lastDrill(ctx: CliContext, store: BackupSource, backup: StoredBackup): Promise<DrillSummary | null> {
  if (!backup.drillReport) return null;
  try {
    return await store.readDrillSummary(backup.drillReport.key);
  } catch (err) {
    // Deleted with its backup since the listing (a prune at the same time): nothing to show, nothing wrong.
    if (err instanceof ManifestGoneError) return null;
    ctx.out.warn(`drill result of ${backup.key} not shown: ${(err as Error).message}`);
    return null;
  }
}

/** `ok 2026-12-02 03:04Z`, `failed …`, `skipped …`; empty when never drilled. */
function drillCell(r: ListedBackup): string {
  if (!r.lastDrill) return '';
  return `${r.lastDrill.status} ${r.lastDrill.drilledAt.replace('T', ' ').replace(/:\d{2}(\.\d+)?Z$/, 'Z')}`;
}

function note(r: ListedBackup): string {
  const notes: string[] = [];
  // A restore of it needs an identity of one of these recipients.
  if (r.encryption) notes.push(`ENCRYPTED (age, recipients ${r.encryption.recipients.join(', ')})`);
  if (r.clockSkewSeconds !== null) notes.push(`CLOCK SKEW ${r.clockSkewSeconds > 0 ? '+' : ''}${formatSeconds(r.clockSkewSeconds)} (stored ${r.storedAt ?? '?'})`);
  return notes.join('; ');
}

function formatSeconds(s: number): string {
  const a = Math.abs(s);
  const v = a >= 86_400 ? `${Math.round(a / 86_400)}d` : a >= 3600 ? `${Math.round(a / 3600)}h` : `${Math.round(a / 60)}m`;
  return s < 0 ? `-${v}` : v;
}

function table(rows: readonly ListedBackup[]): string {
  if (rows.length === 0) return 'no backups found';
  const cells = rows.map((r) => [
    printable(r.database),
    r.startedAt.replace('T', ' ').replace(/\.\d+Z$/, 'Z'),
    formatBytes(r.bytes),
    r.sha256 ? r.sha256.slice(0, 16) : r.problem?.startsWith('no manifest') === false ? 'UNREADABLE' : 'INCOMPLETE',
    drillCell(r),
    printable(r.key),
    note(r),
  ]);
  // The DRILL and NOTE columns show only when some row has one: the usual listing keeps its five columns.
  const head = ['DATABASE', 'STARTED (UTC)', 'SIZE', 'SHA256', 'DRILL', 'KEY', 'NOTE'];
  const columns = head.map((_, i) => i).filter((i) => (i !== 4 && i !== 6) || cells.some((c) => c[i] !== ''));
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: readonly string[]) => columns.map((i) => (i === 2 ? c[i]!.padStart(widths[i]!) : c[i]!.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(head), ...cells.map(line)].join('\n');
}
