/**
 * age's payload (age-encryption.org/v1, "Payload") on OpenSSL: node:crypto's ChaCha20-Poly1305
 * instead of the `age-encryption` package's JavaScript one, which cost ≈ 12.4 CPU-s per GiB of
 * dump, 1.6 × pg_dump's own CPU (issue 24 §3). The header (recipient stanzas, X25519, the header
 * MAC) stays with the package: see encryption.ts.
 *
 * The format, from the spec: a 16-byte random nonce, then the plaintext in 64 KiB chunks, each
 * sealed with ChaCha20-Poly1305 under HKDF-SHA-256(ikm = file key, salt = nonce, info = "payload")
 * and a 12-byte nonce of an 11-byte big-endian chunk counter and a last-chunk flag (0x01 on the
 * final chunk, 0x00 before). The final chunk may be short, and is empty only when the whole
 * payload is: an empty payload is one empty final chunk, never no chunk.
 *
 * Both directions stream with bounded memory (a few chunks whatever the size), and backpressure
 * reaches the producer: sealing is a Transform, opening an async generator pulled one chunk at a
 * time (Readable.from).
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { Transform } from 'node:stream';
import { DecryptionError } from './errors.ts';

/** Plaintext bytes per chunk. */
export const CHUNK_BYTES = 64 * 1024;
/** The Poly1305 tag after each chunk. */
export const TAG_BYTES = 16;
/** The payload nonce that precedes the chunks. */
export const NONCE_BYTES = 16;
const SEALED_CHUNK_BYTES = CHUNK_BYTES + TAG_BYTES;

/** The payload key: HKDF-SHA-256(ikm = file key, salt = payload nonce, info = "payload"), 32 bytes. */
export function payloadKey(fileKey: Uint8Array, nonce: Uint8Array): Buffer {
  return Buffer.from(hkdfSync('sha256', fileKey, nonce, 'payload', 32));
}

/** The 12-byte chunk nonce: the counter big-endian in bytes 0–10, the last-chunk flag in byte 11. */
function chunkNonce(counter: number, last: boolean): Buffer {
  const nonce = Buffer.alloc(12);
  // Bytes 0–2 stay zero: 2^64 chunks of 64 KiB is beyond any dump, and a JS number is exact to 2^53.
  nonce.writeUInt32BE(Math.floor(counter / 2 ** 32), 3);
  nonce.writeUInt32BE(counter >>> 0, 7);
  nonce[11] = last ? 1 : 0;
  return nonce;
}

/**
 * One sealed chunk, as pieces: the ciphertext of each piece of `plain`, then the tag. Never
 * concatenated: a 64 KiB copy per chunk halved the throughput (allocation and GC of the
 * copies). Exported for tests that craft files age never writes.
 */
export function sealChunk(key: Buffer, counter: number, last: boolean, plain: Uint8Array | readonly Uint8Array[]): Buffer[] {
  const cipher = createCipheriv('chacha20-poly1305', key, chunkNonce(counter, last), { authTagLength: TAG_BYTES });
  const out: Buffer[] = [];
  for (const piece of plain instanceof Uint8Array ? [plain] : plain) {
    const body = cipher.update(piece);
    if (body.length > 0) out.push(body);
  }
  cipher.final();
  out.push(cipher.getAuthTag());
  return out;
}

/** The plaintext of one sealed chunk (its ciphertext as pieces, and its tag), or undefined when it does not authenticate under this counter and flag. */
function openChunk(key: Buffer, counter: number, last: boolean, sealed: readonly Buffer[], tag: Buffer): Buffer[] | undefined {
  const decipher = createDecipheriv('chacha20-poly1305', key, chunkNonce(counter, last), { authTagLength: TAG_BYTES });
  decipher.setAuthTag(tag);
  // update() returns unauthenticated bytes: nothing leaves this function before final() accepts the tag.
  const out: Buffer[] = [];
  for (const piece of sealed) {
    const body = decipher.update(piece);
    if (body.length > 0) out.push(body);
  }
  try {
    decipher.final();
  } catch {
    return undefined;
  }
  return out;
}

/**
 * A FIFO of byte pieces from which fixed-size blocks are taken: the source's pieces have any size
 * (pg_dump's pipe reads, S3's socket reads), age's chunks are 64 KiB. Blocks are taken as views
 * of the pieces, not copies.
 */
export class ByteQueue {
  private pieces: Buffer[] = [];
  private bytes = 0;

  get length(): number {
    return this.bytes;
  }

  push(piece: Uint8Array): void {
    if (piece.length === 0) return;
    this.pieces.push(Buffer.isBuffer(piece) ? piece : Buffer.from(piece.buffer, piece.byteOffset, piece.length));
    this.bytes += piece.length;
  }

  /** The first `n` bytes (n ≤ length), removed from the queue, as views of the pieces they were in (no copy). */
  takePieces(n: number): Buffer[] {
    const out: Buffer[] = [];
    let left = n;
    while (left > 0) {
      const piece = this.pieces[0]!;
      if (piece.length <= left) {
        out.push(piece);
        this.pieces.shift();
        left -= piece.length;
      } else {
        out.push(piece.subarray(0, left));
        this.pieces[0] = piece.subarray(left);
        left = 0;
      }
    }
    this.bytes -= n;
    return out;
  }

