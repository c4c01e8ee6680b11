/**
 * The store capability table and the part sizing at the stores' limits (pure), the run id in keys,
 * which errors count as a store refusing a feature, and STORAGE_PROFILE / STORAGE_MAX_PARTS.
 */
import { ignoreEvents } from '../../../engine/events.ts';
import { describe, expect, it } from 'vitest';
import { choosePartSize, DUMP_TO_DATABASE_BOUND, MIN_STREAM_PART_SIZE, partSizeForDatabase } from '../../../engine/store/stream-upload.ts';
import { loadConfig } from '../../../engine/config.ts';
import { createDeps } from '../../../engine/deps.ts';
import { buildDumpKey, manifestKeyFor, parseKey } from '../../../engine/store/backup-key.ts';
import { MAX_DUMP_BYTES, maxDumpBytes, partSizeFor, PROFILE_CAPABILITIES, profileCapabilities, STORAGE_PROFILES } from '../../../engine/store/capabilities.ts';
import { isCapabilityRefusal } from '../../../engine/store/probe.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

describe('part sizing at the store limits', () => {
  it('a 1,000-part store: 8 MiB parts stop at 7.8 GiB of dump, the sizing never does', () => {
    const scw = PROFILE_CAPABILITIES.scaleway;
    // What the 10,000-part sizing chose for a 2 GiB database (dump bound 8 GiB): 8 MiB parts.
    expect(Math.ceil((2 * GiB * DUMP_TO_DATABASE_BOUND) / MIN_STREAM_PART_SIZE)).toBeGreaterThan(scw.maxParts);
    const size = partSizeForDatabase(2 * GiB, scw);
    expect(Math.ceil((2 * GiB * DUMP_TO_DATABASE_BOUND) / size)).toBeLessThanOrEqual(scw.maxParts * 0.9);
    // Unknown size: 200 GiB in 900 parts.
    expect(partSizeForDatabase(undefined, scw)).toBe(228 * MiB);
    expect(Math.ceil(MAX_DUMP_BYTES / partSizeForDatabase(undefined, scw))).toBeLessThanOrEqual(900);
  });

  it.each(STORAGE_PROFILES)('%s: every dump bound up to the largest object fits in the part cap, parts within the store\'s bounds', (profile) => {
    const caps = PROFILE_CAPABILITIES[profile];
    // The largest dump a part of the largest size can hold in 90 % of the cap.
    const largest = Math.min(caps.maxObjectBytes, Math.floor(caps.maxPartBytes / MiB) * MiB * Math.floor(caps.maxParts * 0.9));
    for (let bound = 1; bound <= largest; bound = Math.ceil(bound * 1.7)) {
      const size = partSizeFor(bound, caps);
      expect(size % MiB).toBe(0);
      expect(size).toBeGreaterThanOrEqual(caps.minPartBytes);
      expect(size).toBeLessThanOrEqual(caps.maxPartBytes);
      expect(Math.ceil(bound / size)).toBeLessThanOrEqual(Math.floor(caps.maxParts * 0.9));
    }
    // At exactly the edge.
    expect(Math.ceil(largest / partSizeFor(largest, caps))).toBeLessThanOrEqual(Math.floor(caps.maxParts * 0.9));
    // Beyond what parts of the largest size can hold: the largest part (the uploader then fails closed at the cap).
    const beyond = 2 * caps.maxPartBytes * caps.maxParts;
    expect(partSizeFor(beyond, caps)).toBe(Math.floor(caps.maxPartBytes / MiB) * MiB);
  });

  it('the cap of 1 part and STORAGE_MAX_PARTS', () => {
    expect(partSizeFor(100 * MiB, { maxParts: 1, minPartBytes: 5 * MiB, maxPartBytes: 5 * GiB })).toBe(100 * MiB);
    expect(profileCapabilities('ceph', 500).maxParts).toBe(500);
    expect(maxDumpBytes(8 * MiB, PROFILE_CAPABILITIES.scaleway)).toBe(8000 * MiB);
  });

  it('AWS unchanged: 8 MiB up to ~17 GiB of database, then growing; 23 MiB for an unknown size', () => {
    expect(partSizeForDatabase(1 * GiB)).toBe(MIN_STREAM_PART_SIZE);
    expect(partSizeForDatabase(17 * GiB)).toBe(MIN_STREAM_PART_SIZE);
    expect(partSizeForDatabase(100 * GiB)).toBe(46 * MiB);
    expect(partSizeForDatabase(undefined)).toBe(23 * MiB);
  });

  it('a requested part size is kept while the dump fits the cap with it, else replaced by the sizing', () => {
    const scw3 = { ...PROFILE_CAPABILITIES.scaleway, maxParts: 3 };
    expect(choosePartSize(5 * MiB, 1 * MiB, scw3)).toBe(5 * MiB); // 4 MiB bound in 2 usable parts
    expect(choosePartSize(5 * MiB, 20 * MiB, scw3)).toBe(40 * MiB); // 80 MiB bound in 2 parts
    expect(choosePartSize(5 * MiB, undefined, scw3)).toBe(5 * MiB); // size unknown: as asked
    expect(choosePartSize(undefined, 2 * GiB, PROFILE_CAPABILITIES.scaleway)).toBe(partSizeForDatabase(2 * GiB, PROFILE_CAPABILITIES.scaleway));
    expect(choosePartSize(5 * MiB, 8 * GiB, PROFILE_CAPABILITIES.aws)).toBe(5 * MiB); // 32 GiB in 9,000 parts of 5 MiB: fits
  });
});

