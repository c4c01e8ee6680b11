/**
 * The bucket, exercised the way a backup uses it, on a probe object under the prefix: a write with
 * `If-None-Match: *` and the SHA-256 checksum the engine sends, a second write that S3 must refuse
 * (the engine's guarantee that no run overwrites another's backup), a read back with the checksum,
 * a listing under the prefix, a multipart upload started and aborted (a dump's path), and the
 * probe's removal, versions included, so that nothing is left behind.
 *
 * First, what the store can do (engine/store/probe.ts): with STORAGE_PROFILE set to a store's
 * name, its documented table; otherwise the capability probe, whose result is cached for the
 * backups. The write, read and multipart steps then use the headers a backup would send.
 */
import { createHash, randomBytes } from 'node:crypto';
import { buildCheckProbeKey, checkProbePattern } from '../store/backup-key.ts';
import type { BackupStore } from '../store/store.ts';
import { PROFILE_CAPABILITIES, profileCapabilities, type StorageProfileSetting } from '../store/capabilities.ts';
import { capabilitiesKey, type ProbeResult } from '../store/probe.ts';
import { describeError, fail, notChecked, pass, warn, type Check } from './check.ts';

export interface BucketProbeOptions {
  readonly now: Date;
  /** Probe id (default: random); the key is `<prefix>_check/probe-<time>-<id>`. */
  readonly id?: string;
  /** Who runs the check, written into the probe (e.g. "function req-123", "doctor on host x"). */
  readonly source?: string;
  /** STORAGE_PROFILE and STORAGE_MAX_PARTS (unset: probe, as `auto`). */
  readonly profile?: StorageProfileSetting | undefined;
  readonly maxParts?: number | undefined;
}

function s3Fix(err: unknown, actions: string, store: Pick<BackupStore, 'bucket' | 'prefix'>): string {
  const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  if (e.name === 'NoSuchBucket') return `The bucket ${store.bucket} does not exist here: check BACKUP_BUCKET and AWS_REGION.`;
  if (e.name === 'AccessDenied' || e.$metadata?.httpStatusCode === 403) {
    return `Grant ${actions} on arn:aws:s3:::${store.bucket}/${store.prefix}* (and kms:GenerateDataKey, kms:Decrypt on the bucket's KMS key); check the bucket policy too.`;
  }
  return 'S3 was not reachable or failed: check the network path (NAT gateway or S3 gateway endpoint) and retry.';
}

