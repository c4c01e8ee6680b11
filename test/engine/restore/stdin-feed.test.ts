/** The data path of a sharded restore: S3's small pieces gathered into a few reusable blocks for pg_restore's stdin. */
import { createHash } from 'node:crypto';
import { PassThrough, Readable, Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { BlockGatherer, feedStdin } from '../../../engine/restore/stdin-feed.ts';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
/** Deterministic bytes, different at every offset. */
const bytes = (n: number, seed = 1) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed * 7 + (i >> 8)) & 0xff));

describe('BlockGatherer', () => {
  it('hands out full blocks only, in order, then the rest; the bytes are the pieces joined', () => {
    const g = new BlockGatherer(10, 2);
    const data = bytes(37);
    const out: Buffer[] = [];
    let at = 0;
    for (const size of [3, 7, 1, 16, 10]) {
      const full = g.push(data.subarray(at, at + size));
      at += size;
      for (const b of full) {
        expect(b.length).toBe(10);
        out.push(Buffer.from(b));
        g.release(b);
      }
    }
    expect(out).toHaveLength(3);
    const rest = g.rest();
    expect(rest?.length).toBe(7);
    expect(Buffer.concat([...out, rest!]).equals(data)).toBe(true);
    expect(g.rest()).toBeUndefined();
  });

  it('reuses a block only once released, says when none is free, and still takes a piece then (a block of its own)', () => {
    const g = new BlockGatherer(4, 2);
    const [a] = g.push(Buffer.from('aaaa'));
    expect(g.exhausted).toBe(false);
    const [b] = g.push(Buffer.from('bbbb'));
    expect(g.exhausted).toBe(true);
    // Not released yet: a third block is a new one, and the first two keep their bytes.
    const [c] = g.push(Buffer.from('cccc'));
    expect([a!.toString(), b!.toString(), c!.toString()]).toEqual(['aaaa', 'bbbb', 'cccc']);
    expect(c!.buffer).not.toBe(a!.buffer);
    g.release(a!);
    expect(g.exhausted).toBe(false);
    const [d] = g.push(Buffer.from('dddd'));
    expect(d!.buffer).toBe(a!.buffer);
    expect(b!.toString()).toBe('bbbb');
  });
});

/** A pipe-like sink that takes `delayMs` per write, as a busy pg_restore does. */
function slowSink(delayMs: number, limit = Infinity) {
  const got: Buffer[] = [];
  let taken = 0;
  const sink = new Writable({
    highWaterMark: 16 * 1024,
    write(chunk: Buffer, _enc, done) {
      // A copy: the feeder reuses its blocks once a write is done.
      got.push(Buffer.from(chunk));
      taken += chunk.length;
      if (taken >= limit) return done(Object.assign(new Error('EPIPE'), { code: 'EPIPE' }));
      setTimeout(done, delayMs);
    },
  });
  return { sink, got, sizes: () => got.map((b) => b.length) };
}

describe('feedStdin', () => {
  it('writes every byte in blocks far larger than the pieces, hashes them, and keeps at most a few blocks in flight', async () => {
    const data = bytes(3 * 1024 * 1024 + 123, 2);
    const pieces = Array.from({ length: Math.ceil(data.length / 16384) }, (_, i) => data.subarray(i * 16384, (i + 1) * 16384));
    const { sink, got, sizes } = slowSink(1);
    let inMemory = 0;
    let peak = 0;
    const body = new Readable({ read() {} });
    for (const p of pieces) body.push(p);
    body.push(null);
    // Counted as the sink sees them: written and not yet done.
    const origWrite = sink.write.bind(sink);
    sink.write = ((chunk: Buffer, cb?: (err?: Error | null) => void) => {
      inMemory += chunk.length;
      peak = Math.max(peak, inMemory);
      return origWrite(chunk, (err) => {
        inMemory -= chunk.length;
        cb?.(err);
      });
    }) as typeof sink.write;
    const fed = await feedStdin(body, sink, () => false);
    await new Promise((r) => sink.once('finish', r));
    expect(fed).toEqual({ bytes: data.length, sha256: sha256(data), complete: true });
    expect(Buffer.concat(got).equals(data)).toBe(true);
    expect(sizes().slice(0, -1).every((n) => n === 256 * 1024)).toBe(true);
    expect(peak).toBeLessThanOrEqual(4 * 256 * 1024);
  });

  it('after pg_restore closes its stdin the rest is still read and hashed; once it has failed, reading stops', async () => {
    const data = bytes(2 * 1024 * 1024, 3);
    const piece = (i: number) => data.subarray(i * 65536, (i + 1) * 65536);
    const read = async (failed: boolean) => {
      const { sink } = slowSink(0, 300 * 1024);
      sink.on('error', () => {});
      const body = new PassThrough();
      const fed = feedStdin(body, sink, () => failed);
      for (let i = 0; i < 32; i++) {
        body.write(piece(i));
        await new Promise((r) => setImmediate(r));
      }
      body.end();
      return fed;
    };
    expect(await read(false)).toEqual({ bytes: data.length, sha256: sha256(data), complete: true });
    const stopped = await read(true);
    expect(stopped.complete).toBe(false);
    expect(stopped.bytes).toBeLessThan(data.length);
  });

  it('rejects when S3 fails mid-way, or when the body is destroyed (the restore stopped)', async () => {
    const failing = new PassThrough();
    const fed = feedStdin(failing, slowSink(0).sink, () => false);
    failing.write(bytes(1000));
    failing.destroy(new Error('socket hang up'));
    await expect(fed).rejects.toThrow('socket hang up');
    const stopped = new PassThrough();
    const fed2 = feedStdin(stopped, slowSink(0).sink, () => false);
    stopped.write(bytes(1000));
    stopped.destroy();
    await expect(fed2).rejects.toThrow(/before its end/);
  });
});
