/**
 * The bench's null S3 endpoint (bench/null-s3.ts): its pure parsers, and the S3 calls the engine,
 * the bench and restore make, through the real SDK over HTTPS with its self-signed certificate.
 */
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNullS3Bucket, type NullS3Bucket } from '../../bench/local-s3.ts';
import { AwsChunkedDecoder, compositeChecksum, parseRange, xmlValues, type NullS3 } from '../../bench/null-s3.ts';
import { uploadMultipart } from '../../engine/store/multipart.ts';

describe('null S3 endpoint: parsers', () => {
  it('decodes aws-chunked bodies in any chunking, trailers included', () => {
    const body = Buffer.from('5;chunk-signature=abc\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n');
    for (const step of [1, 3, 7, body.length]) {
      const got: Buffer[] = [];
      const d = new AwsChunkedDecoder((s) => got.push(Buffer.from(s)));
      for (let i = 0; i < body.length; i += step) d.push(body.subarray(i, i + step));
      expect(Buffer.concat(got).toString()).toBe('hello world');
      expect(d.trailers).toEqual({ 'x-amz-checksum-crc32': 'AAAAAA==' });
      expect(d.done).toBe(true);
    }
  });

  it('parses ranges as S3 does', () => {
    expect(parseRange('bytes=0-9', 100)).toEqual([0, 9]);
    expect(parseRange('bytes=90-', 100)).toEqual([90, 99]);
    expect(parseRange('bytes=-10', 100)).toEqual([90, 99]);
    expect(parseRange('bytes=95-200', 100)).toEqual([95, 99]);
    expect(parseRange('bytes=100-', 100)).toBeUndefined();
    expect(parseRange('lines=1-2', 100)).toBeUndefined();
  });

  it('computes the composite checksum of parts and reads XML values', () => {
    const d1 = createHash('sha256').update('a').digest();
    const d2 = createHash('sha256').update('b').digest();
    expect(compositeChecksum('sha256', [d1.toString('base64'), d2.toString('base64')])).toBe(`${createHash('sha256').update(Buffer.concat([d1, d2])).digest('base64')}-2`);
    expect(xmlValues('<a><Key>x&amp;y</Key><Key>z</Key></a>', 'Key')).toEqual(['x&y', 'z']);
  });
});

describe('null S3 endpoint: the SDK over HTTPS', () => {
  let ep: NullS3;
  let s3: S3Client;
  let endpoint: NullS3Bucket | undefined;
  beforeAll(async () => {
    endpoint = await startNullS3Bucket('b', { verify: true, keepPrefixes: ['kept/'] });
    ({ ep, s3 } = endpoint);
  });
  afterAll(() => endpoint?.close());

  it('keeps small objects, lists with a delimiter and pages, deletes', async () => {
    for (const k of ['p/a.json', 'p/b.json', 'p/sub/c.json', 'q/d.json']) await s3.send(new PutObjectCommand({ Bucket: 'b', Key: k, Body: `{"k":"${k}"}` }));
    const got = await s3.send(new GetObjectCommand({ Bucket: 'b', Key: 'p/a.json' }));
    expect(await got.Body!.transformToString()).toBe('{"k":"p/a.json"}');
    const page1 = await s3.send(new ListObjectsV2Command({ Bucket: 'b', Prefix: 'p/', Delimiter: '/', MaxKeys: 2 }));
    expect(page1.Contents?.map((o) => o.Key)).toEqual(['p/a.json', 'p/b.json']);
    expect(page1.IsTruncated).toBe(true);
    const page2 = await s3.send(new ListObjectsV2Command({ Bucket: 'b', Prefix: 'p/', Delimiter: '/', MaxKeys: 2, ContinuationToken: page1.NextContinuationToken }));
    expect(page2.CommonPrefixes?.map((p) => p.Prefix)).toEqual(['p/sub/']);
    expect(page2.IsTruncated).toBe(false);
    await s3.send(new DeleteObjectsCommand({ Bucket: 'b', Delete: { Objects: [{ Key: 'p/a.json' }, { Key: 'p/b.json' }, { Key: 'p/sub/c.json' }, { Key: 'q/d.json' }] } }));
    expect((await s3.send(new ListObjectsV2Command({ Bucket: 'b' }))).KeyCount).toBe(0);
  });

  it('takes a multipart upload, verifies every part checksum, and serves a kept object with ranges', async () => {
    const data = Buffer.alloc(11 * 1024 * 1024 + 5);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7919) & 0xff;
    const before = ep.stats().checksumsVerified;
    const r = await uploadMultipart(Readable.from([data.subarray(0, 3), data.subarray(3)]), { s3, bucket: 'b', key: 'kept/x.dump', partSize: 5 * 1024 * 1024, queueSize: 2, contentType: 'application/octet-stream' });
    expect(r).toMatchObject({ bytes: data.length, parts: 3, multipart: true, sha256: createHash('sha256').update(data).digest('hex') });
    expect(ep.stats().checksumsVerified - before).toBeGreaterThanOrEqual(3);
    const head = await s3.send(new HeadObjectCommand({ Bucket: 'b', Key: 'kept/x.dump' }));
    expect(head.ContentLength).toBe(data.length);
    const range = await s3.send(new GetObjectCommand({ Bucket: 'b', Key: 'kept/x.dump', Range: 'bytes=5242870-5242889' }));
    expect(Buffer.from(await range.Body!.transformToByteArray()).equals(data.subarray(5242870, 5242890))).toBe(true);
    const whole = await s3.send(new GetObjectCommand({ Bucket: 'b', Key: 'kept/x.dump' }));
    expect(Buffer.from(await whole.Body!.transformToByteArray()).equals(data)).toBe(true);
  });

  it('rejects a part whose bytes do not match its declared checksum', async () => {
    await expect(s3.send(new PutObjectCommand({ Bucket: 'b', Key: 'bad', Body: 'hello', ChecksumSHA256: createHash('sha256').update('other').digest('base64') }))).rejects.toMatchObject({ name: 'BadDigest' });
    expect(ep.stats().checksumMismatches).toBeGreaterThan(0);
  });
});
