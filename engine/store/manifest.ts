/**
 * The manifest `<dump key>.json`, written only after the dump is complete in S3. A backup is
 * complete only when its manifest exists; listing, retention and restore ignore everything else.
 */
import { z } from 'zod';

export const MANIFEST_FORMAT_VERSION = 1;

export const ManifestSchema = z.object({
  formatVersion: z.literal(MANIFEST_FORMAT_VERSION),
  database: z.string().min(1),
  /** The dump's object key. */
  key: z.string().min(1),
  bytes: z.number().int().nonnegative(),
  /** SHA-256 of the whole dump object, lowercase hex. */
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  /** pg_dump `--compress` spec, e.g. `zstd:1`. */
  compression: z.string().min(1),
  /** pg_dump's version, e.g. `18.1`. */
  pgDumpVersion: z.string().min(1),
  /** The server's version, e.g. `15.18`. */
  serverVersion: z.string().min(1),
  startedAt: z.string().datetime(),
  finishedAt: z.string().datetime(),
  durationMs: z.number().int().nonnegative(),
  /** Why the backup ran: `scheduled`, an operator's text, `host-cron`, … */
  reason: z.string(),
  /** pg-s3-backup's version that wrote it. */
  toolVersion: z.string().min(1),
  /** Where the backup ran (absent in manifests written before the fan-out): the fan-out's `auto` runner reads it. */
  runner: z.enum(['lambda', 'fargate', 'host']).optional(),
});

export type Manifest = z.infer<typeof ManifestSchema>;

export function parseManifest(text: string): Manifest {
  return ManifestSchema.parse(JSON.parse(text));
}
