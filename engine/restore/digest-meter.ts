/**
 * A pass-through stream that counts and hashes (SHA-256) what flows through it: how a restore
 * checks an object (stored, or decrypted) against its manifest while it streams, without a second
 * read. `onChunk` sees the running byte count (progress events).
 */
import { createHash } from 'node:crypto';
import { Transform } from 'node:stream';

export interface Digest {
  readonly bytes: number;
  readonly sha256: string;
}

export interface DigestMeter {
  readonly stream: Transform;
  /** The bytes so far and their SHA-256; call once, after the stream has ended. */
  digest(): Digest;
}

export function digestMeter(onChunk?: (bytes: number) => void): DigestMeter {
  const hash = createHash('sha256');
  let bytes = 0;
  const stream = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      bytes += chunk.length;
      onChunk?.(bytes);
      done(null, chunk);
    },
  });
  return { stream, digest: () => ({ bytes, sha256: hash.digest('hex') }) };
}
