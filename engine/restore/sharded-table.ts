/**
 * `restore --table` on a sharded backup (manifest format 4): the named tables' definitions come
 * from the schema archive (selected as for a one-archive backup, toc.ts selectTables), their rows
 * from the data archives that hold them. Which archive holds a table is read from each data
 * archive's own table of contents (`pg_restore --list` of its first bytes, streamed from S3 and
 * decrypted when the backup is encrypted: the TOC is at the head of a custom-format archive, so
 * the rest is not downloaded). Each archive that holds a selected table is then restored whole
 * through sharded-restore.ts with a `--use-list` of its selected entries, hashed end to end as
 * usual; the others are not read again.
 *
 * A data archive's TOC is read before its checksum is known: it only decides which archives to
 * stream. Each TOC must list as many tables as the manifest says its archive holds (a changed TOC
 * cannot hide a table), and every archive streamed is checked as a whole restore checks it.
 */
import { spawn as nodeSpawn } from 'node:child_process';
import { IntegrityError, RestoreError } from '../errors.ts';
import { describeToolFailure, startTool, type SpawnFn } from '../pg/process.ts';
import type { Manifest, ManifestPart } from '../store/manifest.ts';
import type { RestoreDeps } from './deps.ts';
import { fileOnlyEnv, hintForPgRestore, writeUseList } from './pg-restore.ts';
import { encryptedParts, partPlaintext, type PartDecryption } from './part-decrypt.ts';
import { parseToc, type TableSelection, type TocEntry } from './toc.ts';

export interface PartDataSelection {
  /** The data archives that hold a selected table's rows. */
  readonly parts: readonly ManifestPart[];
  /** Each one's `--use-list` file, by its key. */
  readonly useLists: ReadonlyMap<string, string>;
  /** Each one's selected entries (what its `--use-list` file lists), by its key: read once, here. */
  readonly selected: ReadonlyMap<string, readonly TocEntry[]>;
  /** Tables whose rows they restore (for progress). */
  readonly tables: number;
}

/**
 * The data archives of `manifest` that hold rows of the tables `selection` chose in the schema
 * archive's `entries`, with a `--use-list` file for each (written beside `dumpFile`, the schema
 * archive's private folder). Matching is by OID, schema, name and owner (tableKey): TOC ids
 * differ from one archive to another.
 */
export async function selectPartData(
  deps: RestoreDeps,
  manifest: Pick<Manifest, 'parts' | 'encryption'>,
  identities: readonly string[] | undefined,
  entries: readonly TocEntry[],
  selection: Pick<TableSelection, 'ids'>,
  dumpFile: string,
): Promise<PartDataSelection> {
  const parts = manifest.parts ?? [];
  const decrypt = encryptedParts(manifest, { identities });
  const wanted = new Set(entries.filter((e) => e.desc === 'TABLE' && selection.ids.has(e.id)).map(tableKey));
  const tocs = await Promise.all(parts.map((p) => readPartToc(deps, p, decrypt)));
  const chosen: ManifestPart[] = [];
  const useLists = new Map<string, string>();
  const selected = new Map<string, readonly TocEntry[]>();
  let tables = 0;
  for (const [i, part] of parts.entries()) {
    const toc = tocs[i]!;
    const data = toc.filter((e) => e.desc === 'TABLE DATA');
    if (data.length !== part.tables) {
      throw new IntegrityError(`data archive ${part.key} lists ${data.length} tables in its table of contents, the manifest says it holds ${part.tables}; nothing was restored`);
    }
    const ids = new Set(data.filter((e) => wanted.has(tableKey(e))).map((e) => e.id));
    if (ids.size === 0) continue;
    chosen.push(part);
    useLists.set(part.key, await writeUseList(dumpFile, `data-${i + 1}.list`, toc, ids));
    selected.set(part.key, toc.filter((e) => ids.has(e.id)));
    tables += ids.size;
  }
  return { parts: chosen, useLists, selected, tables };
}

/**
 * A table's identity across archives: its OID (a TABLE DATA entry carries its table's, and every
 * archive was dumped in one snapshot), with its schema, name and owner as printed, compared whole.
 * Not the parsed schema and name: a data archive has no SCHEMA entries to tell where a schema's
 * name ends. Nor the text alone: "Sales" "Data Line Items" prints as "Sales Data" "Line Items" does.
 */
function tableKey(e: TocEntry): string {
  return `${e.oid}\u0000${e.subject}`;
}

/**
 * A data archive's table of contents: the object streamed (decrypted) into `pg_restore --list`,
 * which reads the archive's head and exits; the download is then dropped.
 */
export async function readPartToc(deps: RestoreDeps, part: ManifestPart, decrypt: PartDecryption | undefined): Promise<TocEntry[]> {
  deps.signal?.throwIfAborted();
  const stored = await deps.source.openDump(part.key);
  try {
    const { body } = decrypt ? await partPlaintext(stored, part, decrypt) : { body: stored };
    const tool = startTool(deps.spawn ?? (nodeSpawn as SpawnFn), deps.pgRestore, ['--list'], { env: fileOnlyEnv(deps), tool: 'pg_restore', stdin: 'pipe' });
    const out: Buffer[] = [];
    tool.child.stdout?.on('data', (c: Buffer) => out.push(c));
    // pg_restore stops reading once it has the TOC: the rest of the stream goes nowhere (EPIPE is expected).
    tool.child.stdin!.on('error', () => {});
    // S3 (or, encrypted, the age header or a chunk) failing before pg_restore had its TOC: that is the reason, not pg_restore's end.
    let bodyError: unknown;
    body.on('error', (err) => {
      bodyError ??= err;
      tool.child.kill('SIGTERM');
    });
    body.pipe(tool.child.stdin!);
    const onAbort = () => tool.child.kill('SIGTERM');
    deps.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const outcome = await tool.finished;
      deps.signal?.throwIfAborted();
      if (outcome.exitCode !== 0 || outcome.signal) {
        if (bodyError !== undefined) throw bodyError;
        throw new RestoreError(`the table of contents of data archive ${part.key} cannot be read: ${describeToolFailure('pg_restore --list', outcome)}`, {
          hint: hintForPgRestore(outcome.stderrTail.join('\n')),
        });
      }
      return parseToc(Buffer.concat(out).toString('utf8'));
    } finally {
      deps.signal?.removeEventListener('abort', onAbort);
      body.unpipe();
      body.destroy();
    }
  } finally {
    stored.destroy();
  }
}
