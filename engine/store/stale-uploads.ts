/**
 * Stale multipart uploads: an upload whose abort failed (S3 was down) or whose process was killed
 * outright keeps its parts, stored and billed, invisible to ListObjects. Buckets the stack creates
 * have a lifecycle rule for them; an imported bucket may not. `prune` (and each run's prune step)
 * aborts the uploads under the prefix that are older than STALE_UPLOAD_AGE_SECONDS.
 *
 * Age is measured with S3's clock: the upload's `Initiated` against the `Date` header of the very
 * response that listed it, so a host whose clock is wrong can neither abort a running upload nor
 * keep a stale one forever.
 */
import { AbortMultipartUploadCommand, ListMultipartUploadsCommand, type ListMultipartUploadsCommandOutput } from '@aws-sdk/client-s3';
import { PruneError } from '../errors.ts';
import type { EventSink } from '../events.ts';
import type { S3Store } from './s3-store.ts';

export interface StaleUpload {
  readonly key: string;
  readonly uploadId: string;
  readonly initiated: string;
  /** Age by S3's clock, seconds. */
  readonly ageSeconds: number;
}

export interface StaleUploadsResult {
  /** Aborted (with dryRun: would be aborted). */
  readonly aborted: readonly StaleUpload[];
  /** Uploads found younger than the limit (a run may still be writing them). */
  readonly kept: number;
  readonly dryRun: boolean;
}

/** One ListMultipartUploads page and S3's time when it answered (its `Date` header). */
async function listPage(store: S3Store, prefix: string, keyMarker: string | undefined, uploadIdMarker: string | undefined): Promise<{ page: ListMultipartUploadsCommandOutput; serverNow: Date | undefined }> {
  const command = new ListMultipartUploadsCommand({ Bucket: store.bucket, Prefix: prefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker });
  let date: string | undefined;
  // The SDK keeps no response header in its output: read S3's Date from the raw response.
  command.middlewareStack.add(
    (next) => async (args) => {
      const out = await next(args);
      const headers = (out.response as { headers?: Record<string, string> } | undefined)?.headers;
      date = headers?.date ?? headers?.Date;
      return out;
    },
    { step: 'deserialize', name: 'pgS3BackupServerDate' },
  );
  const page = await store.s3.send(command);
  const serverNow = date === undefined ? undefined : new Date(date);
  return { page, serverNow: serverNow && Number.isFinite(serverNow.getTime()) ? serverNow : undefined };
}

export async function abortStaleUploads(
  store: S3Store,
  options: { readonly minAgeMs: number; readonly dryRun?: boolean | undefined; readonly events?: EventSink | undefined; readonly prefix?: string | undefined },
): Promise<StaleUploadsResult> {
  const prefix = options.prefix ?? store.prefix;
  const dryRun = options.dryRun ?? false;
  const aborted: StaleUpload[] = [];
  let kept = 0;
  let keyMarker: string | undefined;
  let uploadIdMarker: string | undefined;
  try {
    do {
      const { page, serverNow } = await listPage(store, prefix, keyMarker, uploadIdMarker);
      for (const u of page.Uploads ?? []) {
        if (u.Key === undefined || u.UploadId === undefined || u.Initiated === undefined || !u.Key.startsWith(prefix)) continue;
        // Without S3's time the age is unknown: keep it (the lifecycle rule remains the backstop).
        const ageMs = serverNow === undefined ? undefined : serverNow.getTime() - u.Initiated.getTime();
        if (ageMs === undefined || ageMs < options.minAgeMs) {
          kept++;
          continue;
        }
        if (!dryRun) {
          try {
            await store.s3.send(new AbortMultipartUploadCommand({ Bucket: store.bucket, Key: u.Key, UploadId: u.UploadId }));
          } catch (err) {
            if ((err as Error).name !== 'NoSuchUpload') throw err;
          }
        }
        aborted.push({ key: u.Key, uploadId: u.UploadId, initiated: u.Initiated.toISOString(), ageSeconds: Math.round(ageMs / 1000) });
      }
      keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
      uploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
    } while (keyMarker !== undefined);
  } catch (err) {
    throw new PruneError(`cannot abort stale multipart uploads under s3://${store.bucket}/${prefix}: ${(err as Error).name}: ${(err as Error).message}`, {
      cause: err,
      hint: 'Grant s3:ListBucketMultipartUploads on the bucket and s3:AbortMultipartUpload on the prefix; the bucket lifecycle rule (AbortIncompleteMultipartUpload) is the backstop.',
    });
  }
  if (aborted.length > 0 || kept > 0) {
    options.events?.({
      event: dryRun ? 'prune.stale-uploads.dry-run' : 'prune.stale-uploads.aborted',
      stage: 'prune',
      prefix,
      aborted: aborted.length,
      uploads: aborted.map((u) => `${u.key} (${u.uploadId}, ${u.ageSeconds} s old)`),
      keptYounger: kept,
    });
  }
  return { aborted, kept, dryRun };
}
