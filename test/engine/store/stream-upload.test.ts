import { describe, expect, it } from 'vitest';
import { DUMP_TO_DATABASE_BOUND, MAX_DUMP_BYTES, MIN_STREAM_PART_SIZE, partSizeFor, partSizeForDatabase, S3_MAX_PARTS, S3_MIN_PART_SIZE } from '../../../engine/store/stream-upload.ts';

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