  /** The first `n` bytes (n ≤ length), removed from the queue, as one buffer (a view when they are in one piece). */
  take(n: number): Buffer {
    const pieces = this.takePieces(n);
    return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, n);
  }

  /** A copy of everything queued, the queue left as it is (for the small header only). */
  peekAll(): Buffer {
    return Buffer.concat(this.pieces, this.bytes);
  }
}

/**
 * A Transform that writes `prefix` (the header), then age's payload under `fileKey`: the nonce,
 * then the sealed chunks. A chunk is sealed only once the next byte (or the end) is known,
 * because the final chunk's flag differs; so a payload whose length is a multiple of 64 KiB ends
 * with a full final chunk, as age writes it. Synchronous per input piece (a Transform, not an
 * async generator: the per-chunk promise hops cost about as much CPU as the cipher). It takes no
 * more input while its readable side holds 64 KiB or more (one input piece's chunks beyond that at
 * most): backpressure reaches the producer. Destroyed with an error (the producer's, through pipeline), it never writes the
 * final chunk: what was written does not decrypt (fail closed).
 */
export function sealPayload(prefix: Buffer, fileKey: Uint8Array): Transform {
  const nonce = randomBytes(NONCE_BYTES);
  const key = payloadKey(fileKey, nonce);
  const queue = new ByteQueue();
  let counter = 0;
  const sealer = new Transform({
    readableHighWaterMark: CHUNK_BYTES,
    writableHighWaterMark: CHUNK_BYTES,
    transform(piece: Buffer, _encoding, done) {
      queue.push(piece);
      while (queue.length > CHUNK_BYTES) for (const out of sealChunk(key, counter++, false, queue.takePieces(CHUNK_BYTES))) this.push(out);
      done();
    },
    flush(done) {
      for (const out of sealChunk(key, counter, true, queue.takePieces(queue.length))) this.push(out);
      done();
    },
  });
  sealer.push(prefix);
  sealer.push(nonce);
  return sealer;
}

/**
 * The plaintext of the payload that `source` continues with (after the header, whose unread
 * bytes are in `queue`), under `fileKey`. Strict, as the spec asks of streaming decryption:
 * - a chunk followed by more bytes is a full chunk and must open as non-final: a final chunk
 *   with bytes after it (an appended chunk, trailing garbage) fails;
 * - the bytes at the end must open as the final chunk: an object cut anywhere, at a chunk
 *   boundary included, fails, and so does a payload with no chunk at all;
 * - the final chunk is empty only when it is the only one.
 * Failures are DecryptionErrors naming `objectKey`; the source's own errors pass through as they
 * are (a failed download stays a download error). A chunk's plaintext is yielded only once its
 * tag is checked.
 */
export async function* openPayload(queue: ByteQueue, source: AsyncIterator<Uint8Array>, fileKey: Uint8Array, objectKey: string): AsyncGenerator<Buffer> {
  const damaged = (what: string) => new DecryptionError(`backup ${objectKey} could not be decrypted: ${what} (the object is damaged or truncated); nothing was restored`);
  let ended = false;
  const fill = async (n: number) => {
    while (!ended && queue.length < n) {
      const next = await source.next();
      if (next.done) ended = true;
      else queue.push(next.value);
    }
  };
  await fill(NONCE_BYTES);
  if (queue.length < NONCE_BYTES) throw damaged(`it ends ${queue.length} bytes into the payload's 16-byte nonce`);
  const key = payloadKey(fileKey, queue.take(NONCE_BYTES));
  for (let counter = 0; ; counter++) {
    await fill(SEALED_CHUNK_BYTES + 1);
    const where = `chunk ${counter} (plaintext offset ${counter * CHUNK_BYTES})`;
    if (queue.length > SEALED_CHUNK_BYTES) {
      const plain = openChunk(key, counter, false, queue.takePieces(CHUNK_BYTES), queue.take(TAG_BYTES));
      if (plain === undefined) throw damaged(`${where} fails authentication`);
      yield* plain;
      continue;
    }
    // The source has ended: what is left must be the final chunk.
    if (queue.length === 0) {
      throw damaged(counter === 0 ? 'the payload has no chunk (not even the empty final one)' : `it ends after chunk ${counter - 1}, a non-final chunk (cut at a chunk boundary)`);
    }
    if (queue.length < TAG_BYTES) throw damaged(`${where} is ${queue.length} bytes, shorter than its tag`);
    const plain = openChunk(key, counter, true, queue.takePieces(queue.length - TAG_BYTES), queue.take(TAG_BYTES));
    if (plain === undefined) throw damaged(`${where} fails authentication as the final chunk`);
    if (plain.length === 0 && counter > 0) throw damaged(`${where}, the final chunk, is empty (age writes an empty final chunk only for an empty file)`);
    yield* plain;
    return;
  }
}
