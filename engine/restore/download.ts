/**
 * Download and integrity: the dump goes to a private temporary file, hashed on the way, and is
 * refused (file removed) unless its size and SHA-256 match the manifest, so a tampered or
 * truncated object never reaches a database. The free space of the temporary directory is
 * checked first.
 *
 * An encrypted backup (manifest `encryption`) is decrypted on the same pass: the object is hashed
 * as it arrives (the manifest's `sha256` is the ciphertext's), the age header is opened with the
 * identity in the first kilobytes (a wrong identity stops the download there), the plaintext goes
 * to the file hashed again, and both digests and sizes must match before the file is handed on.
 * Nothing decrypted is used before the ciphertext's SHA-256 is known to match; age authenticates
 * every 64 KiB chunk as well, so a changed or missing byte stops the download where it is.
 */
import { createWriteStream } from 'node:fs';
import { digestMeter } from './digest-meter.ts';
import { DUMP_DIR_PREFIX, markOwner, sweepStaleDumps } from './leftovers.ts';
import { mkdtemp, rm, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DownloadError, IdentityError, IntegrityError, PgS3BackupError } from '../errors.ts';
import { decryptStream } from '../encryption.ts';
import type { Manifest } from '../store/manifest.ts';
import type { RestoreDeps } from './deps.ts';

export interface DownloadedDump {
  readonly path: string;
  /** As stored (an encrypted backup's: the ciphertext's), matched against the manifest. */
  readonly bytes: number;
  readonly sha256: string;
  /** An encrypted backup: the archive in `path`, matched against the manifest's plaintext digest. */
  readonly decrypted?: { readonly bytes: number; readonly sha256: string } | undefined;
  readonly ms: number;
  /** Removes the temporary directory. */
  remove(): Promise<void>;
}

/** Free space wanted beyond the dump itself: filesystems misbehave when full. */
export function requiredFreeBytes(dumpBytes: number): number {
  return dumpBytes + Math.max(64 * 1024 * 1024, Math.ceil(dumpBytes * 0.05));
}

/**
 * The identities an encrypted backup needs, read from their source; undefined for a backup that
 * is not encrypted. No identity given for an encrypted backup is an IdentityError.
 */
export async function identitiesFor(deps: Pick<RestoreDeps, 'identities'>, manifest: Manifest): Promise<readonly string[] | undefined> {
  if (!manifest.encryption) return undefined;
  if (!deps.identities) {
    throw new IdentityError(`backup ${manifest.key} is encrypted with age (recipient fingerprints ${manifest.encryption.recipients.join(', ')}) and no identity was given; nothing was restored`, {
      hint: 'Pass --identity-file PATH (the file age-keygen wrote) or --identity-secret ARN (a Secrets Manager secret holding it), or set AGE_IDENTITY_FILE / AGE_IDENTITY_SECRET_ARN.',
    });
  }
  return deps.identities();
}

/**
 * Downloads the dump to a private temporary file, hashing on the way, and throws IntegrityError
 * (file removed) when its size or SHA-256 differs from the manifest. An encrypted backup is
 * decrypted on the way (`identities`, else read through `deps.identities`): the file holds the
 * archive, checked against the manifest's plaintext digest too.
 */
