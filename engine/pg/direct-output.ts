/**
 * A tool's stdout read straight into the reader's own buffers.
 *
 * node reads a child's stdout pipe in reads of at most 64 KiB, each into a freshly allocated
 * buffer that then travels through the stream machinery (push, pipe, a Transform, an async
 * iterator) before the uploader copies it into a part buffer. pg_dump writes its archive in
 * small pieces, so on one CPU node wakes for almost every piece: about 14,000 reads for a
 * 406 MiB dump, half of them 4 KiB. Measured on the bench's 1 GB database (pg_dump and node
 * pinned to one CPU), reading alone cost node 0.8–0.9 CPU-s that way, and 0.45–0.5 CPU-s with
 * this channel; the 64 KiB buffers also wait for V8's garbage collector (≈ 30 MiB of RSS).
 *
 * node cannot create a pipe, but a connected UNIX socket created by `net.connect` accepts
 * `onread`: every read lands in a buffer the reader supplies (here: the free end of the part
 * being filled) and a callback hears how many bytes came. So the tool's stdout is one end of a
 * UNIX stream socket: a listener on a path in a new private directory (mode 0700: no other user
 * can connect), our connection to it, the accepted end given to the child as its stdout. The
 * listener and its directory are gone before the tool starts.
 */
import { connect, createServer, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Reads before the reader starts (none in practice: the tool is started after) land here. */
const SCRATCH_BYTES = 64 * 1024;

export interface DirectOutput {
  /**
   * Starts reading: each read goes into `target()` (asked again after every read) and
   * `onRead(n, buf)` hears of it; `buf` is the buffer the `n` bytes are at the start of (the
   * target, except possibly for the first read). Returning false pauses reading.
   */
  start(target: () => Buffer, onRead: (n: number, buf: Buffer) => boolean): void;
  pause(): void;
  resume(): void;
  /** Reading is paused (by `pause()` or by `onRead` returning false). */
  readonly paused: boolean;
  /** Resolves at the end of the output (every writer closed it); rejects on a read error. */
  readonly ended: Promise<void>;
  /** Closes our end: a writer still holding the other end gets EPIPE/SIGPIPE. */
  destroy(): void;
}

export interface DirectChannel {
  /** The end to give the child as its stdout (`stdio[1]`); close it in the parent after spawning. */
  readonly childEnd: Socket;
  readonly output: DirectOutput;
}

/**
 * Opens the channel, or resolves undefined when it cannot (no writable temporary directory, a
 * path too long for a socket): the caller then uses a plain pipe.
 */
export async function openDirectChannel(): Promise<DirectChannel | undefined> {
  let dir: string;
  try {
    dir = mkdtempSync(join(tmpdir(), 'pgs3b-out-'));
  } catch {
    return undefined;
  }
  const path = join(dir, 'stdout.sock');
  const server = createServer({ pauseOnConnect: true });
  let ours: Socket | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
    const scratch = Buffer.allocUnsafe(SCRATCH_BYTES);
    let target: () => Buffer = () => scratch;
    let onRead: (n: number, buf: Buffer) => boolean = () => false;
    const socket = connect({
      path,
      onread: {
        buffer: () => target(),
        callback: (n: number, buf: Uint8Array) => onRead(n, buf as Buffer),
      },
    });
    ours = socket;
    // Nothing is read until the reader starts.
    socket.pause();
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve();
      });
    });
    const childEnd = await accepted;
    let paused = true;
    const ended = new Promise<void>((resolve, reject) => {
      socket.once('end', resolve);
      socket.once('error', reject);
      // Destroyed by us before the end: no more bytes will come.
      socket.once('close', () => reject(new Error('the tool output was closed before its end')));
    });
    ended.catch(() => {});
    const output: DirectOutput = {
      start(t, r) {
        target = t;
        onRead = (n, buf) => {
          const more = r(n, buf);
          if (!more) paused = true;
          return more;
        };
        output.resume();
      },
      pause() {
        paused = true;
        socket.pause();
      },
      resume() {
        paused = false;
        socket.resume();
      },
      get paused() {
        return paused;
      },
      ended,
      destroy() {
        socket.destroy();
      },
    };
    return { childEnd, output };
  } catch {
    ours?.destroy();
    return undefined;
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The output as an ordinary stream of chunks, for a consumer that needs one (a transform before
 * the uploader: encryption): one buffer per read, as a pipe would give.
 */
export function outputStream(output: DirectOutput, chunkBytes = SCRATCH_BYTES): Readable {
  let next = Buffer.allocUnsafe(chunkBytes);
  const stream = new Readable({
    read() {
      if (output.paused) output.resume();
    },
    destroy(err, cb) {
      output.destroy();
      cb(err);
    },
  });
  output.start(
    () => next,
    (n, buf) => {
      next = Buffer.allocUnsafe(chunkBytes);
      return stream.push(buf.subarray(0, n));
    },
  );
  output.ended.then(() => stream.push(null), (err: unknown) => stream.destroy(err as Error));
  return stream;
}
