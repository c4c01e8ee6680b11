/**
 * pg_dump's output, checked before it may become a backup: the custom-format signature, the byte
 * count (and SHA-256 where the uploader does not hash), and end-of-stream held back until the
 * tool has exited 0 (`toolVerdict`). Otherwise the stream errors and the upload it feeds is
 * aborted: nothing lands at the key. Two readers: `DumpGate`, a stream (for a transform such as
 * encryption), and `DirectDumpReader`, straight into the uploader's part buffers (direct-output.ts).
 */
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { DumpError, dumpHint, type ProcessOutcome } from '../errors.ts';
import type { DirectOutput } from './direct-output.ts';
import { describeExit, type RunningTool } from './process.ts';

/** pg_dump's custom-format archives start with these bytes. */
export const CUSTOM_FORMAT_MAGIC = Buffer.from('PGDMP');

const MiB = 1024 * 1024;

/** Where a direct reader puts the bytes: the uploader's part buffers (engine/store/multipart.ts). */
export interface PartSink<R> {
  /** The free end of the part being filled. */
  region(): Buffer;
  /** `n` bytes were written into `region()`; a promise while every part slot is busy sending. */
  commit(n: number): Promise<void> | undefined;
  finish(): Promise<R>;
  abort(reason: unknown): Promise<void>;
}

/** The tool's outcome once it has exited 0; a DumpError saying how it ended otherwise. */
export async function toolVerdict(tool: Pick<RunningTool, 'finished'>, toolName: string): Promise<ProcessOutcome> {
  const outcome = await tool.finished;
  if (outcome.exitCode !== 0 || outcome.signal) {
    throw new DumpError(`${toolName} failed: ${describeExit(outcome.exitCode, outcome.signal, toolName)}${outcome.stderrTail.length ? `\n${outcome.stderrTail.join('\n')}` : ''}`, {
      outcome,
      hint: dumpHint(outcome),
    });
  }
  return outcome;
}

/**
 * Counts the bytes (and hashes them, unless `hashWhole` is false: the uploader hashes each part
 * itself), checks the magic, and holds back end-of-stream until `verdict` says the producer
 * succeeded.
 */
export class DumpGate extends Transform {
  bytes = 0;
  private readonly hash: Hash | undefined;
  private head = Buffer.alloc(0);
  constructor(
    private readonly verdict: () => Promise<void>,
    private readonly checkMagic = true,
    private readonly onBytes?: (total: number) => void,
    hashWhole = true,
  ) {
    super({ highWaterMark: MiB });
    this.hash = hashWhole ? createHash('sha256') : undefined;
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.checkMagic && this.head.length < CUSTOM_FORMAT_MAGIC.length) {
      this.head = Buffer.concat([this.head, chunk.subarray(0, CUSTOM_FORMAT_MAGIC.length - this.head.length)]);
      if (!CUSTOM_FORMAT_MAGIC.subarray(0, this.head.length).equals(this.head)) {
        cb(badMagic(this.head));
        return;
      }
    }
    this.bytes += chunk.length;
    this.hash?.update(chunk);
    this.onBytes?.(this.bytes);
    cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    const fail = (err: unknown) => cb(err as Error);
    this.verdict().then(() => {
      if (this.checkMagic && this.bytes < CUSTOM_FORMAT_MAGIC.length) {
        cb(new DumpError(`pg_dump exited 0 but wrote ${this.bytes} byte(s), not a dump`, { hint: 'Run PG_DUMP_BIN by hand to see what it does.' }));
      } else {
        cb();
      }
    }, fail);
  }
  digest(): string {
    if (!this.hash) throw new Error('DumpGate: built without hashing');
    return this.hash.digest('hex');
  }
}

/**
 * The DumpGate's checks for a tool whose stdout is read straight into the part buffers
 * (RunningTool.output, direct-output.ts): each read lands in the free end of the part being
 * filled and is committed there (no copy, no chunk objects); reading pauses while every part slot
 * is busy sending. It counts the bytes, checks the magic, and completes the upload only once
 * `verdict` says the producer succeeded; otherwise the upload is aborted.
 */
