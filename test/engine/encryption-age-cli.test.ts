/**
 * The age payload on node:crypto (engine/age-payload.ts, issue 24 §3) against the reference
 * implementation, Debian's `age` binary (Go, age-encryption.org/v1), both ways: what
 * encryptStream writes, `age -d` opens; what `age -e -r` writes, decryptStream opens; at the
 * sizes where the chunking has edges (empty, one byte, one short of a chunk, exactly one chunk —
 * a full final chunk —, one byte more, three chunks, a few MiB). And what must fail does, on both
 * sides: a flipped byte, an object cut short (inside a chunk and at a chunk boundary), a chunk
 * appended after the final one, an empty final chunk after a full one.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHUNK_BYTES, NONCE_BYTES, payloadKey, sealChunk, TAG_BYTES } from '../../engine/age-payload.ts';
import { ageHeader, decryptStream, encryptStream } from '../../engine/encryption.ts';
import { DecryptionError } from '../../engine/errors.ts';

const KiB = 1024;
const SEALED = CHUNK_BYTES + TAG_BYTES;
const SIZES = [0, 1, 64 * KiB - 1, 64 * KiB, 64 * KiB + 1, 3 * 64 * KiB, 3 * 1024 * KiB + 12_345];

let dir: string;
let identityFile: string;
let recipient: string;

/** Runs `age` (or age-keygen) with `input` on stdin: its stdout, or its exit status and stderr. */
function age(args: string[], input?: Buffer, program = 'age'): { ok: true; out: Buffer } | { ok: false; status: number | null; stderr: string } {
  try {
    return { ok: true, out: execFileSync(program, args, { input: input ?? Buffer.alloc(0), maxBuffer: 64 * 1024 * KiB, stdio: ['pipe', 'pipe', 'pipe'], timeout: 60_000 }) };
  } catch (err) {
    const e = err as { status: number | null; stderr?: Buffer; code?: string };
    if (e.code === 'ENOENT') throw new Error(`${program} is not installed (Debian: apt-get install age; .ci/run installs it)`, { cause: err });
    return { ok: false, status: e.status, stderr: e.stderr?.toString() ?? '' };
  }
}

