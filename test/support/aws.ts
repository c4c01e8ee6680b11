/**
 * AWS SDK clients pointed at the test endpoint, and helpers: buckets, secrets, an SNS topic read
 * back through an SQS subscription, multipart-upload and object listings.
 */
import {
  CreateBucketCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { CreateTopicCommand, SNSClient, SubscribeCommand } from '@aws-sdk/client-sns';
import { CreateQueueCommand, DeleteMessageBatchCommand, GetQueueAttributesCommand, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { randomUUID } from 'node:crypto';
import { buildDumpKey, manifestKeyFor } from '../../engine/store/backup-key.ts';
import { MANIFEST_FORMAT_VERSION, parseManifest, type Manifest } from '../../engine/store/manifest.ts';

export const TEST_REGION = 'us-east-1';
const credentials = { accessKeyId: 'testing', secretAccessKey: 'testing' };

export interface TestClients {
  readonly s3: S3Client;
  readonly secrets: SecretsManagerClient;
  readonly sns: SNSClient;
  readonly sqs: SQSClient;
}

/** Clients for `endpoint`; `s3Endpoint` lets S3 go through the fault proxy. */
export function testClients(endpoint: string, options: { s3Endpoint?: string; maxAttempts?: number } = {}): TestClients {
  const common = { region: TEST_REGION, credentials, endpoint };
  return {
    s3: new S3Client({ ...common, endpoint: options.s3Endpoint ?? endpoint, forcePathStyle: true, ...(options.maxAttempts ? { maxAttempts: options.maxAttempts } : {}) }),
    secrets: new SecretsManagerClient(common),
    sns: new SNSClient(common),
    sqs: new SQSClient(common),
  };
}

/** Environment variables that make the SDK's default clients (createDeps) use the test endpoint. */
export function awsEnv(endpoint: string): Record<string, string> {
  return {
    AWS_ENDPOINT_URL: endpoint,
    AWS_REGION: TEST_REGION,
    AWS_ACCESS_KEY_ID: credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
    S3_FORCE_PATH_STYLE: 'true',
  };
}

export async function createBucket(c: TestClients, name = `pgs3b-${randomUUID().slice(0, 8)}`): Promise<string> {
  await c.s3.send(new CreateBucketCommand({ Bucket: name }));
  return name;
}

export async function createSecret(c: TestClients, value: unknown, name = `db-${randomUUID().slice(0, 8)}`): Promise<string> {
  const res = await c.secrets.send(new CreateSecretCommand({ Name: name, SecretString: typeof value === 'string' ? value : JSON.stringify(value) }));
  return res.ARN!;
}

export interface AlertInbox {
  readonly topicArn: string;
  /** Waits up to `timeoutMs` for at least `count` messages not returned before; returns them all. */
  receive(count?: number, timeoutMs?: number): Promise<{ subject: string; message: string }[]>;
}

/** An SNS topic with an SQS queue subscribed: what the function publishes can be read back. */
export async function createAlertInbox(c: TestClients): Promise<AlertInbox> {
  const id = randomUUID().slice(0, 8);
  const { TopicArn } = await c.sns.send(new CreateTopicCommand({ Name: `alerts-${id}` }));
  const { QueueUrl } = await c.sqs.send(new CreateQueueCommand({ QueueName: `alerts-${id}` }));
  const attrs = await c.sqs.send(new GetQueueAttributesCommand({ QueueUrl, AttributeNames: ['QueueArn'] }));
  await c.sns.send(new SubscribeCommand({ TopicArn, Protocol: 'sqs', Endpoint: attrs.Attributes!.QueueArn! }));
  let received: { subject: string; message: string }[] = [];
  return {
    topicArn: TopicArn!,
    async receive(count = 1, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (received.length < count && Date.now() < deadline) {
        const res = await c.sqs.send(new ReceiveMessageCommand({ QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
        for (const m of res.Messages ?? []) {
          const body = JSON.parse(m.Body!) as { Subject?: string; Message: string };
          received.push({ subject: body.Subject ?? '', message: body.Message });
        }
        if (res.Messages?.length) {
          await c.sqs.send(new DeleteMessageBatchCommand({ QueueUrl, Entries: res.Messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle! })) }));
        }
      }
      const out = received;
      received = [];
      return out;
    },
  };
}

export async function listKeys(c: TestClients, bucket: string, prefix = ''): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const res = await c.s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const o of res.Contents ?? []) keys.push(o.Key!);
    token = res.IsTruncated ? res.NextContinuationToken : undefined;
  } while (token);
  return keys.sort();
}

export async function listMultipartUploads(c: TestClients, bucket: string): Promise<string[]> {
  const res = await c.s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
  return (res.Uploads ?? []).map((u) => u.Key!);
}

export async function putText(c: TestClients, bucket: string, key: string, body: string): Promise<void> {
  await c.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
}

/** The manifest stored beside the dump at `dumpKey`, parsed (it must be one). */
export async function storedManifest(c: TestClients, bucket: string, dumpKey: string): Promise<Manifest> {
  const res = await c.s3.send(new GetObjectCommand({ Bucket: bucket, Key: manifestKeyFor(dumpKey) }));
  return parseManifest(await res.Body!.transformToString());
}

/**
 * A backup of `database` at `at` as a run stores one (a 5-byte dump, and its manifest unless
 * `complete` is false), without running one: for listing, retention and status tests. Its manifest
 * says it finished at `finishedAt` (default `at`); S3 stamps both objects now.
 */
export async function putStoredBackup(
  c: TestClients,
  bucket: string,
  prefix: string,
  database: string,
  at: Date,
  options: { readonly complete?: boolean; readonly finishedAt?: Date } = {},
): Promise<string> {
  const key = buildDumpKey(prefix, database, at);
  await putText(c, bucket, key, 'PGDMP');
  if (options.complete === false) return key;
  const manifest = {
    formatVersion: MANIFEST_FORMAT_VERSION, database, key, bytes: 5, sha256: 'a'.repeat(64), compression: 'zstd:1', pgDumpVersion: '18.6',
    serverVersion: '18.4', startedAt: at.toISOString(), finishedAt: (options.finishedAt ?? at).toISOString(), durationMs: 1, reason: 'test', toolVersion: '0.1.0',
  };
  await putText(c, bucket, manifestKeyFor(key), JSON.stringify(manifest));
  return key;
}
