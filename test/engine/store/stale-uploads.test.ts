/**
 * Stale multipart uploads are aged with S3's clock: the `Initiated` time against the `Date`
 * header of the listing's own response, never the local clock. A stub S3 endpoint answers the
 * listing with a chosen Date and records the aborts.
 */
import { S3Client } from '@aws-sdk/client-s3';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { abortStaleUploads } from '../../../engine/store/stale-uploads.ts';

const uploads = [
  { key: 'p/app/2020/01/01/app-old.dump', id: 'old-upload', initiated: '2026-01-01T00:00:00.000Z' },
  { key: 'p/app/2020/01/01/app-new.dump', id: 'new-upload', initiated: '2026-01-01T23:30:00.000Z' },
];

describe('abortStaleUploads', () => {
  let server: Server;
  let s3: S3Client;
  let serverDate = '';
  const aborted: string[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (req.method === 'DELETE') {
        aborted.push(url.searchParams.get('uploadId') ?? '');
        res.writeHead(204, { date: serverDate }).end();
        return;
      }
      const body = `<?xml version="1.0" encoding="UTF-8"?><ListMultipartUploadsResult><Bucket>b</Bucket><IsTruncated>false</IsTruncated>${uploads
        .map((u) => `<Upload><Key>${u.key}</Key><UploadId>${u.id}</UploadId><Initiated>${u.initiated}</Initiated></Upload>`)
        .join('')}</ListMultipartUploadsResult>`;
      res.writeHead(200, { 'content-type': 'application/xml', date: serverDate }).end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    s3 = new S3Client({ region: 'us-east-1', endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, forcePathStyle: true, credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it("ages uploads by S3's Date header, whatever the local clock says", async () => {
    // S3 says it is 2026-01-02 12:00: the first upload is 36 h old, the second 12.5 h.
    serverDate = new Date('2026-01-02T12:00:00.000Z').toUTCString();
    aborted.length = 0;
    const res = await abortStaleUploads({ s3, bucket: 'b', prefix: 'p/' }, { minAgeMs: 24 * 3600_000 });
    expect(res.aborted.map((u) => u.uploadId)).toEqual(['old-upload']);
    expect(res.aborted[0]!.ageSeconds).toBe(36 * 3600);
    expect(res.kept).toBe(1);
    expect(aborted).toEqual(['old-upload']);
  });

  it('dry run only reports; an upload younger than the limit is kept', async () => {
    serverDate = new Date('2026-01-02T00:30:00.000Z').toUTCString();
    aborted.length = 0;
    const dry = await abortStaleUploads({ s3, bucket: 'b', prefix: 'p/' }, { minAgeMs: 2 * 3600_000, dryRun: true });
    expect(dry.aborted.map((u) => u.uploadId)).toEqual(['old-upload']);
    expect(aborted).toEqual([]);
    // By S3's clock the older one is 24.5 h old: under a 2-day limit, both stay.
    const none = await abortStaleUploads({ s3, bucket: 'b', prefix: 'p/' }, { minAgeMs: 48 * 3600_000 });
    expect(none.aborted).toEqual([]);
    expect(none.kept).toBe(2);
  });
});
