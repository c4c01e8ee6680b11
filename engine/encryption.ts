/**
 * Client-side encryption with age (issue 16 §2): the dump is encrypted while it streams to S3, to
 * X25519 recipients (`age1…`, ENCRYPT_RECIPIENTS), so whoever writes backups holds public keys
 * only and cannot read them. Restore, verify and the drill decrypt with an identity
 * (`AGE-SECRET-KEY-1…`) from a file or a Secrets Manager secret.
 *
 * The format is age v1 (age-encryption.org/v1) as the `age-encryption` package writes and reads
 * it: a header (the file key wrapped for each recipient, and an HMAC over the header keyed by the
 * file key: a wrong identity fails there, before any payload), then the STREAM payload of 64 KiB
 * ChaCha20-Poly1305 chunks, the last one flagged, so a truncated or altered object never decrypts.
 * The package streams both ways (web streams): memory stays at a few chunks, whatever the size.
 * `age -d -i key.txt` and `rage` read what this writes.
 *
 * Identities are secrets: they are never put in an error message, an error's cause, a log line or
 * argv. The package's own parse errors quote the string they failed on (bech32 checksum errors),
 * so they are replaced here, not wrapped.
 */
import { Decrypter, Encrypter } from 'age-encryption';
import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { DecryptionError, IdentityError } from './errors.ts';

/** What the manifest says about an encrypted dump. */
export const ENCRYPTION_FORMAT = 'age';

/** An X25519 recipient: `age1` and 58 bech32 characters (32 bytes and the checksum). */
const RECIPIENT_SHAPE = /^age1[02-9ac-hj-np-z]{58}$/;

/** Why `recipient` is not an age X25519 recipient, or undefined when it is one. */
export function recipientProblem(recipient: string): string | undefined {
  if (recipient.startsWith('AGE-SECRET-KEY-')) return 'is an age identity (a secret key), not a recipient: give the public key (age1…) that age-keygen prints, and keep the identity away from the backup function';
  if (!RECIPIENT_SHAPE.test(recipient)) return 'is not an age X25519 recipient (age1 followed by 58 lowercase bech32 characters)';
  try {
    new Encrypter().addRecipient(recipient);
  } catch {
    return 'is not a valid age recipient (its bech32 checksum does not match: a character was changed or lost)';
  }
  return undefined;
}

/**
 * The fingerprint the manifest records for a recipient: the first 16 hex digits (64 bits) of the
 * SHA-256 of its `age1…` string. Enough to tell which of one's keys a backup needs, without
 * making the manifest a list of keys.
 */
export function recipientFingerprint(recipient: string): string {
  return createHash('sha256').update(recipient).digest('hex').slice(0, 16);
}

/** `plain`, encrypted to `recipients` as an age file, as a Node stream; `plain`'s error ends it with that error (no final chunk: fail closed). */
export async function encryptStream(plain: Readable, recipients: readonly string[]): Promise<Readable> {
  if (recipients.length === 0) throw new RangeError('encryptStream needs at least one recipient');
  const encrypter = new Encrypter();
  for (const r of recipients) encrypter.addRecipient(r);
  const web = await encrypter.encrypt(toWeb(plain));
  return Readable.fromWeb(web as import('node:stream/web').ReadableStream<Uint8Array>, { highWaterMark: 64 * 1024 });
}

/**
 * A pull-driven web stream over a Node readable: a chunk is read from `source` only when the
 * encrypter (or decrypter) asks for one, so backpressure reaches pg_dump (or the S3 download).
 */
function toWeb(source: AsyncIterable<Buffer | Uint8Array>, failed: { error?: unknown } = {}): ReadableStream<Uint8Array> {
  const it = source[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let next: IteratorResult<Buffer | Uint8Array>;
      try {
        next = await it.next();
      } catch (err) {
        failed.error = err;
        throw err;
      }
      const { value, done } = next;
      if (done) controller.close();
      else controller.enqueue(value instanceof Uint8Array ? value : new Uint8Array(value));
    },
    async cancel() {
      await it.return?.();
    },
  });
}

/** Where the identity comes from: a file (`--identity-file`, AGE_IDENTITY_FILE) or a secret (`--identity-secret`, AGE_IDENTITY_SECRET_ARN). */
export type IdentitySource = { readonly kind: 'file'; readonly path: string } | { readonly kind: 'secret'; readonly secretId: string };

export function describeIdentitySource(source: IdentitySource): string {
  return source.kind === 'file' ? `identity file ${source.path}` : `identity secret ${source.secretId}`;
}

/**
 * The identities in an identity file's text (age-keygen's format: `#` comments, blank lines, one
 * `AGE-SECRET-KEY-1…` per line). Errors name the line, never its content.
 */
export function parseIdentities(text: string, from: string): string[] {
  const identities: string[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('age1')) {
      throw new IdentityError(`${from}, line ${i + 1}, is a recipient (a public key), not an identity`, {
        hint: 'Restores need the secret key (AGE-SECRET-KEY-1…, the file age-keygen wrote); ENCRYPT_RECIPIENTS takes the public key.',
      });
    }
    if (!line.startsWith('AGE-SECRET-KEY-1')) {
      throw new IdentityError(`${from}, line ${i + 1}, is not an age X25519 identity (AGE-SECRET-KEY-1…)`, { hint: IDENTITY_FORMAT_HINT });
    }
    try {
      new Decrypter().addIdentity(line);
    } catch {
      // The package's message quotes the key: not kept, not even as the cause.
      throw new IdentityError(`${from}, line ${i + 1}, is not a valid age identity (its bech32 checksum does not match)`, { hint: IDENTITY_FORMAT_HINT });
    }
    identities.push(line);
  }
  if (identities.length === 0) throw new IdentityError(`${from} holds no age identity (no AGE-SECRET-KEY-1… line)`, { hint: IDENTITY_FORMAT_HINT });
  return identities;
}

