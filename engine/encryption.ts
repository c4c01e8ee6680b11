/**
 * Client-side encryption with age (issue 16 §2): the dump is encrypted while it streams to S3, to
 * X25519 recipients (`age1…`, ENCRYPT_RECIPIENTS), so whoever writes backups holds public keys
 * only and cannot read them. Restore, verify and the drill decrypt with an identity
 * (`AGE-SECRET-KEY-1…`) from a file or a Secrets Manager secret.
 *
 * The format is age v1 (age-encryption.org/v1): a header (the file key wrapped for each recipient,
 * and an HMAC over the header keyed by the file key: a wrong identity fails there, before any
 * payload), then the STREAM payload of 64 KiB ChaCha20-Poly1305 chunks, the last one flagged, so
 * a truncated or altered object never decrypts. The header is the `age-encryption` package's
 * (X25519, stanzas, MAC); the payload runs on node:crypto's OpenSSL ChaCha20-Poly1305
 * (age-payload.ts), ≈ 8 × faster than the package's JavaScript one (issue 24 §3). Both ways
 * stream: memory stays at a few chunks, whatever the size. `age -d -i key.txt` and `rage` read
 * what this writes, and this reads what `age -e` writes (test/engine/encryption-age-cli.test.ts).
 *
 * Identities are secrets: they are never put in an error message, an error's cause, a log line or
 * argv. The package's own parse errors quote the string they failed on (bech32 checksum errors),
 * so they are replaced here, not wrapped.
 */
import { Decrypter, Encrypter } from 'age-encryption';
import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { pipeline, Readable } from 'node:stream';
import { ByteQueue, NONCE_BYTES, openPayload, sealPayload, TAG_BYTES } from './age-payload.ts';
import { DecryptionError, IdentityError } from './errors.ts';
import type { IdentitySource } from './settings/values.ts';

/** What the manifest says about an encrypted dump. */
export const ENCRYPTION_FORMAT = 'age';

/** The recipient check lives below the configuration, which checks ENCRYPT_RECIPIENTS with it. */
export { recipientProblem } from './settings/values.ts';

/**
 * The fingerprint the manifest records for a recipient: the first 16 hex digits (64 bits) of the
 * SHA-256 of its `age1…` string. Enough to tell which of one's keys a backup needs, without
 * making the manifest a list of keys.
 */
export function recipientFingerprint(recipient: string): string {
  return createHash('sha256').update(recipient).digest('hex').slice(0, 16);
}

/**
 * The header of a new age file to `recipients`, and the file key it wraps. The package writes the
 * header (stanzas, MAC) through its public API: a Recipient of our own, added first, is handed
 * the file key the package drew, and wraps it in no stanza; the package's file for an empty
 * plaintext is then the header, its 16-byte nonce and one empty final chunk (a 16-byte tag),
 * whose payload part is discarded (sealPayload draws its own nonce).
 */
export async function ageHeader(recipients: readonly string[]): Promise<{ header: Buffer; fileKey: Uint8Array }> {
  let fileKey: Uint8Array | undefined;
  const encrypter = new Encrypter();
  encrypter.addRecipient({
    wrapFileKey(key: Uint8Array) {
      fileKey = Uint8Array.from(key);
      return [];
    },
  });
  for (const r of recipients) encrypter.addRecipient(r);
  const empty = await encrypter.encrypt(new Uint8Array(0));
  const header = Buffer.from(empty.subarray(0, empty.length - NONCE_BYTES - TAG_BYTES));
  const macLine = header.lastIndexOf('\n---');
  // A package that wrote anything else after the header would make this a broken file: refuse.
  if (fileKey === undefined || macLine < 0 || header.at(-1) !== 0x0a || header.indexOf('\n', macLine + 1) !== header.length - 1) {
    throw new Error('age-encryption wrote an unexpected file for an empty plaintext: cannot build the age header');
  }
  return { header, fileKey };
}