export class DirectDumpReader {
  bytes = 0;
  private head = Buffer.alloc(0);
  /** Reading is paused because every part slot is busy (S3 is the one not keeping up). */
  waitingForUpload = false;
  private stop: ((err: Error) => void) | undefined;
  private stopped: Error | undefined;
  constructor(
    private readonly output: DirectOutput,
    private readonly verdict: () => Promise<void>,
    private readonly checkMagic = true,
    private readonly onBytes?: (total: number) => void,
    /** Hears of the failure first, before the upload is aborted (as the gate's 'error' event). */
    private readonly onError?: (err: Error) => void,
  ) {}

  /** Stops reading and fails the upload with `err` (first call wins). */
  destroy(err: Error): void {
    this.stopped ??= err;
    this.output.destroy();
    this.stop?.(this.stopped);
  }

  /** Reads the tool's output to its end into `upload`'s part buffers; aborts the upload on any failure. */
  async upload<R>(upload: PartSink<R>): Promise<R> {
    try {
      await new Promise<void>((resolve, reject) => {
        let done = false;
        this.stop = (err) => {
          if (!done) {
            done = true;
            this.onError?.(err);
            reject(err);
          }
        };
        if (this.stopped) return this.stop(this.stopped);
        let region = upload.region();
        this.output.start(
          () => (region = upload.region()),
          (n, buf) => {
            if (done) return false;
            try {
              if (!this.headOk(buf.subarray(0, n))) return false;
              let wait: Promise<void> | undefined;
              if (buf === region) wait = upload.commit(n);
              else {
                // Only a read before the reader started lands elsewhere (a scratch buffer): copy it.
                for (let off = 0; off < n && !wait; ) {
                  const into = upload.region();
                  const k = Math.min(into.length, n - off);
                  buf.copy(into, 0, off, off + k);
                  off += k;
                  wait = upload.commit(k);
                  if (wait && off < n) throw new Error('DirectDumpReader: a first read larger than a part');
                }
              }
              this.bytes += n;
              this.onBytes?.(this.bytes);
              if (!wait) return true;
              this.waitingForUpload = true;
              wait.then(() => {
                this.waitingForUpload = false;
                if (!done) this.output.resume();
              }, (err: unknown) => this.stop?.(err as Error));
              return false;
            } catch (err) {
              this.stop?.(err as Error);
              return false;
            }
          },
        );
        this.output.ended.then(() => this.verdict()).then(() => {
          if (this.checkMagic && this.bytes < CUSTOM_FORMAT_MAGIC.length) {
            throw new DumpError(`pg_dump exited 0 but wrote ${this.bytes} byte(s), not a dump`, { hint: 'Run PG_DUMP_BIN by hand to see what it does.' });
          }
          if (!done) {
            done = true;
            resolve();
          }
        }).catch((err: unknown) => this.stop?.(this.stopped ?? (err as Error)));
      });
      return await upload.finish();
    } catch (err) {
      await upload.abort(err);
      throw err;
    }
  }

  /** Checks the first bytes against the custom-format signature; false (and the upload failed) if they differ. */
  private headOk(data: Buffer): boolean {
    if (!this.checkMagic || this.head.length >= CUSTOM_FORMAT_MAGIC.length) return true;
    this.head = Buffer.concat([this.head, data.subarray(0, CUSTOM_FORMAT_MAGIC.length - this.head.length)]);
    if (CUSTOM_FORMAT_MAGIC.subarray(0, this.head.length).equals(this.head)) return true;
    this.destroy(badMagic(this.head));
    return false;
  }
}

function badMagic(head: Buffer): DumpError {
  return new DumpError(`pg_dump's output does not start with the custom-format signature PGDMP (got ${JSON.stringify(head.toString('latin1'))})`, {
    hint: 'PG_DUMP_BIN must be pg_dump itself; the backup runs it with --format=custom.',
  });
}
