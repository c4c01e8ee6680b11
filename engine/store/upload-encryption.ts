/**
 * Encryption on the way to the store (ENCRYPT_RECIPIENTS): the gate's checked plaintext is
 * encrypted to the age recipients before the uploader, so what the store receives (and the
 * uploader hashes) is the age file, while the gate keeps the plaintext's count and SHA-256 for the
 * manifest. The gate still holds back the end until the tool succeeded: a failed dump never gets
 * age's final chunk, and the upload is aborted as without encryption.
 */
import type { Readable } from 'node:stream';
import { encryptStream } from '../encryption.ts';
import type { DumpGate } from '../pg/dump-gate.ts';

export class UploadEncryption {
  /** The age stream the uploader reads, once started. */
  private stream: Readable | undefined;

  constructor(private readonly recipients: readonly string[] | undefined) {}

  /** Whether the upload is encrypted (then the tool's output goes through the gate, a stream). */
  get active(): boolean {
    return (this.recipients?.length ?? 0) > 0;
  }

  /** The age stream over the gate; its errors go to `onError`. */
  async start(gate: DumpGate, onError: (err: Error) => void): Promise<Readable> {
    this.stream = await encryptStream(gate, this.recipients!);
    this.stream.on('error', onError);
    return this.stream;
  }

  destroy(err: Error): void {
    this.stream?.destroy(err);
  }

  /** The tool's output before encryption, as the gate counted and hashed it. */
  plaintext(gate: DumpGate | undefined): { readonly bytes: number; readonly sha256: string } | undefined {
    return this.active && gate ? { bytes: gate.bytes, sha256: gate.digest() } : undefined;
  }
}
