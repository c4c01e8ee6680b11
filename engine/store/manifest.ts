/**
 * The manifest `<dump key>.json`, written only after the dump is complete in S3. A backup is
 * complete only when its manifest exists; listing, retention and restore ignore everything else.
 */
import { z } from 'zod';

/**
 * 2 (issue 13): adds `rowCounts` and `tables` (each table's rows in the dump's own snapshot, and
 * size). Version 1 manifests stay readable: they simply have neither.
 */
export const MANIFEST_FORMAT_VERSION = 2;
/** Every version this code reads. */
export const READABLE_FORMAT_VERSIONS = [1, 2] as const;

/** How the manifest's row counts were taken (ROW_COUNTS). */
export const ROW_COUNT_MODES = ['exact', 'estimate', 'off'] as const;
export type RowCountMode = (typeof ROW_COUNT_MODES)[number];

/** One table the dump holds data for, as it was in the dump's snapshot. */
export const TableCountSchema = z.object({
  schema: z.string(),
  table: z.string(),
  /** Rows (`count(*) FROM ONLY`, or the planner's estimate with rowCounts "estimate"); null when it could not be had. */
  rows: z.number().int().nonnegative().nullable(),
  /** pg_total_relation_size at backup time (table, indexes, TOAST). */
  bytes: z.number().int().nonnegative(),
});
export type TableCount = z.infer<typeof TableCountSchema>;

export const ManifestSchema = z.object({
  formatVersion: z.union(READABLE_FORMAT_VERSIONS.map((v) => z.literal(v)) as [z.ZodLiteral<1>, z.ZodLiteral<2>]),
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
  /** Version 2: how `tables` rows were counted; "off": no table list. Absent in version 1. */
  rowCounts: z.enum(ROW_COUNT_MODES).optional(),
  /** Version 2: the tables whose data the dump holds, counted in the dump's own snapshot. */
  tables: z.array(TableCountSchema).optional(),
});

export type Manifest = z.infer<typeof ManifestSchema>;

export function parseManifest(text: string): Manifest {
  return ManifestSchema.parse(JSON.parse(text));
}