export async function downloadVerified(deps: RestoreDeps, manifest: Manifest, identities?: readonly string[]): Promise<DownloadedDump> {
  const now = deps.now ?? Date.now;
  const ids = manifest.encryption ? (identities ?? (await identitiesFor(deps, manifest))) : undefined;
  const need = requiredFreeBytes(manifest.plaintextBytes ?? manifest.bytes);
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
  // A dump an earlier run left behind (killed before it could remove it) goes first; ours is
  // marked as this process's so that a run beside this one never removes it.
  sweepStaleDumps(deps.tempDir);
  const dir = await mkdtemp(join(deps.tempDir, DUMP_DIR_PREFIX));
  markOwner(dir);
  const path = join(dir, 'backup.dump');
  const remove = () => rm(dir, { recursive: true, force: true });
  const started = now();
  let bytes = 0;
  let lastEmit = 0;
  deps.events?.({ event: 'restore.download.progress', bytes: 0, total: manifest.bytes, key: manifest.key });
  const stored = digestMeter((b) => {
    bytes = b;
    const t = now();
    if (t - lastEmit >= 200) {
      lastEmit = t;
      deps.events?.({ event: 'restore.download.progress', bytes, total: manifest.bytes, key: manifest.key });
    }
  });
  const meter = stored.stream;
  const plainMeter = digestMeter();
  let body: Readable | undefined;
  try {
    deps.signal?.throwIfAborted();
    body = await deps.source.openDump(manifest.key);
    // The dump is plaintext production data: 0600 in mkdtemp's 0700 directory. A signal stops
    // the copy; a stalled S3 answer ends on the client's socket timeout (AWS_SOCKET_TIMEOUT_SECONDS).
    const options = deps.signal ? [{ signal: deps.signal }] : [];
    if (ids) {
      // pipe() does not forward errors: a failing S3 body must fail the decrypter's source.
      const source = body;
      source.once('error', (e) => meter.destroy(e));
      const plain = await decryptStream(source.pipe(meter), ids, { key: manifest.key, fingerprints: manifest.encryption?.recipients });
      deps.events?.({ event: 'restore.identity-matched', key: manifest.key });
      await pipeline(plain, plainMeter.stream, createWriteStream(path, { mode: 0o600 }), ...options);
    } else {
      await pipeline(body, meter, createWriteStream(path, { mode: 0o600 }), ...options);
    }
  } catch (err) {
    body?.destroy();
    await remove();
    if (deps.signal?.aborted) throw deps.signal.reason as Error;
    // A truncated object fails age's last chunk: say what it is, as for an unencrypted one.
    if (ids && !(err instanceof IdentityError) && bytes < manifest.bytes && body?.readableEnded) {
      throw new IntegrityError(`backup ${manifest.key} does not match its manifest: ${bytes} bytes downloaded, manifest says ${manifest.bytes} (the age file is truncated: ${(err as Error).message.replace(/; nothing was restored$/, '')}); nothing was restored`, { cause: err });
    }
    if (err instanceof PgS3BackupError) throw err;
    throw new DownloadError(`downloading s3 object ${manifest.key} failed: ${(err as Error).message}`, {
      cause: err,
      hint: 'Check network access to S3 and s3:GetObject permission on the bucket, then retry.',
    });
  }
  const { sha256 } = stored.digest();
  const ms = now() - started;
  deps.events?.({ event: 'restore.download.progress', bytes, total: manifest.bytes, key: manifest.key, done: true, ms });
  if (bytes !== manifest.bytes || sha256 !== manifest.sha256) {
    await remove();
    throw new IntegrityError(
      `backup ${manifest.key} does not match its manifest: ` +
        (bytes !== manifest.bytes ? `${bytes} bytes downloaded, manifest says ${manifest.bytes}` : `sha256 ${sha256}, manifest says ${manifest.sha256}`) +
        '; nothing was restored',
    );
  }
  deps.events?.({ event: 'restore.sha256-verified', sha256, bytes });
  if (ids) {
    const { bytes: plainBytes, sha256: plainSha256 } = plainMeter.digest();
    if (plainBytes !== manifest.plaintextBytes || plainSha256 !== manifest.plaintextSha256) {
      await remove();
      throw new IntegrityError(
        `backup ${manifest.key} decrypted to an archive that does not match its manifest: ` +
          (plainBytes !== manifest.plaintextBytes ? `${plainBytes} bytes, manifest says ${manifest.plaintextBytes}` : `sha256 ${plainSha256}, manifest says ${manifest.plaintextSha256}`) +
          '; nothing was restored',
      );
    }
    deps.events?.({ event: 'restore.decrypted', sha256: plainSha256, bytes: plainBytes });
    return { path, bytes, sha256, decrypted: { bytes: plainBytes, sha256: plainSha256 }, ms, remove };
  }
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