function ageOk(args: string[], input?: Buffer, program = 'age'): Buffer {
  const r = age(args, input, program);
  if (!r.ok) throw new Error(`${program} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.out;
}

async function collect(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of stream) out.push(Buffer.from(c));
  return Buffer.concat(out);
}

/** Pieces of odd sizes, as pipes and sockets deliver them, so that chunks straddle reads. */
function pieces(b: Buffer, size = 40_001): Buffer[] {
  return Array.from({ length: Math.ceil(b.length / size) }, (_, i) => b.subarray(i * size, (i + 1) * size));
}

const ours = async (plain: Buffer) => collect(await encryptStream(Readable.from(pieces(plain)), [recipient]));
const theirs = (plain: Buffer) => ageOk(['-e', '-r', recipient], plain);
const open = async (cipher: Buffer) => collect(await decryptStream(Readable.from(pieces(cipher, 77_777)), [identityOf()], { key: 'db/x.dump.age' }));
const ageOpen = (cipher: Buffer) => age(['-d', '-i', identityFile], cipher);

let identity: string;
const identityOf = () => identity;

/** Where age's payload starts in a file with one X25519 recipient: the header's end. */
function headerLength(file: Buffer): number {
  const mac = file.indexOf('\n---');
  return file.indexOf('\n', mac + 1) + 1;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'pgs3b-age-cli-'));
  identityFile = join(dir, 'key.txt');
  ageOk(['-o', identityFile], undefined, 'age-keygen');
  recipient = ageOk(['-y', identityFile], undefined, 'age-keygen').toString().trim();
  identity = execFileSync('grep', ['^AGE-SECRET-KEY-1', identityFile]).toString().trim();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('age payload on node:crypto, byte-compatible with the age binary', () => {
  it.each(SIZES)('%i bytes: ours opens with age -d, age -e opens with ours, with the same length', async (size) => {
    const plain = randomBytes(size);
    const mine = await ours(plain);
    const reference = theirs(plain);
    // One X25519 stanza, a 16-byte nonce, 16 bytes per chunk: the same layout to the byte.
    expect(mine.length).toBe(reference.length);
    expect(mine.length - headerLength(mine)).toBe(NONCE_BYTES + size + TAG_BYTES * Math.max(1, Math.ceil(size / CHUNK_BYTES)));
    const opened = ageOpen(mine);
    expect(opened.ok ? opened.out.equals(plain) : opened).toBe(true);
    expect((await open(reference)).equals(plain)).toBe(true);
  });

  it("fails closed, like age, on a flipped byte, a cut object and a chunk appended after age's final chunk", async () => {
    const plain = randomBytes(3 * CHUNK_BYTES + 1000);
    for (const file of [theirs(plain), await ours(plain)]) {
      const payload = headerLength(file) + NONCE_BYTES;
      const flipped = Buffer.from(file);
      flipped[payload + SEALED + 500]! ^= 0x20;
      const damaged: [string, Buffer, RegExp][] = [
        ['a flipped byte in chunk 1', flipped, /chunk 1 \(plaintext offset 65536\) fails authentication/],
        ['cut inside the final chunk', file.subarray(0, file.length - 10), /chunk 3 .* fails authentication as the final chunk/],
        ['cut at a chunk boundary', file.subarray(0, payload + 3 * SEALED), /chunk 2 .* fails authentication as the final chunk/],
        ['cut inside the nonce', file.subarray(0, payload - 3), /ends 13 bytes into the payload's 16-byte nonce/],
        ['a sealed chunk appended', Buffer.concat([file, file.subarray(payload, payload + SEALED)]), /chunk 3 .* fails authentication/],
        ['bytes appended', Buffer.concat([file, Buffer.from('x')]), /chunk 3 .* fails authentication as the final chunk/],
      ];
      for (const [what, bytes, expected] of damaged) {
        const err = await open(bytes).catch((e: unknown) => e);
        expect(err, what).toBeInstanceOf(DecryptionError);
        expect((err as Error).message, what).toMatch(expected);
        expect((err as Error).message, what).toMatch(/^backup db\/x\.dump\.age could not be decrypted: .*\(the object is damaged or truncated\); nothing was restored$/);
        const reference = ageOpen(bytes);
        expect(reference.ok, `age -d accepted ${what}`).toBe(false);
      }
    }
  });

  it('refuses a full final chunk followed by another, and an empty final chunk after a full one, as age does', async () => {
    // A 64 KiB plaintext is one full final chunk; anything after it is not age.
    const file = theirs(randomBytes(CHUNK_BYTES));
    const extra = Buffer.concat([file, file.subarray(headerLength(file) + NONCE_BYTES)]);
    await expect(open(extra)).rejects.toThrow(/chunk 0 .* fails authentication/);
    expect(ageOpen(extra).ok).toBe(false);

    // Crafted (no age writes it): a full chunk, then an empty chunk flagged final. Every tag is
    // right; the spec forbids it anyway (the final chunk is empty only in an empty file).
    const { header, fileKey } = await ageHeader([recipient]);
    const nonce = randomBytes(NONCE_BYTES);
    const key = payloadKey(fileKey, nonce);
    const full = randomBytes(CHUNK_BYTES);
    const crafted = Buffer.concat([header, nonce, ...sealChunk(key, 0, false, full), ...sealChunk(key, 1, true, Buffer.alloc(0))]);
    await expect(open(crafted)).rejects.toThrow(/chunk 1 .*, the final chunk, is empty/);
    const reference = ageOpen(crafted);
    expect(reference.ok).toBe(false);
    expect(reference.ok ? '' : reference.stderr).toMatch(/empty/);
    // The same plaintext with the full chunk flagged final instead: a good file, which both open
    // (so what failed above is the empty final chunk, not the crafting).
    const good = Buffer.concat([header, nonce, ...sealChunk(key, 0, true, full)]);
    const opened = ageOpen(good);
    expect(opened.ok ? opened.out.equals(full) : opened).toBe(true);
    expect((await open(good)).equals(full)).toBe(true);
    // A payload with no chunk at all (not even the empty final one).
    const bare = Buffer.concat([header, nonce]);
    await expect(open(bare)).rejects.toThrow(/the payload has no chunk/);
    expect(ageOpen(bare).ok).toBe(false);
  });
});