/**
 * `plain`, encrypted to `recipients` as an age file, as a Node stream: the package's header, then
 * the payload sealed on OpenSSL (age-payload.ts), 64 KiB at a time as the consumer reads.
 * `plain`'s error ends it with that error (no final chunk: fail closed).
 */
export async function encryptStream(plain: Readable, recipients: readonly string[]): Promise<Readable> {
  if (recipients.length === 0) throw new RangeError('encryptStream needs at least one recipient');
  const { header, fileKey } = await ageHeader(recipients);
  const sealer = sealPayload(header, fileKey);
  // pipeline, not pipe: an error of `plain` destroys the sealer with that error, and a sealer
  // destroyed by its consumer (a failed upload) stops `plain`.
  pipeline(plain, sealer, () => {});
  return sealer;
}

/** The header of an age file is a few hundred bytes per recipient: past this, it is not one. */
const MAX_HEADER_BYTES = 1024 * 1024;
const VERSION_LINE = Buffer.from('age-encryption.org/v1\n');

/**
 * Reads `source` up to the end of the age header (the `---` MAC line) and returns the header's
 * bytes; what was read past it stays in `queue`. Undefined with a reason when the bytes are not
 * an age v1 header (checked as soon as the first line is in, so a plain dump is not read further).
 */
async function readHeader(source: AsyncIterator<Uint8Array>, queue: ByteQueue): Promise<{ header: Buffer } | { problem: string }> {
  for (;;) {
    const seen = queue.peekAll();
    const prefix = Math.min(seen.length, VERSION_LINE.length);
    if (!seen.subarray(0, prefix).equals(VERSION_LINE.subarray(0, prefix))) return { problem: 'it does not start with age\'s version line age-encryption.org/v1' };
    const mac = seen.indexOf('\n---');
    const end = mac < 0 ? -1 : seen.indexOf('\n', mac + 1);
    if (end >= 0) return { header: queue.take(end + 1) };
    if (seen.length > MAX_HEADER_BYTES) return { problem: `no header MAC line in its first ${MAX_HEADER_BYTES} bytes` };
    const next = await source.next();
    if (next.done) return { problem: `it ends after ${seen.length} bytes, inside the header` };
    queue.push(next.value);
  }
}

/** Where the identity comes from: a file (`--identity-file`, AGE_IDENTITY_FILE) or a secret (`--identity-secret`, AGE_IDENTITY_SECRET_ARN). */
export type { IdentitySource };

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
  // A failure of the source (S3, the network, a signal) is the caller's to report as it is: it
  // passes through readHeader and openPayload untouched; only their own findings are about the ciphertext.
  const source = cipher[Symbol.asyncIterator]();
  const queue = new ByteQueue();
  let fileKey: Uint8Array;
  try {
    const read = await readHeader(source, queue);
    if ('problem' in read) throw new DecryptionError(`backup ${context.key} is not a readable age file (${read.problem}); nothing was restored`);
    try {
      fileKey = await decrypter.decryptHeader(read.header);
    } catch (err) {
      const message = (err as Error).message;
      if (/no identity matched|invalid header HMAC/.test(message)) {
        throw new IdentityError(`the identity given does not open backup ${context.key}: it was encrypted to other recipients${context.fingerprints?.length ? ` (fingerprints ${context.fingerprints.join(', ')})` : ''}; nothing was restored`, {
          hint: 'Give the identity (AGE-SECRET-KEY-1…) of one of its recipients. A recipient\'s fingerprint is the first 16 hex digits of the SHA-256 of its age1… string: printf %s age1… | sha256sum.',
        });
      }
      throw new DecryptionError(`backup ${context.key} is not a readable age file (${message}); nothing was restored`, { cause: err });
    }
  } catch (err) {
    await source.return?.();
    throw err;
  }
  async function* plain(): AsyncGenerator<Buffer> {
    try {
      yield* openPayload(queue, source, fileKey, context.key);
    } finally {
      // Stopped early (an error, the consumer gone): the download is not read further.
      await source.return?.();
    }
  }
  return Readable.from(plain(), { objectMode: false, highWaterMark: 64 * 1024 });
}
