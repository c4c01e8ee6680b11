import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DumpError } from '../../../engine/errors.ts';
import { DumpGate } from '../../../engine/pg/dump-gate.ts';

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
