/**
 * Where the engine gets its store: `createStore` (the whole store: the backup, pruning, check
 * mode, the CLI) and `createSource` (the read side: restore, verify, the drill). Today's one
 * backend is S3 and the S3-compatible stores (engine/store/s3.ts); a new backend is chosen here.
 */
import type { Config } from '../config.ts';
import type { Deps } from '../deps.ts';
import { s3Source, s3Store } from './s3.ts';
import type { BackupSource, BackupStore } from './store.ts';
import { DEFAULT_CLEANUP_TIMEOUT_MS } from './stream-upload.ts';

type StoreConfig = Pick<Config, 'bucket' | 'prefix'> & { readonly aws?: Pick<Config['aws'], 'requestTimeoutMs'> | undefined };

/**
 * The whole store for BACKUP_BUCKET and BACKUP_PREFIX. The clean-up after a failed upload is
 * bounded so that it fits in the Lambda's margin with an alert: at most 20 s, or three request
 * timeouts when those are shorter.
 */
export function createStore(config: StoreConfig, deps: Pick<Deps, 's3'>): BackupStore {
  const cleanupTimeoutMs = Math.min(DEFAULT_CLEANUP_TIMEOUT_MS, 3 * (config.aws?.requestTimeoutMs ?? Infinity));
  return s3Store({ s3: deps.s3, bucket: config.bucket, prefix: config.prefix }, { cleanupTimeoutMs });
}

/** The read side only (its bundle holds no write but the drill's report). */
export function createSource(config: Pick<Config, 'bucket' | 'prefix'>, deps: Pick<Deps, 's3'>): BackupSource {
  return s3Source({ s3: deps.s3, bucket: config.bucket, prefix: config.prefix });
}
