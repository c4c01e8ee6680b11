/**
 * An encrypted sharded backup's data archives (issue 24): each part is its own age file, opened
 * as it streams from S3 (sharded-restore.ts restores it, sharded-table.ts reads its TOC). The
 * stored bytes are hashed before the decrypter (the manifest part's `sha256` is the age file's,
 * as for a one-archive encrypted backup); the payload is opened on node:crypto (age-payload.ts
 * through encryption.ts decryptStream). No plaintext touches a disk.
 */
import { pipeline, type Readable } from 'node:stream';
import { decryptStream } from '../encryption.ts';
import { DecryptionError, IdentityError } from '../errors.ts';
import type { Manifest, ManifestPart } from '../store/manifest.ts';
import { digestMeter } from './digest-meter.ts';

export interface PartDecryption {
  readonly identities: readonly string[];
  readonly fingerprints: readonly string[];
}

/** How an encrypted backup's parts are opened; undefined for one that is not encrypted. */
export function encryptedParts(manifest: Pick<Manifest, 'encryption'>, options: { readonly identities?: readonly string[] | undefined }): PartDecryption | undefined {
  if (!manifest.encryption) return undefined;
  // The caller read them for the schema archive (an encrypted backup without one never gets here).
  if (!options.identities) throw new IdentityError('an encrypted sharded backup\'s data archives were to be restored without an identity; the restore is stopped');
  return { identities: options.identities, fingerprints: manifest.encryption.recipients };
}

/**
 * An encrypted part as pg_restore reads it: `stored` hashed as it arrives (the manifest's
 * `sha256` is the age file's), then decrypted (age-payload.ts, node:crypto) as it is read.
 * Resolves once the age header is open (a wrong identity rejects here, before pg_restore starts);
 * a damaged chunk errors the plaintext stream, which stops the restore.
 */
export async function partPlaintext(stored: Readable, part: ManifestPart, decrypt: PartDecryption): Promise<{ body: Readable; storedDigest: () => { bytes: number; sha256: string } }> {
  const { stream: meter, digest } = digestMeter();
  // pipeline: S3's body failing or destroyed (the restore stopped) fails the decrypter's source too.
  pipeline(stored, meter, () => {});
  const body = await decryptStream(meter, decrypt.identities, { key: part.key, fingerprints: decrypt.fingerprints }).catch((err: unknown) => {
    meter.destroy();
    throw asStopped(err);
  });
  return { body, storedDigest: digest };
}

/**
 * The decrypter's errors say "nothing was restored", true of a one-archive backup checked before
 * pg_restore starts; a part is decrypted while the other parts' rows go in: say what is true.
 */
export function asStopped(err: unknown): unknown {
  if (!(err instanceof DecryptionError) && !(err instanceof IdentityError)) return err;
  const message = err.message.replace(/; nothing was restored$/, '; the restore is stopped');
  const options = { cause: err.cause, ...(err.hint ? { hint: err.hint } : {}) };
  return err instanceof IdentityError ? new IdentityError(message, options) : new DecryptionError(message, options);
}
