/**
 * Client-side encryption (issue 16 §2), the pure and in-memory parts: recipients checked in the
 * one configuration schema, identity files parsed without ever quoting a key, the age stream both
 * ways (interoperable with the package's whole-buffer API, i.e. the age format), a wrong
 * identity, damaged and truncated ciphertext, errors that end the stream without age's final
 * chunk, and memory that does not grow with the input (backpressure).
 */
import { Decrypter, Encrypter, generateX25519Identity, identityToRecipient } from 'age-encryption';
import { randomBytes, createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../engine/config.ts';
import { decryptStream, encryptStream, loadIdentities, parseIdentities, recipientFingerprint, recipientProblem } from '../../engine/encryption.ts';
import { ConfigError, DecryptionError, IdentityError } from '../../engine/errors.ts';
import { parseManifest } from '../../engine/store/manifest.ts';
import { buildGlobalsKey, isGlobalsKey } from '../../engine/store/backup-key.ts';

let identity: string;
let recipient: string;
let other: string;
let otherRecipient: string;

beforeAll(async () => {
  identity = await generateX25519Identity();
  recipient = await identityToRecipient(identity);
  other = await generateX25519Identity();
  otherRecipient = await identityToRecipient(other);
});

async function collect(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of stream) out.push(Buffer.from(c));
  return Buffer.concat(out);
}

/** A recipient with one bech32 character changed: right shape, wrong checksum. */
function corrupt(r: string): string {
  const i = 20;
  return r.slice(0, i) + (r[i] === 'q' ? 'p' : 'q') + r.slice(i + 1);
}

