/** `pg-s3-backup list`: complete backups, newest first (incomplete ones with --all, marked). */
import type { Command } from 'commander';
import { parseKey } from '../engine/store/backup-key.ts';
import { listBackups, listDatabases, withManifests } from '../engine/store/s3-store.ts';
import { formatBytes } from './output.ts';
import type { CliContext } from './context.ts';
import { printable } from './output.ts';

export interface ListedBackup {
  readonly database: string;
  readonly key: string;
  /** When pg_dump started (from the key; the manifest's for complete backups). */
  readonly startedAt: string;
  readonly bytes: number;
  /** From the manifest; null for an incomplete backup. */
  readonly sha256: string | null;
  readonly complete: boolean;
  readonly durationMs: number | null;
  readonly compression: string | null;
  readonly pgDumpVersion: string | null;
  readonly serverVersion: string | null;
  readonly reason: string | null;
}

interface ListOpts {
  readonly database?: string;
  readonly json?: boolean;
  readonly all?: boolean;
}

export function registerList(program: Command, ctx: CliContext): void {
  program
    .command('list')
    .description('complete backups, newest first: database, time, size, sha256, key')
    .option('--database <name>', 'only this database')
    .option('--all', 'also show incomplete backups (a dump without its manifest), marked INCOMPLETE')
    .option('--json', 'print a JSON array')
    .action(async (opts: ListOpts) => {
      if (opts.json) ctx.out.quiet();
      const rows = await listAll(ctx, opts);
      if (opts.json) ctx.out.print(JSON.stringify(rows, null, 2));
      else ctx.out.print(table(rows));
    });
}

export async function listAll(ctx: CliContext, opts: { readonly database?: string; readonly all?: boolean }): Promise<ListedBackup[]> {
  const store = ctx.store();
  const databases = opts.database !== undefined ? [opts.database] : await listDatabases(store);
  const rows: ListedBackup[] = [];
  for (const database of databases) {
    const dbRows: ListedBackup[] = [];
    const listing = await listBackups(store, database);
    for (const { manifest: m, ...b } of await withManifests(store, listing.complete)) {
      dbRows.push({
        database, key: b.key, startedAt: m.startedAt, bytes: b.bytes, sha256: m.sha256, complete: true,
        durationMs: m.durationMs, compression: m.compression, pgDumpVersion: m.pgDumpVersion, serverVersion: m.serverVersion, reason: m.reason,
      });
    }
    if (opts.all) {
      for (const o of listing.orphans) {
        const startedAt = parseKey(store.prefix, o.key)?.startedAt.toISOString() ?? '';
        dbRows.push({ database, key: o.key, startedAt, bytes: o.size, sha256: null, complete: false, durationMs: null, compression: null, pgDumpVersion: null, serverVersion: null, reason: null });
      }
    }
    rows.push(...dbRows.sort((a, b) => (a.startedAt < b.startedAt ? 1 : a.startedAt > b.startedAt ? -1 : 0)));
  }
  return rows;
}

function table(rows: readonly ListedBackup[]): string {
  if (rows.length === 0) return 'no backups found';
  const cells = rows.map((r) => [
    printable(r.database),
    r.startedAt.replace('T', ' ').replace(/\.\d+Z$/, 'Z'),
    formatBytes(r.bytes),
    r.sha256 ? r.sha256.slice(0, 16) : 'INCOMPLETE',
    printable(r.key),
  ]);
  const head = ['DATABASE', 'STARTED (UTC)', 'SIZE', 'SHA256', 'KEY'];
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: readonly string[]) => c.map((v, i) => (i === 2 ? v.padStart(widths[i]!) : v.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(head), ...cells.map(line)].join('\n');
}
