/**
 * How the capabilities of a run are resolved, against an in-memory store whose answers are chosen
 * per test: a profile never probes, `auto` probes once and caches (memory and object), a cache
 * older than CAPABILITIES_MAX_AGE_MS is probed again, unset assumes S3 unless a fresh cache says
 * otherwise, a forced probe replaces the cache, and a probe that fails otherwise than by a
 * refusal gives the safe side without caching.
 */
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CAPABILITIES_MAX_AGE_MS, capabilitiesKey, resolveCapabilities } from '../../../engine/store/probe.ts';
import type { S3Store } from '../../../engine/store/s3-store.ts';

type Behaviour = 'honour' | 'refuse' | 'ignore' | 'down';

/** A bucket in memory: If-None-Match honoured, refused (501) or ignored; SHA-256 headers taken or refused (400). */
function fakeStore(conditional: Behaviour, checksum: boolean) {
  const objects = new Map<string, string>();
  const calls: string[] = [];
  const error = (name: string, status: number, message = name) => Object.assign(new Error(message), { name, $metadata: { httpStatusCode: status } });
  const send = async (command: unknown) => {
    if (conditional === 'down') throw error('TimeoutError', 0, 'socket timed out');
    if (command instanceof PutObjectCommand) {
      const i = command.input;
      calls.push(`put ${i.Key}`);
      if (i.IfNoneMatch && conditional === 'refuse') throw error('NotImplemented', 501, 'A header you provided implies functionality that is not implemented');
      if (i.ChecksumSHA256 && !checksum) throw error('InvalidArgument', 400, "Unsupported header 'x-amz-checksum-sha256' received for this API call.");
      if (i.IfNoneMatch && conditional === 'honour' && objects.has(i.Key!)) throw error('PreconditionFailed', 412);
      objects.set(i.Key!, String(i.Body));
      return { ETag: '"e"' };
    }
    if (command instanceof GetObjectCommand) {
      calls.push(`get ${command.input.Key}`);
      const body = objects.get(command.input.Key!);
      if (body === undefined) throw error('NoSuchKey', 404);
      return { Body: { transformToString: async () => body } };
    }
    if (command instanceof ListObjectsV2Command) {
      calls.push(`list ${command.input.Prefix}`);
      return { Contents: [...objects.keys()].filter((k) => k.startsWith(command.input.Prefix!)).map((Key) => ({ Key })) };
    }
    if (command instanceof DeleteObjectCommand) {
      calls.push(`delete ${command.input.Key}`);
      objects.delete(command.input.Key!);
      return {};
    }
    throw new Error('unexpected command');
  };
  // A fresh prefix per store: the in-memory cache is per bucket and prefix.
  const store: S3Store = { s3: { send } as unknown as S3Client, bucket: 'b', prefix: `p${randomBytes(4).toString('hex')}/` };
  return { store, objects, calls };
}

const now = new Date('2026-06-01T00:00:00Z');
const later = (ms: number) => new Date(now.getTime() + ms);
const base = { maxParts: undefined };

describe('resolveCapabilities', () => {
  it('a store profile: its table, no request at all', async () => {
    const f = fakeStore('refuse', false);
    const caps = await resolveCapabilities(f.store, { ...base, profile: 'b2', now });
    expect(caps).toMatchObject({ profile: 'b2', source: 'profile', conditionalWrites: false, checksumSha256: false, maxParts: 10_000 });
    expect(f.calls).toEqual([]);
    expect((await resolveCapabilities(f.store, { profile: 'scaleway', maxParts: 500, now })).maxParts).toBe(500);
  });

  it('auto: probes once (objects removed, cache written), then memory; a week later, probes again', async () => {
    const f = fakeStore('ignore', true);
    const first = await resolveCapabilities(f.store, { ...base, profile: 'auto', now });
    expect(first).toMatchObject({ source: 'probe', conditionalWrites: false, checksumSha256: true, maxParts: 10_000, probedAt: now.toISOString() });
    expect([...f.objects.keys()]).toEqual([capabilitiesKey(f.store.prefix)]);
    expect(JSON.parse(f.objects.get(capabilitiesKey(f.store.prefix))!)).toMatchObject({ conditionalMode: 'ignored', checksumSha256: true });
    f.calls.length = 0;
    expect(await resolveCapabilities(f.store, { ...base, profile: 'auto', now: later(3600_000) })).toBe(first);
    expect(f.calls).toEqual([]);
    const stale = await resolveCapabilities(f.store, { ...base, profile: 'auto', now: later(CAPABILITIES_MAX_AGE_MS + 1) });
    expect(stale).toMatchObject({ source: 'probe', probedAt: later(CAPABILITIES_MAX_AGE_MS + 1).toISOString() });
    expect(f.calls.filter((c) => c.startsWith('put ') && c.includes('/_check/probe-')).length).toBeGreaterThan(0);
  });

  it('unset: S3\'s table while there is no cache; a fresh cache (another process\'s probe) is used; a forced probe replaces it', async () => {
    const f = fakeStore('refuse', false);
    expect(await resolveCapabilities(f.store, { ...base, profile: undefined, now })).toMatchObject({ source: 'default', conditionalWrites: true, checksumSha256: true });
    // No GetObject of a missing key (a 403 under the least-privilege policy): listed first.
    expect(f.calls).toEqual([`list ${capabilitiesKey(f.store.prefix)}`]);
    const forced = await resolveCapabilities(f.store, { ...base, profile: undefined, now, force: true });
    expect(forced).toMatchObject({ source: 'probe', conditionalWrites: false, checksumSha256: false });
    expect(JSON.parse(f.objects.get(capabilitiesKey(f.store.prefix))!)).toMatchObject({ conditionalMode: 'refused' });
    // Another process (an empty memory): reads the object.
    const other = fakeStore('refuse', false);
    other.objects.set(capabilitiesKey(other.store.prefix), f.objects.get(capabilitiesKey(f.store.prefix))!);
    expect(await resolveCapabilities(other.store, { ...base, profile: undefined, now: later(1000) })).toMatchObject({ source: 'cache', conditionalWrites: false, checksumSha256: false });
    // Stale: back to S3's table (the next refusal probes again).
    const third = fakeStore('refuse', false);
    third.objects.set(capabilitiesKey(third.store.prefix), f.objects.get(capabilitiesKey(f.store.prefix))!);
    expect(await resolveCapabilities(third.store, { ...base, profile: undefined, now: later(CAPABILITIES_MAX_AGE_MS + 1) })).toMatchObject({ source: 'default' });
  });

  it('a store honouring everything: conditional writes and checksums found', async () => {
    const f = fakeStore('honour', true);
    expect(await resolveCapabilities(f.store, { ...base, profile: 'auto', now })).toMatchObject({ conditionalWrites: true, checksumSha256: true });
    expect(JSON.parse(f.objects.get(capabilitiesKey(f.store.prefix))!)).toMatchObject({ conditionalMode: 'honoured' });
  });

  it('a probe that fails otherwise than by a refusal: the fallbacks for this run, nothing cached', async () => {
    const f = fakeStore('down', true);
    const events: string[] = [];
    const caps = await resolveCapabilities(f.store, { ...base, profile: 'auto', now, onEvent: (m) => events.push(m) });
    expect(caps).toMatchObject({ conditionalWrites: false, checksumSha256: false, probedAt: undefined });
    expect(events).toEqual([expect.stringMatching(/probe failed/)]);
    expect(f.objects.size).toBe(0);
  });
});