describe('recipients (ENCRYPT_RECIPIENTS)', () => {
  const base = { BACKUP_BUCKET: 'bucket-1', DATABASE_URL: 'postgresql://u:p@h/db' };

  it('accepts X25519 recipients, de-duplicated, and fingerprints them as 16 hex digits of their SHA-256', () => {
    expect(recipientProblem(recipient)).toBeUndefined();
    const config = loadConfig({ ...base, ENCRYPT_RECIPIENTS: ` ${recipient} , ${otherRecipient},${recipient}` });
    expect(config.encryptRecipients).toEqual([recipient, otherRecipient]);
    expect(loadConfig(base).encryptRecipients).toBeUndefined();
    expect(recipientFingerprint(recipient)).toBe(createHash('sha256').update(recipient).digest('hex').slice(0, 16));
  });

  it('checks each entry (shape and checksum) and names the variable and the entry', () => {
    const bad = corrupt(otherRecipient);
    expect(recipientProblem(bad)).toMatch(/checksum/);
    let err: unknown;
    try {
      loadConfig({ ...base, ENCRYPT_RECIPIENTS: `${recipient},${bad},ssh-ed25519 AAAA` });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const message = (err as Error).message;
    expect(message).toMatch(/ENCRYPT_RECIPIENTS must be .*entry 2 .*checksum/);
    expect(message).toMatch(/ENCRYPT_RECIPIENTS must be .*entry 3 is not an age X25519 recipient/);
    expect(() => loadConfig({ ...base, ENCRYPT_RECIPIENTS: `${recipient},` })).toThrow(/entry 2 is empty/);
  });

  it('refuses an identity pasted as a recipient without ever echoing it', () => {
    let message = '';
    try {
      loadConfig({ ...base, ENCRYPT_RECIPIENTS: identity });
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/ENCRYPT_RECIPIENTS must be .*entry 1 is an age identity \(a secret key\), not a recipient/);
    expect(message).not.toContain(identity);
    expect(message).not.toContain(identity.slice(16, 40));
  });

  it('takes the identity source from AGE_IDENTITY_FILE or AGE_IDENTITY_SECRET_ARN, not both', () => {
    const arn = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:age-identity-AbCdEf';
    expect(loadConfig({ ...base, AGE_IDENTITY_FILE: '/keys/age.txt' }).identity).toEqual({ kind: 'file', path: '/keys/age.txt' });
    expect(loadConfig({ ...base, AGE_IDENTITY_SECRET_ARN: arn }).identity).toEqual({ kind: 'secret', secretId: arn });
    expect(() => loadConfig({ ...base, AGE_IDENTITY_FILE: '/k', AGE_IDENTITY_SECRET_ARN: arn })).toThrow(/AGE_IDENTITY_FILE and AGE_IDENTITY_SECRET_ARN are both set/);
    expect(() => loadConfig({ ...base, AGE_IDENTITY_SECRET_ARN: 'not-an-arn' })).toThrow(/AGE_IDENTITY_SECRET_ARN must be a Secrets Manager secret ARN/);
  });
});

describe('identity files', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'pgs3b-age-unit-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("reads age-keygen's format: comments, blank lines, several identities", async () => {
    const text = `# created: 2026-12-02T03:00:00Z\n# public key: ${recipient}\n${identity}\n\n${other}\r\n`;
    expect(parseIdentities(text, 'test')).toEqual([identity, other]);
    const path = join(dir, 'key.txt');
    writeFileSync(path, text, { mode: 0o600 });
    expect(await loadIdentities({ kind: 'file', path }, () => ({ send: () => Promise.reject(new Error('unused')) }))).toEqual([identity, other]);
  });

  it('names the line, never the content, of what is not an identity; a missing file or secret says where it looked', async () => {
    const broken = corrupt(identity.toLowerCase()).toUpperCase();
    const cases: [string, RegExp][] = [
      [`# key\n${broken}\n`, /line 2, is not a valid age identity/],
      [`${recipient}\n`, /line 1, is a recipient \(a public key\), not an identity/],
      ['# only a comment\n', /holds no age identity/],
      [`x${identity}\n`, /line 1, is not an age X25519 identity/],
    ];
    for (const [text, expected] of cases) {
      let err: unknown;
      try {
        parseIdentities(text, 'identity file /k');
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(IdentityError);
      expect((err as Error).message).toMatch(expected);
      // Neither the message nor a cause carries the key (the package's own errors quote it).
      expect(JSON.stringify({ m: (err as Error).message, c: String((err as Error).cause), s: (err as Error).stack })).not.toMatch(/AGE-SECRET-KEY-1[0-9A-Z]{10}/);
    }
    await expect(loadIdentities({ kind: 'file', path: join(dir, 'nope.txt') }, () => ({ send: () => Promise.reject(new Error('unused')) }))).rejects.toThrow(/identity file .*nope\.txt cannot be read \(ENOENT\)/);
    const denied = Object.assign(new Error('denied'), { name: 'AccessDeniedException' });
    await expect(loadIdentities({ kind: 'secret', secretId: 'arn:x' }, () => ({ send: () => Promise.reject(denied) }))).rejects.toMatchObject({ name: 'IdentityError', hint: expect.stringMatching(/GetSecretValue/) });
    await expect(loadIdentities({ kind: 'secret', secretId: 'arn:x' }, () => ({ send: () => Promise.resolve({ SecretString: `${identity}\n` }) }))).resolves.toEqual([identity]);
  });
});

