/**
 * SDK clients of the bench's local S3 endpoints (the null endpoint, moto): path-style, the bench's
 * fixed credentials, and over HTTPS the null endpoint's self-signed certificate trusted.
 */
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { readFileSync } from 'node:fs';
import { Agent as HttpsAgent } from 'node:https';
import { startNullS3, type NullS3, type NullS3Options } from './null-s3.ts';

export function localS3Client(url: string, ca?: string): S3Client {
  return new S3Client({
    endpoint: url,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' },
    ...(ca ? { requestHandler: { httpsAgent: new HttpsAgent({ ca: readFileSync(ca) }) } } : {}),
  });
}

export interface NullS3Bucket {
  readonly ep: NullS3;
  /** A client over HTTPS (the certificate trusted). */
  readonly s3: S3Client;
  readonly bucket: string;
  close(): Promise<void>;
}

/** The null endpoint in this process, with a client over HTTPS and `bucket` created. */
export async function startNullS3Bucket(bucket: string, options: NullS3Options = {}): Promise<NullS3Bucket> {
  const ep = await startNullS3(options);
  const s3 = localS3Client(ep.https, ep.ca);
  const close = async () => {
    s3.destroy();
    await ep.close();
  };
  try {
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  } catch (err) {
    await close();
    throw err;
  }
  return { ep, s3, bucket, close };
}
