/**
 * Object keys: pure functions, the single place that knows the layout
 *   <prefix><database>/<YYYY>/<MM>/<DD>/<database>-<YYYYMMDDTHHmmssSSSZ>.dump   (the dump)
 *   <same key>.json                                                          (the manifest)
 * On a store without conditional writes (engine/store/capabilities.ts) the dump's file name ends
 * with the run's id, `<database>-<YYYYMMDDTHHmmssSSSZ>-<8 hex>.dump`: two runs never share a key,
 * whatever their clocks say, and each checks its key after writing (s3-store.ts).
 * The database name is percent-encoded (UTF-8) except for [A-Za-z0-9_.-], so that any name
 * (spaces, quotes, slashes, unicode) gives a safe key and decodes back exactly.
 */

export const DUMP_SUFFIX = '.dump';
export const MANIFEST_SUFFIX = '.json';

const SAFE = /[A-Za-z0-9_.-]/;

export function encodeDatabaseName(name: string): string {
  if (name.length === 0) throw new RangeError('database name must not be empty');
  let out = '';
  for (const ch of name) {
    if (SAFE.test(ch)) {
      out += ch;
    } else {
      for (const byte of Buffer.from(ch, 'utf8')) out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
    }
  }
  // "." and ".." would read as path segments in tools that normalise keys.
  if (out === '.' || out === '..') out = out.replace(/\./g, '%2E');
  return out;
}

export function decodeDatabaseName(encoded: string): string {
  return decodeURIComponent(encoded);
}

/** `<prefix><encoded database>/`: everything of one database lives under it, and nothing else. */
export function databasePrefix(prefix: string, database: string): string {
  return `${prefix}${encodeDatabaseName(database)}/`;
}

/** `YYYYMMDDTHHmmssSSSZ` in UTC. */
export function formatTimestamp(date: Date): string {
  return date.toISOString().replace(/[-:.]/g, '');
}

export function parseTimestamp(stamp: string): Date | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\d{3})Z$/.exec(stamp);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, ms] = m;
  const date = new Date(`${y}-${mo}-${d}T${h}:${mi}:${s}.${ms}Z`);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

/** A run's id in a key: 8 lowercase hex digits. */
export const RUN_ID = /^[0-9a-f]{8}$/;

export function buildDumpKey(prefix: string, database: string, startedAt: Date, runId?: string): string {
  if (runId !== undefined && !RUN_ID.test(runId)) throw new RangeError('run id must be 8 lowercase hex digits');
  const iso = startedAt.toISOString();
  const [yyyy, mm, dd] = [iso.slice(0, 4), iso.slice(5, 7), iso.slice(8, 10)];
  const enc = encodeDatabaseName(database);
  return `${prefix}${enc}/${yyyy}/${mm}/${dd}/${enc}-${formatTimestamp(startedAt)}${runId === undefined ? '' : `-${runId}`}${DUMP_SUFFIX}`;
}

export function manifestKeyFor(dumpKey: string): string {
  return `${dumpKey}${MANIFEST_SUFFIX}`;
}

/** `<dump key>.verify.json`: the restore drill's report, next to the backup (listed, pruned with it). */
/**
 * The data archives of a sharded backup (manifest format 4): `<dump key without .dump>.data-<n>.dump`,
 * n from 1. Not a dump key (parseKey ignores it): listing and `--latest` see the backup by its
 * schema archive and manifest only; retention deletes the parts with them.
 */
export function partKeyFor(dumpKey: string, n: number): string {
  return `${dumpKey.slice(0, -DUMP_SUFFIX.length)}.data-${n}${DUMP_SUFFIX}`;
}

/** The dump key a data archive belongs to, or undefined when `key` is not one. */
export function partOwner(key: string): string | undefined {
  const m = /^(.*)\.data-[1-9]\d*\.dump$/.exec(key);
  return m ? `${m[1]}${DUMP_SUFFIX}` : undefined;
}

export const VERIFY_REPORT_SUFFIX = '.verify.json';
export function verifyReportKeyFor(dumpKey: string): string {
  return `${dumpKey}${VERIFY_REPORT_SUFFIX}`;
}

export interface ParsedKey {
  readonly database: string;
  readonly startedAt: Date;
  readonly kind: 'dump' | 'manifest';
  /** The dump's key (for a manifest, the key it describes). */
  readonly dumpKey: string;
  /** The run's id, for keys written on a store without conditional writes. */
  readonly runId?: string | undefined;
}

/**
 * Parses a key written by `buildDumpKey` (or its manifest). Anything else — another prefix,
 * another layout, a stray object — gives `undefined`, so listing and pruning ignore it.
 */