const IDENTITY_FORMAT_HINT = 'Give the file age-keygen wrote (lines starting AGE-SECRET-KEY-1; # comments are fine), or a secret whose text is that file.';

/** Reads the identities from their source; a missing file or secret is an IdentityError that says where it looked. */
export async function loadIdentities(source: IdentitySource, secrets: () => Pick<SecretsManagerClient, 'send'>, onWarning?: (message: string) => void): Promise<string[]> {
  const from = describeIdentitySource(source);
  let text: string | undefined;
  if (source.kind === 'file') {
    try {
      // The mode of the very file read (fstat of the open handle), as ssh checks its keys: this key
      // opens every backup. Accepted (a restore in an emergency must not fail on it), with a warning.
      const file = await open(source.path, 'r');
      try {
        const mode = (await file.stat()).mode & 0o777;
        if ((mode & 0o077) !== 0) onWarning?.(identityModeWarning(source.path, mode));
        text = await file.readFile('utf8');
      } finally {
        await file.close();
      }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new IdentityError(`${from} cannot be read (${code ?? (err as Error).name})`, {
        cause: err,
        hint: code === 'ENOENT' ? 'Check the path of --identity-file (or AGE_IDENTITY_FILE).' : 'Check the file\'s permissions (it should be readable by you only: chmod 600).',
      });
    }
  } else {
    try {
      text = (await secrets().send(new GetSecretValueCommand({ SecretId: source.secretId }))).SecretString;
    } catch (err) {
      const name = (err as { name?: string }).name ?? 'Error';
      throw new IdentityError(`${from} could not be read: ${name}`, {
        cause: err,
        hint: name === 'AccessDeniedException'
          ? 'Grant secretsmanager:GetSecretValue on the identity secret (and kms:Decrypt on its key) to whoever restores.'
          : 'Check the ARN given with --identity-secret (or AGE_IDENTITY_SECRET_ARN) and the region.',
      });
    }
    if (text === undefined) throw new IdentityError(`${from} has no SecretString`, { hint: 'Store the identity file\'s text as the secret\'s string (not binary).' });
  }
  return parseIdentities(text, from);
}

/** What is said of an identity file that others (or its group) may read or write: its mode, and the fix. */
export function identityModeWarning(path: string, mode: number): string {
  const octal = `0${(mode & 0o777).toString(8).padStart(3, '0')}`;
  const who = (mode & 0o007) !== 0 ? 'every user of this machine' : 'its group';
  return `the age identity file ${path} has mode ${octal}: ${who} may read the key that decrypts every backup. It is used anyway; make it yours alone: chmod 600 ${path}`;
}

/**
 * Decrypts an age stream with `identities`. Resolves once the header is read and its MAC checked,
 * i.e. once the identity is known to match, with the plaintext stream; rejects with an
 * IdentityError when no identity opens the file key (or the header MAC fails), a DecryptionError
 * when the object is not an age file. Payload damage (a changed byte, a truncated object) errors
 * the returned stream with a DecryptionError.
 */
export async function decryptStream(cipher: AsyncIterable<Buffer | Uint8Array>, identities: readonly string[], context: { readonly key: string; readonly fingerprints?: readonly string[] | undefined }): Promise<Readable> {
  const decrypter = new Decrypter();
  for (const id of identities) decrypter.addIdentity(id);
  // A failure of the source (S3, the network, a signal) is the caller's to report as it is; only
  // the decrypter's own failures are about the ciphertext.
  const source: { error?: unknown } = {};
  let plain: ReadableStream<Uint8Array>;
  try {
    plain = await decrypter.decrypt(toWeb(cipher, source));
  } catch (err) {
    if ('error' in source) throw source.error;
    const message = (err as Error).message;
    if (/no identity matched|invalid header HMAC/.test(message)) {
      throw new IdentityError(`the identity given does not open backup ${context.key}: it was encrypted to other recipients${context.fingerprints?.length ? ` (fingerprints ${context.fingerprints.join(', ')})` : ''}; nothing was restored`, {
        hint: 'Give the identity (AGE-SECRET-KEY-1…) of one of its recipients. A recipient\'s fingerprint is the first 16 hex digits of the SHA-256 of its age1… string: printf %s age1… | sha256sum.',
      });
    }
    throw new DecryptionError(`backup ${context.key} is not a readable age file (${message}); nothing was restored`, { cause: err });
  }
  const reader = plain.getReader();
  return new Readable({
    highWaterMark: 64 * 1024,
    read() {
      reader.read().then(
        ({ value, done }) => {
          this.push(done ? null : value);
        },
        (err: unknown) => {
          this.destroy('error' in source ? (source.error as Error) : new DecryptionError(`backup ${context.key} could not be decrypted: ${(err as Error).message} (the object is damaged or truncated); nothing was restored`, { cause: err }));
        },
      );
    },
    destroy(err, cb) {
      reader.cancel(err ?? undefined).then(() => cb(err), () => cb(err));
    },
  });
}