describe('the age stream', () => {
  const plaintext = randomBytes(3 * 1024 * 1024 + 12345);
  const chunks = (b: Buffer, size = 100_000) => Array.from({ length: Math.ceil(b.length / size) }, (_, i) => b.subarray(i * size, (i + 1) * size));

  it('encrypts a stream to several recipients as an age file that age (the package\'s whole-buffer API) opens with either identity, and decrypts it back', async () => {
    const cipher = await collect(await encryptStream(Readable.from(chunks(plaintext)), [recipient, otherRecipient]));
    expect(cipher.subarray(0, 22).toString()).toBe('age-encryption.org/v1\n');
    // age's overhead: the header, a 16-byte nonce, 16 bytes per 64 KiB chunk.
    expect(cipher.length - plaintext.length).toBeLessThan(2000);
    for (const id of [identity, other]) {
      const d = new Decrypter();
      d.addIdentity(id);
      expect(Buffer.from(await d.decrypt(cipher)).equals(plaintext)).toBe(true);
    }
    const back = await collect(await decryptStream(Readable.from(chunks(cipher, 77_777)), [other], { key: 'k' }));
    expect(back.equals(plaintext)).toBe(true);
    // And what age wrote, this reads.
    const e = new Encrypter();
    e.addRecipient(recipient);
    const theirs = Buffer.from(await e.encrypt(plaintext));
    expect((await collect(await decryptStream(Readable.from([theirs]), [identity], { key: 'k' }))).equals(plaintext)).toBe(true);
  });

  it('refuses a wrong identity at the header, before any plaintext, naming the fingerprints and not the identity', async () => {
    const cipher = await collect(await encryptStream(Readable.from(chunks(plaintext)), [recipient]));
    let pulled = 0;
    async function* source() {
      for (const c of chunks(cipher, 4096)) {
        pulled += c.length;
        yield c;
      }
    }
    const err = await decryptStream(source(), [other], { key: 'db/x.dump', fingerprints: [recipientFingerprint(recipient)] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IdentityError);
    expect((err as Error).message).toMatch(new RegExp(`does not open backup db/x.dump: .*fingerprints ${recipientFingerprint(recipient)}`));
    expect((err as Error).message).not.toContain(other);
    // The header is in the first kilobytes: the rest (3 MiB) was never read.
    expect(pulled).toBeLessThanOrEqual(4 * 4096);
  });

  it('fails closed on a changed byte, a truncated object and a header that is not age', async () => {
    const cipher = await collect(await encryptStream(Readable.from(chunks(plaintext)), [recipient]));
    const flipped = Buffer.from(cipher);
    flipped.writeUInt8(flipped.readUInt8(flipped.length - 70_000) ^ 0x01, flipped.length - 70_000);
    await expect(collect(await decryptStream(Readable.from(chunks(flipped)), [identity], { key: 'k' }))).rejects.toBeInstanceOf(DecryptionError);
    // Cut at a chunk boundary too: age's last-chunk flag tells.
    for (const cut of [cipher.length - 1, cipher.length - 1000, cipher.length - (cipher.length - 200) % (64 * 1024 + 16)]) {
      await expect(collect(await decryptStream(Readable.from(chunks(cipher.subarray(0, cut))), [identity], { key: 'k' }))).rejects.toThrow(/could not be decrypted: .*damaged or truncated/);
    }
    await expect(decryptStream(Readable.from([Buffer.from('PGDMP not age at all')]), [identity], { key: 'k' })).rejects.toBeInstanceOf(DecryptionError);
  });

  it('ends with the source\'s own error, and never with age\'s final chunk, when the plaintext fails', async () => {
    async function* failing() {
      yield plaintext.subarray(0, 200_000);
      throw new Error('pg_dump exited 1');
    }
    const out: Buffer[] = [];
    const err = await (async () => {
      for await (const c of await encryptStream(Readable.from(failing()), [recipient])) out.push(Buffer.from(c as Uint8Array));
    })().catch((e: unknown) => e);
    expect((err as Error).message).toBe('pg_dump exited 1');
    // What was emitted is not an age file that decrypts (no final chunk).
    await expect(collect(await decryptStream(Readable.from([Buffer.concat(out)]), [identity], { key: 'k' }))).rejects.toBeInstanceOf(DecryptionError);
    // The decrypting side passes its source's error on as it is (a failed download stays a download error).
    async function* cut() {
      yield (await collect(await encryptStream(Readable.from([plaintext]), [recipient]))).subarray(0, 300_000);
      throw Object.assign(new Error('socket hang up'), { name: 'NetworkError' });
    }
    await expect((async () => collect(await decryptStream(cut(), [identity], { key: 'k' })))()).rejects.toMatchObject({ name: 'NetworkError' });
  });

  it('reads its input only as fast as the output is consumed (memory does not grow with the dump)', async () => {
    const MiB = 1024 * 1024;
    const block = randomBytes(MiB);
    let produced = 0;
    let consumed = 0;
    let maxAhead = 0;
    async function* source() {
      for (let i = 0; i < 64; i++) {
        produced += MiB;
        maxAhead = Math.max(maxAhead, produced - consumed);
        yield block;
      }
    }
    const encrypted = await encryptStream(Readable.from(source()), [recipient]);
    for await (const c of encrypted) {
      consumed += (c as Uint8Array).length;
      // A slow uploader: every chunk waits for the event loop to turn.
      await new Promise((r) => setImmediate(r));
    }
    expect(consumed).toBeGreaterThan(64 * MiB);
    // Without backpressure the producer would be 64 MiB ahead.
    expect(maxAhead).toBeLessThan(8 * MiB);
  });
});

describe('manifest and keys', () => {
  const manifest = {
    formatVersion: 2,
    database: 'app',
    key: 'p/app/2026/12/02/app-20261202T030000000Z.dump',
    bytes: 100,
    sha256: 'a'.repeat(64),
    compression: 'zstd:1',
    pgDumpVersion: '18.1',
    serverVersion: '18.1',
    startedAt: '2026-12-02T03:00:00.000Z',
    finishedAt: '2026-12-02T03:00:01.000Z',
    durationMs: 1000,
    reason: 'test',
    toolVersion: '0.1.0',
  };
  const encryption = { format: 'age', recipients: ['0123456789abcdef'] };

  it('reads old manifests and encrypted ones (version 3); refuses encryption without its version or digests', () => {
    expect(parseManifest(JSON.stringify(manifest)).encryption).toBeUndefined();
    expect(parseManifest(JSON.stringify({ ...manifest, formatVersion: 1 })).formatVersion).toBe(1);
    const encrypted = { ...manifest, formatVersion: 3, encryption, plaintextBytes: 80, plaintextSha256: 'b'.repeat(64) };
    expect(parseManifest(JSON.stringify(encrypted))).toMatchObject({ encryption, plaintextSha256: 'b'.repeat(64) });
    expect(() => parseManifest(JSON.stringify({ ...encrypted, formatVersion: 2 }))).toThrow(/formatVersion 3 goes with/);
    expect(() => parseManifest(JSON.stringify({ ...manifest, formatVersion: 3 }))).toThrow(/formatVersion 3 goes with/);
    expect(() => parseManifest(JSON.stringify({ ...encrypted, plaintextSha256: undefined }))).toThrow(/plaintextSha256/);
    expect(() => parseManifest(JSON.stringify({ ...encrypted, encryption: { format: 'gpg', recipients: ['0123456789abcdef'] } }))).toThrow();
  });

  it('reads an encrypted sharded manifest (version 4 with "encryption"), whose every part carries its plaintext digest, and only then', () => {
    const part = { key: 'p/app/2026/12/02/app-20261202T030000000Z.data-1.dump', bytes: 50, sha256: 'c'.repeat(64), tables: 2, tableBytes: 8192, largeObjects: true };
    const plainPart = { plaintextBytes: 40, plaintextSha256: 'd'.repeat(64) };
    const sharded = { ...manifest, formatVersion: 4, encryption, plaintextBytes: 80, plaintextSha256: 'b'.repeat(64), parts: [{ ...part, ...plainPart }] };
    expect(parseManifest(JSON.stringify(sharded)).parts![0]).toMatchObject(plainPart);
    // A part without its plaintext digest could not be checked after decrypting; a plain backup's part must not claim one.
    expect(() => parseManifest(JSON.stringify({ ...sharded, parts: [part] }))).toThrow(/a part's .*plaintextSha256.* go with the manifest's/);
    const { encryption: _e, plaintextBytes: _b, plaintextSha256: _s, ...plain } = sharded;
    expect(() => parseManifest(JSON.stringify(plain))).toThrow(/a part's .*plaintextSha256.* go with the manifest's/);
    expect(parseManifest(JSON.stringify({ ...plain, parts: [part] })).encryption).toBeUndefined();
    // Version 3 is one archive: parts never go with it.
    expect(() => parseManifest(JSON.stringify({ ...sharded, formatVersion: 3 }))).toThrow(/formatVersion 4 goes with .*parts/);
  });

  it('gives encrypted globals the .age suffix, and listing and pruning still see them', () => {
    const at = new Date('2026-12-02T03:00:00.000Z');
    const key = buildGlobalsKey('p/', at, { encrypted: true });
    expect(key).toBe('p/_globals/2026/12/02/globals-20261202T030000000Z.sql.age');
    expect(isGlobalsKey('p/', key)).toBe(true);
    expect(isGlobalsKey('p/', buildGlobalsKey('p/', at))).toBe(true);
    expect(isGlobalsKey('p/', `${key}.x`)).toBe(false);
  });
});