export function parseKey(prefix: string, key: string): ParsedKey | undefined {
  if (!key.startsWith(prefix)) return undefined;
  let rest = key.slice(prefix.length);
  let kind: ParsedKey['kind'] = 'dump';
  let dumpKey = key;
  if (rest.endsWith(DUMP_SUFFIX + MANIFEST_SUFFIX)) {
    kind = 'manifest';
    rest = rest.slice(0, -MANIFEST_SUFFIX.length);
    dumpKey = key.slice(0, -MANIFEST_SUFFIX.length);
  } else if (!rest.endsWith(DUMP_SUFFIX)) {
    return undefined;
  }
  const m = /^([^/]+)\/(\d{4})\/(\d{2})\/(\d{2})\/([^/]+)-(\d{8}T\d{9}Z)(?:-([0-9a-f]{8}))?\.dump$/.exec(rest);
  if (!m) return undefined;
  const [, encDir, yyyy, mm, dd, encFile, stamp, runId] = m as unknown as [string, string, string, string, string, string, string, string | undefined];
  if (encDir !== encFile) return undefined;
  const startedAt = parseTimestamp(stamp);
  if (!startedAt) return undefined;
  const iso = startedAt.toISOString();
  if (iso.slice(0, 4) !== yyyy || iso.slice(5, 7) !== mm || iso.slice(8, 10) !== dd) return undefined;
  let database: string;
  try {
    database = decodeDatabaseName(encDir);
  } catch {
    return undefined;
  }
  if (encodeDatabaseName(database) !== encDir) return undefined;
  return { database, startedAt, kind, dumpKey, ...(runId === undefined ? {} : { runId }) };
}

/**
 * Roles and other cluster-wide objects (`pg_dumpall --globals-only`), one file per run:
 *   <prefix>_globals/<YYYY>/<MM>/<DD>/globals-<YYYYMMDDTHHmmssSSSZ>.sql
 * The file name never matches a database's dump name, so a database called `_globals` and the
 * globals can share the folder without either's listing or pruning seeing the other.
 */
export const GLOBALS_FOLDER = '_globals';
export const GLOBALS_SUFFIX = '.sql';
/**
 * Added to an object encrypted with age that has no manifest to say so (the globals): such a file
 * is opened with `age -d -i <identity file>`. Dumps keep their key: their manifest says it.
 */
export const AGE_SUFFIX = '.age';

export function buildGlobalsKey(prefix: string, startedAt: Date, options: { readonly encrypted?: boolean } = {}): string {
  const iso = startedAt.toISOString();
  return `${prefix}${GLOBALS_FOLDER}/${iso.slice(0, 4)}/${iso.slice(5, 7)}/${iso.slice(8, 10)}/globals-${formatTimestamp(startedAt)}${GLOBALS_SUFFIX}${options.encrypted ? AGE_SUFFIX : ''}`;
}

/** True for keys written by `buildGlobalsKey` under `prefix`. */
export function isGlobalsKey(prefix: string, key: string): boolean {
  return globalsKeyTime(prefix, key) !== undefined;
}

/** The time in a key written by `buildGlobalsKey` under `prefix` (undefined for any other key). */
export function globalsKeyTime(prefix: string, key: string): Date | undefined {
  if (!key.startsWith(`${prefix}${GLOBALS_FOLDER}/`)) return undefined;
  const m = /^(\d{4})\/(\d{2})\/(\d{2})\/globals-(\d{8}T\d{9}Z)\.sql(?:\.age)?$/.exec(key.slice(prefix.length + GLOBALS_FOLDER.length + 1));
  return m === null ? undefined : parseTimestamp(m[4]!);
}

/**
 * The check's probe objects (`{"check": true}`, `pg-s3-backup doctor`), written, read back and
 * deleted at once:
 *   <prefix>_check/probe-<YYYYMMDDTHHmmssSSSZ>-<id>
 * A database called `_check` keeps its dumps under `_check/<YYYY>/…`, so `probe-*` never names one
 * of its objects: the function may delete probe versions (CHECK_PROBE_PATTERN) and nothing else.
 */
export const CHECK_FOLDER = '_check';

export function buildCheckProbeKey(prefix: string, at: Date, id: string): string {
  if (!/^[A-Za-z0-9]+$/.test(id)) throw new RangeError('probe id must be alphanumeric');
  return `${prefix}${CHECK_FOLDER}/probe-${formatTimestamp(at)}-${id}`;
}

/** Every probe key under `prefix`, as an IAM resource pattern (after the bucket's ARN and `/`). */
export function checkProbePattern(prefix: string): string {
  return `${prefix}${CHECK_FOLDER}/probe-*`;
}
