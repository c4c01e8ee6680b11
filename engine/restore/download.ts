/**
 * Download and integrity: the dump goes to a private temporary file, hashed on the way, and is
 * refused (file removed) unless its size and SHA-256 match the manifest, so a tampered or
 * truncated object never reaches a database. The free space of the temporary directory is
 * checked first.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DownloadError, IntegrityError, PgS3BackupError } from '../errors.ts';
import type { Manifest } from '../store/manifest.ts';
import type { RestoreDeps } from './deps.ts';

export interface DownloadedDump {
  readonly path: string;
  readonly bytes: number;
  readonly sha256: string;
  readonly ms: number;
  /** Removes the temporary directory. */
  remove(): Promise<void>;
}

/** Free space wanted beyond the dump itself: filesystems misbehave when full. */
export function requiredFreeBytes(dumpBytes: number): number {
  return dumpBytes + Math.max(64 * 1024 * 1024, Math.ceil(dumpBytes * 0.05));
}

/**
 * Downloads the dump to a private temporary file, hashing on the way, and throws IntegrityError
 * (file removed) when its size or SHA-256 differs from the manifest.
 */
export async function downloadVerified(deps: RestoreDeps, manifest: Manifest): Promise<DownloadedDump> {
  const now = deps.now ?? Date.now;
  const need = requiredFreeBytes(manifest.bytes);
  const fs = await statfs(deps.tempDir).catch((err: unknown) => {
    throw new DownloadError(`temporary directory ${deps.tempDir} is not usable: ${(err as Error).message}`, {
      cause: err,
      hint: 'Pass --temp-dir DIR (or set TMPDIR) to an existing writable directory.',
    });
  });
  const free = fs.bavail * fs.bsize;
  if (free < need) {
    throw new DownloadError(`not enough free space in ${deps.tempDir}: the dump needs ${mib(need)} (with margin), ${mib(free)} free`, {
      hint: 'Pass --temp-dir DIR (or set TMPDIR) to a disk with enough free space.',
    });
  }
  const dir = await mkdtemp(join(deps.tempDir, 'pg-s3-backup-'));
  const path = join(dir, 'backup.dump');
  const remove = () => rm(dir, { recursive: true, force: true });
  const started = now();
  const hash = createHash('sha256');
  let bytes = 0;
  let lastEmit = 0;
  deps.onProgress?.({ event: 'download', bytes: 0, total: manifest.bytes, key: manifest.key });
  const meter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      bytes += chunk.length;
      const t = now();
      if (t - lastEmit >= 200) {
        lastEmit = t;
        deps.onProgress?.({ event: 'download', bytes, total: manifest.bytes, key: manifest.key });
      }
      done(null, chunk);
    },
  });
  try {
    deps.signal?.throwIfAborted();
    const body = await deps.source.openDump(manifest.key);
    // The dump is plaintext production data: 0600 in mkdtemp's 0700 directory. A signal stops
    // the copy; a stalled S3 answer ends on the client's socket timeout (AWS_SOCKET_TIMEOUT_SECONDS).
    await pipeline(body, meter, createWriteStream(path, { mode: 0o600 }), ...(deps.signal ? [{ signal: deps.signal }] : []));
  } catch (err) {
    await remove();
    if (deps.signal?.aborted) throw deps.signal.reason as Error;
    if (err instanceof PgS3BackupError) throw err;
    throw new DownloadError(`downloading s3 object ${manifest.key} failed: ${(err as Error).message}`, {
      cause: err,
      hint: 'Check network access to S3 and s3:GetObject permission on the bucket, then retry.',
    });
  }
  const sha256 = hash.digest('hex');
  const ms = now() - started;
  deps.onProgress?.({ event: 'download', bytes, total: manifest.bytes, key: manifest.key, done: true, ms });
  if (bytes !== manifest.bytes || sha256 !== manifest.sha256) {
    await remove();
    throw new IntegrityError(
      `backup ${manifest.key} does not match its manifest: ` +
        (bytes !== manifest.bytes ? `${bytes} bytes downloaded, manifest says ${manifest.bytes}` : `sha256 ${sha256}, manifest says ${manifest.sha256}`) +
        '; nothing was restored',
    );
  }
  deps.onProgress?.({ event: 'sha256-verified', sha256, bytes });
  return { path, bytes, sha256, ms, remove };
}

function mib(n: number): string {
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/**
 * The manifest only if it describes `key`: the object downloaded is the one selected, never one a
 * manifest points at (the store checks database and prefix too; this is the last guard before a
 * download, whatever BackupSource is in use).
 */
export function checkedManifest(manifest: Manifest, key: string): Manifest {
  if (manifest.key !== key) {
    throw new IntegrityError(`the manifest of ${key} describes another object (${manifest.key}); nothing was read from it`);
  }
  return manifest;
}
