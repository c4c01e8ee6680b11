/**
 * A data archive streamed from S3 into pg_restore's stdin, hashed on the way (sharded-restore.ts).
 *
 * Why not `for await (chunk of body) stdin.write(chunk)`: S3's body arrives in TLS records of at
 * most 16 KiB, and that loop paid for every one of them: a promise hop, a write(2) to the pipe
 * (which wakes pg_restore for 16 KiB), and, whenever the pipe was full, a drain wait. Profiled on
 * the bench's 1 GB sharded restore (406 MiB of zstd:1 archives), node spent 3.2 CPU-s on it, a
 * quarter in those writes and half in V8's garbage collector. Here the records are copied into a
 * few reusable blocks (`STDIN_BLOCK_BYTES`), each written once it is full: one write per block,
 * no new buffer per write, at most `STDIN_BLOCKS` blocks per archive in memory (S3's body is
 * paused while none is free), and no promise per record.
 */
import { createHash } from 'node:crypto';
import type { Readable, Writable } from 'node:stream';

/** One write to pg_restore's stdin (a pipe holds 64 KiB: the kernel takes it in a few goes). */
export const STDIN_BLOCK_BYTES = 256 * 1024;
/** Blocks per archive: filling one while others are written. */
export const STDIN_BLOCKS = 4;

/**
 * Gathers small pieces into full blocks from a fixed pool: `push` copies a piece in and returns
 * the blocks it completed (write them, then `release` each); `rest` is the last, partial block.
 * A block is reused only once released. Pure: no I/O.
 */
export class BlockGatherer {
  private readonly free: Buffer[];
  private current: Buffer | undefined;
  private filled = 0;

  constructor(
    private readonly blockBytes: number = STDIN_BLOCK_BYTES,
    private readonly blocks: number = STDIN_BLOCKS,
  ) {
    this.free = Array.from({ length: blocks }, () => Buffer.allocUnsafeSlow(blockBytes));
  }

  /** No block is free (the one being filled may have room): stop taking pieces until one is released. */
  get exhausted(): boolean {
    return this.free.length === 0;
  }

  push(piece: Buffer): Buffer[] {
    const full: Buffer[] = [];
    let at = 0;
    while (at < piece.length) {
      // The pool is sized for pieces smaller than a block; a bigger one, or a piece pushed
      // while exhausted, gets a block of its own, not returned to the pool.
      this.current ??= this.free.pop() ?? Buffer.allocUnsafeSlow(this.blockBytes);
      const n = piece.copy(this.current, this.filled, at);
      at += n;
      this.filled += n;
      if (this.filled === this.blockBytes) {
        full.push(this.current);
        this.current = undefined;
        this.filled = 0;
      }
    }
    return full;
  }

  /** The bytes gathered but not yet in a full block (a view: release the block after writing it). */
  rest(): Buffer | undefined {
    if (!this.current || this.filled === 0) return undefined;
    const view = this.current.subarray(0, this.filled);
    this.current = undefined;
    this.filled = 0;
    return view;
  }

  /** A written block (or `rest()`'s view of one) back to the pool. */
  release(block: Buffer): void {
    if (this.free.length < this.blocks && block.byteLength === this.blockBytes) this.free.push(block);
  }
}

export interface Fed {
  readonly bytes: number;
  /** Empty when incomplete. */
  readonly sha256: string;
  /** False: pg_restore failed and closed its stdin before the end, and the rest was not read. */
  readonly complete: boolean;
}

/**
 * Copies `body` into `stdin`, hashing every byte. pg_restore may close its stdin before the end
 * (it stops reading after the last entry it needs): the rest is still read and hashed, so the
 * checksum always covers the whole object, unless `failed()` says pg_restore has failed (then
 * nothing more is read: its errors say why). Rejects when `body` fails or is destroyed first.
 */
export function feedStdin(body: Readable, stdin: Writable, failed: () => boolean): Promise<Fed> {
  const hash = createHash('sha256');
  const blocks = new BlockGatherer();
  let bytes = 0;
  let open = true;
  let waiting = false;
  return new Promise<Fed>((resolve, reject) => {
    let settled = false;
    const settle = (f: () => void) => {
      if (settled) return;
      settled = true;
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onError);
      body.off('close', onClose);
      f();
    };
    const resumeIfWaiting = () => {
      if (!waiting) return;
      waiting = false;
      body.resume();
    };
    // EPIPE when pg_restore has stopped reading (or failed): its own outcome says which. From
    // then on S3's body is only hashed.
    const closed = () => {
      open = false;
      resumeIfWaiting();
    };
    stdin.on('error', closed);
    stdin.on('close', closed);
    const write = (block: Buffer) =>
      stdin.write(block, () => {
        blocks.release(block);
        resumeIfWaiting();
      });
    const onData = (chunk: Buffer) => {
      if (!open && failed()) return settle(() => resolve({ bytes, sha256: '', complete: false }));
      hash.update(chunk);
      bytes += chunk.length;
      if (!open) return;
      for (const block of blocks.push(chunk)) write(block);
      if (blocks.exhausted) {
        waiting = true;
        body.pause();
      }
    };
    const onEnd = () =>
      settle(() => {
        if (open) {
          const rest = blocks.rest();
          if (rest) write(rest);
          stdin.end();
        }
        resolve({ bytes, sha256: hash.digest('hex'), complete: true });
      });
    const onError = (err: Error) => settle(() => reject(err));
    const onClose = () => settle(() => reject(Object.assign(new Error('the archive stream ended before its end'), { code: 'ERR_STREAM_PREMATURE_CLOSE' })));
    body.on('data', onData);
    body.on('end', onEnd);
    body.on('error', onError);
    body.on('close', onClose);
  });
}