describe('keys with a run id (stores without conditional writes)', () => {
  const at = new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 6));
  it('round-trips, for a manifest too, and never collides with the plain key', () => {
    const key = buildDumpKey('p/', 'my-db', at, 'deadbeef');
    expect(key).toBe('p/my-db/2026/01/02/my-db-20260102T030405006Z-deadbeef.dump');
    expect(parseKey('p/', key)).toEqual({ database: 'my-db', startedAt: at, kind: 'dump', dumpKey: key, runId: 'deadbeef' });
    expect(parseKey('p/', manifestKeyFor(key))).toMatchObject({ kind: 'manifest', dumpKey: key, runId: 'deadbeef' });
    expect(parseKey('p/', buildDumpKey('p/', 'my-db', at))).toEqual({ database: 'my-db', startedAt: at, kind: 'dump', dumpKey: buildDumpKey('p/', 'my-db', at) });
    expect(key).not.toBe(buildDumpKey('p/', 'my-db', at));
  });
  it('refuses anything but 8 lowercase hex digits', () => {
    expect(() => buildDumpKey('p/', 'db', at, 'DEADBEEF')).toThrow(RangeError);
    expect(() => buildDumpKey('p/', 'db', at, '../x')).toThrow(RangeError);
    expect(parseKey('p/', 'p/db/2026/01/02/db-20260102T030405006Z-deadbee.dump')).toBeUndefined();
  });
});

describe('a store refusing a feature, told from other failures', () => {
  const err = (name: string, status: number, message = '') => Object.assign(new Error(message), { name, $metadata: { httpStatusCode: status } });
  it.each([
    ['B2: If-None-Match', err('NotImplemented', 501, 'A header you provided implies functionality that is not implemented'), true],
    ['B2: checksum header', err('InvalidArgument', 400, "Unsupported header 'x-amz-checksum-sha256' received for this API call."), true],
    ['wrapped as the cause of an upload error', new Error('upload failed', { cause: err('NotImplemented', 501) }), true],
    ['412: a conditional write working', err('PreconditionFailed', 412), false],
    ['403', err('AccessDenied', 403, 'Access Denied'), false],
    ['Scaleway part cap (not a header: not probed)', err('InvalidArgument', 400, 'Part number must be an integer between 1 and 1000, inclusive'), false],
    ['503', err('ServiceUnavailable', 503), false],
  ])('%s', (_, e, expected) => {
    expect(isCapabilityRefusal(e)).toBe(expected);
  });
});

describe('the S3 client of a store without checksum headers', () => {
  it('sends and asks for only the checksums S3\'s API requires for b2, gcs, scaleway, ceph and an unknown store (unset, auto); the SDK default for aws, r2, minio', async () => {
    for (const profile of ['b2', 'gcs', 'scaleway', 'ceph', 'auto', undefined] as const) {
      const { config } = createDeps({ forcePathStyle: true, storageProfile: profile }, { events: ignoreEvents }).s3;
      expect([await config.requestChecksumCalculation(), await config.responseChecksumValidation()]).toEqual(['WHEN_REQUIRED', 'WHEN_REQUIRED']);
    }
    for (const profile of ['aws', 'r2', 'minio'] as const) {
      const { config } = createDeps({ forcePathStyle: true, storageProfile: profile }, { events: ignoreEvents }).s3;
      expect([await config.requestChecksumCalculation(), await config.responseChecksumValidation()]).toEqual(['WHEN_SUPPORTED', 'WHEN_SUPPORTED']);
    }
  });
});

describe('STORAGE_PROFILE and STORAGE_MAX_PARTS', () => {
  const base = { DB_SECRET_ID: 's', BACKUP_BUCKET: 'my-backups' };
  it('unset by default; a store name, or auto', () => {
    expect(loadConfig(base)).toMatchObject({ storageProfile: undefined, storageMaxParts: undefined });
    expect(loadConfig({ ...base, STORAGE_PROFILE: 'b2', STORAGE_MAX_PARTS: '1000' })).toMatchObject({ storageProfile: 'b2', storageMaxParts: 1000 });
    expect(loadConfig({ ...base, STORAGE_PROFILE: ' auto ' }).storageProfile).toBe('auto');
  });
  it('names the variable and the values for anything else', () => {
    expect(() => loadConfig({ ...base, STORAGE_PROFILE: 'backblaze', STORAGE_MAX_PARTS: '20000' })).toThrow(
      /STORAGE_PROFILE must be one of aws, gcs, r2, b2, minio, scaleway, ceph, auto; got "backblaze"\nSTORAGE_MAX_PARTS must be a whole number from 1 to 10000/,
    );
  });
});
