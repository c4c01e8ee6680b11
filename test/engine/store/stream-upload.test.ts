import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DumpError } from '../../../engine/errors.ts';
import { DUMP_TO_DATABASE_BOUND, DumpGate, MAX_DUMP_BYTES, MIN_STREAM_PART_SIZE, partSizeFor, partSizeForDatabase, S3_MAX_PARTS, S3_MIN_PART_SIZE } from '../../../engine/store/stream-upload.ts';

describe('part size', () => {
  it('fits a 200 GiB dump under 10,000 parts, in whole MiB, never under 5 MiB', () => {
    const size = partSizeFor();
    expect(size % (1024 * 1024)).toBe(0);
    expect(Math.ceil(MAX_DUMP_BYTES / size)).toBeLessThan(S3_MAX_PARTS);
    expect(size).toBeLessThanOrEqual(32 * 1024 * 1024);
    expect(partSizeFor(1024)).toBe(S3_MIN_PART_SIZE);
  });

  it('keeps parts at 8 MiB for ordinary databases, and grows them only as the 10,000-part cap needs', () => {
    const GiB = 1024 ** 3;
    expect(partSizeForDatabase(1 * GiB)).toBe(MIN_STREAM_PART_SIZE);
    expect(partSizeForDatabase(4 * GiB)).toBe(MIN_STREAM_PART_SIZE);
    for (const db of [20, 50, 100, 200, 500].map((g) => g * GiB)) {
      const size = partSizeForDatabase(db);
      // A dump up to DUMP_TO_DATABASE_BOUND × the database fits in S3's part cap.
      expect(Math.ceil((db * DUMP_TO_DATABASE_BOUND) / size)).toBeLessThan(S3_MAX_PARTS);
      expect(size).toBeGreaterThan(MIN_STREAM_PART_SIZE);
    }
    // Unknown size: sized for the largest dump the engine promises.
    expect(partSizeForDatabase(undefined)).toBe(partSizeFor(MAX_DUMP_BYTES));
  });
});

async function drain(gate: DumpGate, chunks: Buffer[]): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(Readable.from(chunks), gate, async (source: AsyncIterable<Buffer>) => {
    for await (const c of source) out.push(c);
  });
  return Buffer.concat(out);
}

describe('DumpGate', () => {
  it('passes bytes through, counts and hashes them, ends only after a good verdict', async () => {
    const chunks = [Buffer.from('PG'), Buffer.from('DMP'), Buffer.alloc(1000, 7)];
    let verdictAsked = false;
    const gate = new DumpGate(async () => {
      verdictAsked = true;
    });
    const out = await drain(gate, chunks);
    expect(verdictAsked).toBe(true);
    expect(out.equals(Buffer.concat(chunks))).toBe(true);
    expect(gate.bytes).toBe(1005);
    expect(gate.digest()).toBe(createHash('sha256').update(Buffer.concat(chunks)).digest('hex'));
  });
  it('errors instead of ending when the verdict fails', async () => {
    const gate = new DumpGate(async () => {
      throw new DumpError('exit 1');
    });
    await expect(drain(gate, [Buffer.from('PGDMP...')])).rejects.toThrow('exit 1');
  });
  it('errors at once on output that does not start with PGDMP', async () => {
    await expect(drain(new DumpGate(async () => {}), [Buffer.from('P'), Buffer.from('Gxxxx')])).rejects.toThrow(/custom-format signature/);
  });
  it('errors on an empty output even with a good verdict', async () => {
    await expect(drain(new DumpGate(async () => {}), [])).rejects.toThrow(/wrote 0 byte/);
  });
});
