/**
 * The engine's uploader hashes each byte once for integrity and stays out of pg_dump's way
 * (issue 14): checked through streamToS3 against the bench's null S3 endpoint over HTTPS, which
 * records what every request declared and verifies it.
 */
import { S3Client, GetObjectCommand, HeadObjectCommand, ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNullS3Bucket, type NullS3Bucket } from '../../../bench/local-s3.ts';
import type { NullS3 } from '../../../bench/null-s3.ts';
import { streamToS3 } from '../../../engine/store/stream-upload.ts';
import { startTool, startToolDirect, type SpawnFn } from '../../../engine/pg/process.ts';

const MiB = 1024 * 1024;

describe('streamToS3 over HTTPS (null endpoint, checksums verified)', () => {
  let ep: NullS3;
  let s3: S3Client;
  let endpoint: NullS3Bucket | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'pgs3b-multipart-'));
  beforeAll(async () => {
    endpoint = await startNullS3Bucket('b', { verify: true, keepPrefixes: ['kept/'] });
    ({ ep, s3 } = endpoint);
  });
  afterAll(async () => {
    await endpoint?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A file that starts like a custom-format dump, streamed by `cat` as pg_dump would be. */
  const dumpFile = (name: string, bytes: number) => {
    const data = Buffer.alloc(bytes);
    for (let i = 0; i < bytes; i++) data[i] = (i * 2654435761) >>> 24;
    data.write('PGDMP', 0);
    const path = join(dir, name);
    writeFileSync(path, data);
    return { path, data };
  };
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  const cat = (path: string) => startTool(spawn as SpawnFn, { file: 'cat', args: [] }, [path], { env });

  it('hashes each byte twice, not three times: the part SHA-256 is both the S3 checksum and the signed payload hash', async () => {
    const { path, data } = dumpFile('three-parts.dump', 2 * 5 * MiB + 1234);
    const before = structuredClone(ep.stats());
    const res = await streamToS3({ s3, bucket: 'b', key: 'kept/three.dump', tool: cat(path), partSize: 5 * MiB, queueSize: 2 });
    const after = ep.stats();
    expect(res.bytes).toBe(data.length);
    expect(res.sha256).toBe(createHash('sha256').update(data).digest('hex'));
    // Three parts, each with a SHA-256 checksum and a signed payload hash, both verified by the endpoint.
    const delta = (a: Record<string, number>, b: Record<string, number>, k: string) => (a[k] ?? 0) - (b[k] ?? 0);
    expect(delta(after.requests, before.requests, 'UploadPart')).toBe(3);
    expect(delta(after.bodyChecksums, before.bodyChecksums, 'sha256')).toBe(3);
    expect(delta(after.payloadHash, before.payloadHash, 'sha256-hex')).toBe(3);
    expect(after.checksumsVerified - before.checksumsVerified).toBeGreaterThanOrEqual(6);
    expect(after.checksumMismatches).toBe(0);
    const got = await s3.send(new GetObjectCommand({ Bucket: 'b', Key: 'kept/three.dump' }));
    expect(Buffer.from(await got.Body!.transformToByteArray()).equals(data)).toBe(true);
  });

  it('runs SHA-256 over 2 × the dump, not 3 × (the signer never hashes a body)', async () => {
    const { path, data } = dumpFile('count.dump', 3 * 5 * MiB + 99);
    // Counted in this process: the endpoint's own verification would hash too, so it is off.
    await fetch(`${ep.http}/__null/verify?on=0`, { method: 'POST' });
    const proto = Object.getPrototypeOf(createHash('sha256')) as { update: (d: Buffer | string, ...rest: unknown[]) => unknown };
    const original = proto.update;
    let hashed = 0;
    proto.update = function (this: unknown, d: Buffer | string, ...rest: unknown[]) {
      hashed += typeof d === 'string' ? Buffer.byteLength(d) : d.length;
      return original.call(this, d, ...rest);
    };
    let sha256: string;
    try {
      sha256 = (await streamToS3({ s3, bucket: 'b', key: 'count.dump', tool: cat(path), partSize: 5 * MiB, queueSize: 2 })).sha256;
    } finally {
      proto.update = original;
      await fetch(`${ep.http}/__null/verify?on=1`, { method: 'POST' });
    }
    expect(sha256).toBe(createHash('sha256').update(data).digest('hex'));
    expect(hashed).toBeGreaterThanOrEqual(2 * data.length);
    expect(hashed).toBeLessThan(2 * data.length + 64 * 1024);
  });

  it('keeps one connection alive across the parts: no `Expect: 100-continue` (the SDK opens a new TLS connection per such request)', async () => {
    // A client built like the engine's: the SDK's own keep-alive agent (no Agent instance given).
    // Plain HTTP: the agent the SDK makes for `Expect: 100-continue` requests would not trust the
    // endpoint's certificate (it takes none of the configured agent's options); the connection
    // handling is the same for both protocols.
    const engineLike = new S3Client({
      endpoint: ep.http,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });
    try {
      const { path, data } = dumpFile('keep-alive.dump', 4 * 5 * MiB + 7);
      const before = structuredClone(ep.stats());
      const res = await streamToS3({ s3: engineLike, bucket: 'b', key: 'keep-alive.dump', tool: cat(path), partSize: 5 * MiB, queueSize: 2 });
      const after = ep.stats();
      expect(res.sha256).toBe(createHash('sha256').update(data).digest('hex'));
      expect((after.requests.UploadPart ?? 0) - (before.requests.UploadPart ?? 0)).toBe(5);
      // Create, 5 parts (2 in flight at most), Complete: 2 connections, not one per part.
      expect(after.connections - before.connections).toBeLessThanOrEqual(2);
      expect(after.expectContinue - before.expectContinue).toBe(0);
    } finally {
      engineLike.destroy();
    }
  });

  it('sends a dump smaller than a part in one PutObject whose SHA-256 (the manifest digest) S3 keeps', async () => {
    const { path, data } = dumpFile('small.dump', 4096);
    const res = await streamToS3({ s3, bucket: 'b', key: 'kept/small.dump', tool: cat(path), partSize: 5 * MiB });
    const sha = createHash('sha256').update(data).digest();
    expect(res.sha256).toBe(sha.toString('hex'));
    const head = await s3.send(new HeadObjectCommand({ Bucket: 'b', Key: 'kept/small.dump', ChecksumMode: 'ENABLED' }));
    expect(head.ChecksumSHA256).toBe(sha.toString('base64'));
  });

  it('aborts the multipart upload when the producer fails after some parts went up', async () => {
    const { path } = dumpFile('partial.dump', 12 * MiB);
    // `sh -c 'cat file; exit 3'`: the whole output, then a failure.
    const tool = startTool(spawn as SpawnFn, { file: 'sh', args: [] }, ['-c', `cat "${path}"; exit 3`], { env });
    await expect(streamToS3({ s3, bucket: 'b', key: 'kept/partial.dump', tool, partSize: 5 * MiB })).rejects.toMatchObject({ stage: 'dump' });
    const ups = await s3.send(new ListMultipartUploadsCommand({ Bucket: 'b', Prefix: 'kept/partial' }));
    expect(ups.Uploads ?? []).toHaveLength(0);
    await expect(s3.send(new HeadObjectCommand({ Bucket: 'b', Key: 'kept/partial.dump' }))).rejects.toMatchObject({ name: 'NotFound' });
  });

  describe('stdout read straight into the part buffers (startToolDirect, as the engine starts pg_dump)', () => {
    const catDirect = (path: string) => startToolDirect(spawn as SpawnFn, { file: 'cat', args: [] }, [path], { env });

    it('copies no chunk: every read lands in the part being filled, pausing while the one slot is busy', async () => {
      const { path, data } = dumpFile('direct.dump', 4 * 5 * MiB + 4321);
      const tool = await catDirect(path);
      expect(tool.child.stdout).toBeNull();
      expect(tool.output).toBeDefined();
      const proto = Buffer.prototype as { copy: (...a: unknown[]) => number };
      const original = proto.copy;
      let copied = 0;
      proto.copy = function (this: Buffer, ...a: unknown[]) {
        const n = original.apply(this, a);
        copied += n;
        return n;
      };
      let res;
      try {
        res = await streamToS3({ s3, bucket: 'b', key: 'kept/direct.dump', tool, partSize: 5 * MiB, queueSize: 1 });
      } finally {
        proto.copy = original;
      }
      expect(res.bytes).toBe(data.length);
      expect(res.parts).toBe(5);
      expect(res.sha256).toBe(createHash('sha256').update(data).digest('hex'));
      // At most the first read (before the reader took over) is copied; the pipe path copies it all.
      expect(copied).toBeLessThanOrEqual(64 * 1024);
      const got = await s3.send(new GetObjectCommand({ Bucket: 'b', Key: 'kept/direct.dump' }));
      expect(Buffer.from(await got.Body!.transformToByteArray()).equals(data)).toBe(true);
    });

    it('sends a small dump in one PutObject', async () => {
      const { path, data } = dumpFile('direct-small.dump', 3000);
      const res = await streamToS3({ s3, bucket: 'b', key: 'kept/direct-small.dump', tool: await catDirect(path), partSize: 5 * MiB });
      expect(res).toMatchObject({ bytes: data.length, parts: 1, sha256: createHash('sha256').update(data).digest('hex') });
    });

    it('aborts the multipart upload when the producer fails after some parts went up', async () => {
      const { path } = dumpFile('direct-partial.dump', 12 * MiB);
      const tool = await startToolDirect(spawn as SpawnFn, { file: 'sh', args: [] }, ['-c', `cat "${path}"; exit 3`], { env });
      await expect(streamToS3({ s3, bucket: 'b', key: 'kept/direct-partial.dump', tool, partSize: 5 * MiB })).rejects.toMatchObject({ stage: 'dump' });
      const ups = await s3.send(new ListMultipartUploadsCommand({ Bucket: 'b', Prefix: 'kept/direct-partial' }));
      expect(ups.Uploads ?? []).toHaveLength(0);
      await expect(s3.send(new HeadObjectCommand({ Bucket: 'b', Key: 'kept/direct-partial.dump' }))).rejects.toMatchObject({ name: 'NotFound' });
    });

    it('stops the tool and uploads nothing when the output is not a custom-format dump', async () => {
      const path = join(dir, 'not-a-dump.sql');
      writeFileSync(path, Buffer.alloc(6 * MiB, 'x'));
      const tool = await catDirect(path);
      await expect(streamToS3({ s3, bucket: 'b', key: 'kept/not-a-dump', tool, partSize: 5 * MiB })).rejects.toThrow(/custom-format signature PGDMP \(got "xxxxx"\)/);
      const ups = await s3.send(new ListMultipartUploadsCommand({ Bucket: 'b', Prefix: 'kept/not-a-dump' }));
      expect(ups.Uploads ?? []).toHaveLength(0);
      await expect(s3.send(new HeadObjectCommand({ Bucket: 'b', Key: 'kept/not-a-dump' }))).rejects.toMatchObject({ name: 'NotFound' });
    });
  });
});
