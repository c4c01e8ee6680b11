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
/**
 * 3 (issue 16 §2): the dump is encrypted with age (`encryption`, `plaintextBytes`,
 * `plaintextSha256`). Written for encrypted backups only, so that a version of this tool that
 * cannot decrypt refuses them as unreadable instead of handing ciphertext to pg_restore;
 * unencrypted backups keep version 2.
 */
export const ENCRYPTED_MANIFEST_FORMAT_VERSION = 3;
/**
 * 4 (issue 24 §1): a sharded backup (DUMP_JOBS > 1). `key`, `bytes` and `sha256` are the schema
 * archive's (everything but the sharded tables' data and the large objects); `parts` lists the
 * data archives, each dumped in the same snapshot and restorable on its own. A version that does
 * not know `parts` would restore the schema archive alone, a database without its rows: it must
 * refuse the manifest, hence a version of its own. An encrypted sharded backup is version 4 with
 * `encryption`: every archive is its own age file to the same recipients, the top-level plaintext
 * digest is the schema archive's and each part carries its own (version 3 alone never has parts).
 */
export const SHARDED_MANIFEST_FORMAT_VERSION = 4;
/** Every version this code reads. */
export const READABLE_FORMAT_VERSIONS = [1, 2, 3, 4] as const;

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** How the dump object is encrypted: age, to recipients known by their fingerprints. */
export const EncryptionSchema = z.object({
  format: z.literal('age'),
  /** The first 16 hex digits of each recipient's SHA-256 (engine/encryption.ts, recipientFingerprint). */
  recipients: z.array(z.string().regex(/^[0-9a-f]{16}$/)).min(1),
});
export type ManifestEncryption = z.infer<typeof EncryptionSchema>;

/** How the manifest's row counts were taken (ROW_COUNTS). */
import { ROW_COUNT_MODES, type RowCountMode } from '../settings/values.ts';
export { ROW_COUNT_MODES, type RowCountMode };

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

/** One data archive of a sharded backup (format 4). */
export const ManifestPartSchema = z.object({
  /** The archive's object key (`<dump key without .dump>.data-<n>.dump`). */
  key: z.string().min(1),
  bytes: z.number().int().nonnegative(),
  /** SHA-256 of the archive as stored, lowercase hex: checked as it streams into pg_restore. */
  sha256: z.string().regex(SHA256_HEX),
  /** Tables whose data it holds. */
  tables: z.number().int().nonnegative(),
  /** Their size in the snapshot (pg_table_size): what the plan balanced. */
  tableBytes: z.number().int().nonnegative(),
  /** It holds the large objects (the first part only). */
  largeObjects: z.boolean(),
  /** An encrypted backup's part: pg_dump's archive before encryption (`bytes` and `sha256` are the age file's), checked as it decrypts. */
  plaintextBytes: z.number().int().nonnegative().optional(),
  plaintextSha256: z.string().regex(SHA256_HEX).optional(),
});
export type ManifestPart = z.infer<typeof ManifestPartSchema>;

export const ManifestSchema = z.object({
  formatVersion: z.union(READABLE_FORMAT_VERSIONS.map((v) => z.literal(v)) as [z.ZodLiteral<1>, z.ZodLiteral<2>, z.ZodLiteral<3>, z.ZodLiteral<4>]),
  database: z.string().min(1),
  /** The dump's object key. */
  key: z.string().min(1),
  /** Size of the dump object as stored (for an encrypted dump: the ciphertext). */
  bytes: z.number().int().nonnegative(),
  /** SHA-256 of the whole dump object as stored (for an encrypted dump: the ciphertext, checked before decrypting), lowercase hex. */
  sha256: z.string().regex(SHA256_HEX),
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
  /** Version 3: the object is an age file (absent: it is pg_dump's archive itself). */
  encryption: EncryptionSchema.optional(),
  /** Version 3: pg_dump's archive before encryption: its size and SHA-256, checked after decrypting. */
  plaintextBytes: z.number().int().nonnegative().optional(),
  plaintextSha256: z.string().regex(SHA256_HEX).optional(),
  /** Version 4: the data archives of a sharded backup (`key` is then the schema archive). */
  parts: z.array(ManifestPartSchema).min(1).optional(),
}).superRefine((m, ctx) => {
  if ((m.parts !== undefined) !== (m.formatVersion === SHARDED_MANIFEST_FORMAT_VERSION)) {
    ctx.addIssue({ code: 'custom', path: ['parts'], message: `formatVersion ${SHARDED_MANIFEST_FORMAT_VERSION} goes with "parts", and only with it` });
  }
  // An encrypted dump must say so in a version that older readers refuse, and carry what the
  // decrypted archive is checked against; an unencrypted one must not claim a plaintext digest.
  // A sharded one (version 4) may be encrypted too: then each of its parts carries its plaintext digest.
  const encrypted = m.encryption !== undefined;
  const sharded = m.formatVersion === SHARDED_MANIFEST_FORMAT_VERSION;
  if (encrypted !== (m.formatVersion === ENCRYPTED_MANIFEST_FORMAT_VERSION) && !sharded) {
    ctx.addIssue({ code: 'custom', path: ['encryption'], message: `formatVersion ${ENCRYPTED_MANIFEST_FORMAT_VERSION} goes with "encryption", and only with it (a sharded backup, version ${SHARDED_MANIFEST_FORMAT_VERSION}, may have it too)` });
  }
  if (encrypted !== (m.plaintextSha256 !== undefined && m.plaintextBytes !== undefined)) {
    ctx.addIssue({ code: 'custom', path: ['plaintextSha256'], message: '"plaintextBytes" and "plaintextSha256" go with "encryption", and only with it' });
  }
  (m.parts ?? []).forEach((p, i) => {
    if (encrypted !== (p.plaintextSha256 !== undefined && p.plaintextBytes !== undefined)) {
      ctx.addIssue({ code: 'custom', path: ['parts', i, 'plaintextSha256'], message: 'a part\'s "plaintextBytes" and "plaintextSha256" go with the manifest\'s "encryption", and only with it' });
    }
  });
});

export type Manifest = z.infer<typeof ManifestSchema>;

export function parseManifest(text: string): Manifest {
  return ManifestSchema.parse(JSON.parse(text));
}