export async function bucketChecks(store: BackupStore, options: BucketProbeOptions): Promise<Check[]> {
  const where = `s3://${store.bucket}/${store.prefix}`;
  const key = buildCheckProbeKey(store.prefix, options.now, options.id ?? randomBytes(6).toString('hex'));
  const body = `pg-s3-backup check probe, written ${options.now.toISOString()}${options.source ? ` by ${options.source}` : ''}; deleted right away.\n`;
  const sha256 = createHash('sha256').update(body).digest('base64');
  const checks: Check[] = [];
  const versions: (string | undefined)[] = [];

  const name = {
    capabilities: 'bucket: store capabilities',
    write: 'bucket: write (If-None-Match, SHA-256 checksum)',
    overwrite: 'bucket: never overwrites (If-None-Match)',
    read: 'bucket: read back (checksum)',
    list: 'bucket: list under the prefix',
    multipart: 'bucket: multipart upload started and aborted',
    remove: 'bucket: delete the probe',
  };
  const setting = options.profile;
  const explicit = setting !== undefined && setting !== 'auto' ? setting : undefined;
  const limits = profileCapabilities(explicit ?? 'aws', options.maxParts);
  const partsText = `part cap ${limits.maxParts} (${options.maxParts !== undefined ? 'STORAGE_MAX_PARTS' : `the ${explicit ?? 'aws'} profile`}; not probed: finding it would take a multipart upload of ${limits.maxParts + 1} parts)`;
  let features: { conditionalWrites: boolean; checksumSha256: boolean } = PROFILE_CAPABILITIES.aws;
  let probe: ProbeResult | undefined;
  if (explicit) {
    features = limits;
    checks.push(pass(name.capabilities, `STORAGE_PROFILE=${explicit} (not probed): conditional writes ${limits.conditionalWrites ? 'yes' : 'no'}, SHA-256 checksum headers ${limits.checksumSha256 ? 'yes' : 'no'}, ${partsText}`));
  } else {
    try {
      probe = await store.probeCapabilities(options.now);
      features = probe;
      // Cached for the backups when it tells them something: with STORAGE_PROFILE unset they assume
      // AWS's behaviour, so a store that has everything needs no cache (and the check leaves nothing).
      const useful = setting === 'auto' || !probe.conditionalWrites || !probe.checksumSha256;
      const cached = useful && (await store.cacheCapabilities(probe));
      checks.push(pass(name.capabilities, `probed: ${probe.conditionalDetail}; ${probe.checksumDetail}; ${partsText}${cached ? `; cached in ${capabilitiesKey(store.prefix)} for the backups` : ''}`));
    } catch (err) {
      checks.push(fail(name.capabilities, `the capability probe failed: ${describeError(err).detail}`, s3Fix(err, 's3:PutObject and s3:DeleteObject', store)));
    }
  }
  const put = () =>
    store.objects.put(key, body, {
      contentType: 'text/plain; charset=utf-8',
      checksumSha256: features.checksumSha256 ? sha256 : undefined,
      ifNoneMatch: features.conditionalWrites,
    });

  let written = false;
  try {
    const res = await put();
    versions.push(res.versionId);
    written = true;
    checks.push(pass(name.write, `wrote s3://${store.bucket}/${key} (${Buffer.byteLength(body)} bytes)`));
  } catch (err) {
    checks.push(fail(name.write, `cannot write under ${where}: ${describeError(err).detail}`, s3Fix(err, 's3:PutObject', store)));
  }

  if (written && !features.conditionalWrites) {
    const fallback = 'backups write to keys holding the run\'s id and check each key after writing';
    if (explicit) checks.push(pass(name.overwrite, `not relied on (STORAGE_PROFILE=${explicit} has no conditional writes): ${fallback}`));
    else if (probe?.conditionalMode === 'ignored' && setting !== 'auto') {
      checks.push(warn(name.overwrite, `${probe.conditionalDetail}: ${fallback} while the cached probe is fresh (7 days), but after it a backup would trust a header the store ignores`, 'Set STORAGE_PROFILE to the store\'s profile (ceph, …) or to auto, so that every run uses the fallback.'));
    } else checks.push(pass(name.overwrite, `not relied on (${probe?.conditionalDetail ?? 'probe failed'}): ${fallback}`));
  }
  if (written && features.conditionalWrites) {
    try {
      const res = await put();
      versions.push(res.versionId);
      checks.push(fail(name.overwrite, 'a second write to the same key with If-None-Match: * succeeded: two runs could overwrite each other\'s objects', `The store ignores conditional writes: set STORAGE_PROFILE to its profile (ceph, …) or to auto${explicit ? ` instead of ${explicit}` : ''}.`));
    } catch (err) {
      const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
      if (e.name === 'PreconditionFailed' || e.$metadata?.httpStatusCode === 412) checks.push(pass(name.overwrite, 'a second write to the probe was refused (412 Precondition Failed)'));
      else checks.push(fail(name.overwrite, `the second write failed otherwise than with 412: ${describeError(err).detail}`, s3Fix(err, 's3:PutObject', store)));
    }
  }
  if (written) {
    try {
      const res = await store.objects.getText(key, { checksum: features.checksumSha256 });
      const text = res.text;
      if (text !== body) checks.push(fail(name.read, 'the probe read back differs from what was written', 'Check for a proxy or S3-compatible store that alters objects.'));
      else if (res.checksumSha256 !== undefined && res.checksumSha256 !== sha256) checks.push(fail(name.read, `S3 reports SHA-256 ${res.checksumSha256}, expected ${sha256}`, 'Check the S3 endpoint.'));
      else checks.push(pass(name.read, res.checksumSha256 ? `content and SHA-256 checksum match (${sha256})` : 'content matches (the store returned no checksum; the manifest\'s SHA-256 is checked at restore)'));
    } catch (err) {
      checks.push(fail(name.read, `cannot read the probe back: ${describeError(err).detail}`, s3Fix(err, 's3:GetObject', store)));
    }
  } else {
    checks.push(notChecked(name.overwrite, `${name.write} failed`), notChecked(name.read, `${name.write} failed`));
  }

  try {
    const seen = await store.objects.listed(key);
    checks.push(written && !seen ? fail(name.list, 'the listing does not show the probe just written', 'Check the S3 endpoint (listings must be consistent).') : pass(name.list, `listed ${where}`));
  } catch (err) {
    checks.push(fail(name.list, `cannot list ${where}: ${describeError(err).detail}`, s3Fix(err, 's3:ListBucket (with the s3:prefix condition)', store)));
  }

  const multipartKey = `${key}-multipart`;
  try {
    const uploadId = await store.objects.startMultipart(multipartKey, { checksum: features.checksumSha256 });
    try {
      await store.objects.abortMultipart(multipartKey, uploadId);
      checks.push(pass(name.multipart, 'a dump\'s multipart upload can start, and be aborted when a backup fails'));
    } catch (err) {
      checks.push(fail(name.multipart, `started a multipart upload but cannot abort it (it stays until the lifecycle rule cleans it): ${describeError(err).detail}`, s3Fix(err, 's3:AbortMultipartUpload', store)));
    }
  } catch (err) {
    checks.push(fail(name.multipart, `cannot start a multipart upload: ${describeError(err).detail}`, s3Fix(err, 's3:PutObject', store)));
  }

  if (written) checks.push(await removeProbe(store, key, versions, name.remove));
  else checks.push(notChecked(name.remove, `${name.write} failed`));
  return checks;
}

/**
 * Deletes each written version by id (a versioned bucket keeps no trace), else the key. Without
 * s3:DeleteObjectVersion (a stack deployed before the check existed, Object Lock) it falls back
 * to a plain delete: a delete marker and a noncurrent version stay until the lifecycle rule.
 */
async function removeProbe(store: BackupStore, key: string, versions: readonly (string | undefined)[], name: string): Promise<Check> {
  const ids = versions.filter((v): v is string => v !== undefined && v !== 'null');
  try {
    if (ids.length === 0) {
      await store.objects.delete(key);
      return pass(name, `deleted ${key}`);
    }
    for (const versionId of ids) await store.objects.delete(key, versionId);
    return pass(name, `deleted ${key} (every version: nothing left behind)`);
  } catch (versionErr) {
    try {
      await store.objects.delete(key);
    } catch (err) {
      return fail(name, `cannot delete the probe ${key}: ${describeError(err).detail}`, s3Fix(err, 's3:DeleteObject (pruning needs it)', store));
    }
    return warn(
      name,
      `deleted ${key}, but not its version (${describeError(versionErr).detail}): a noncurrent version stays until the lifecycle rule removes it`,
      `Redeploy the stack (it grants s3:DeleteObjectVersion on ${checkProbePattern(store.prefix)} only), or ignore: the probe is a few bytes.`,
    );
  }
}
