/** What the restore side of the engine needs from outside: where backups come from, how to run pg_restore, where to report progress (one event sink). */
import type { BackupSource as StoreSource } from '../store/store.ts';
import type { SpawnFn } from '../pg/process.ts';
import type { SpawnCommand } from '../pg/tools.ts';
import type { EventSink } from '../events.ts';

/** Where a restore's backup comes from: the read side of the store (engine/store/store.ts). */
export type BackupSource = Pick<StoreSource, 'readManifest' | 'openDump'>;

export interface RestoreDeps {
  readonly source: BackupSource;
  /** How to run pg_restore (layer loader, PG_DUMP_BIN sibling, or PATH). */
  readonly pgRestore: SpawnCommand;
  readonly spawn?: SpawnFn;
  /** Directory for the downloaded dump (default: the OS temporary directory). */
  readonly tempDir: string;
  readonly now?: () => number;
  /** Progress and findings (engine/events.ts `RestoreEvent`): the CLI draws bars and JSON lines from them. */
  readonly events?: EventSink | undefined;
  /**
   * The environment pg_restore's is built from (default: process.env): only PATH, HOME and
   * PGPASSFILE are taken from it (engine/pg/env.ts), never AWS credentials or DATABASE_URL.
   */
  readonly env?: NodeJS.ProcessEnv;
  /**
   * Aborted on SIGTERM/SIGINT: the download stops, pg_restore is stopped, and the usual clean-up
   * runs (temporary file removed, a database the command created dropped); the reason is thrown.
   */
  readonly signal?: AbortSignal | undefined;
  /**
   * The age identities that open encrypted backups (`--identity-file`, `--identity-secret`,
   * AGE_IDENTITY_FILE, AGE_IDENTITY_SECRET_ARN), read only when the backup is encrypted; absent:
   * none was given, and an encrypted backup is refused before the target is touched.
   */
  readonly identities?: (() => Promise<readonly string[]>) | undefined;
}
