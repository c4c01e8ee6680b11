/**
 * Every error the core raises. Each one says which stage failed and what to do about it
 * (`hint`), keeps its `cause`, and never carries a secret in its message.
 */

export type Stage =
  | 'config'
  | 'secret'
  | 'connect'
  | 'dump'
  | 'upload'
  | 'manifest'
  | 'prune'
  | 'timeout'
  | 'interrupted'
  | 'list'
  | 'download'
  | 'restore'
  | 'verify'
  | 'decrypt'
  | 'drill'
  | 'remote'
  | 'usage';

export interface PgS3BackupErrorOptions extends ErrorOptions {
  /** What the operator should do about it. */
  readonly hint?: string;
}

/**
 * What a failed upload could not clean up, so that alerts never claim "nothing was written" when
 * something was: a multipart upload whose abort failed, or an object left at the key.
 */
export interface Leftover {
  /** The multipart upload still open (its parts are stored and billed). */
  readonly uploadId?: string | undefined;
  /** An object left at the dump key (no manifest: not a backup; prune removes it after a day). */
  readonly objectKey?: string | undefined;
  /** Why it could not be removed (the last error). */
  readonly reason: string;
}

export class PgS3BackupError extends Error {
  readonly stage: Stage;
  readonly hint: string | undefined;
  /** Set by the clean-up after the error, when it could not remove everything. */
  leftover: Leftover | undefined;
  constructor(stage: Stage, message: string, options: PgS3BackupErrorOptions = {}) {
    super(message, options);
    this.name = 'PgS3BackupError';
    this.stage = stage;
    this.hint = options.hint;
  }
}

/** A configuration value is missing or malformed; the message names the variable and the expected form. */
export class ConfigError extends PgS3BackupError {
  constructor(message: string, options: PgS3BackupErrorOptions = {}) {
    super('config', message, options);
    this.name = 'ConfigError';
  }
}

/** What a child process ended with, kept on the errors it causes (exit code, signal, stderr tail). */
export interface ProcessOutcome {
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  /** The last lines pg_dump wrote to stderr, secrets redacted. */
  readonly stderrTail: readonly string[];
}

export interface ProcessErrorOptions extends PgS3BackupErrorOptions {
  readonly outcome?: ProcessOutcome;
}

/**
 * What to do about a failed pg_dump, from how it ended and its last stderr lines. The privilege
 * cases are told apart because the role the README once recommended, `pg_read_all_data`, reads
 * every table but neither large objects nor rows hidden by row-level security: "grant it
 * pg_read_all_data" would send the operator in a circle.
 */
export function dumpHint(outcome: ProcessOutcome): string {
  const text = outcome.stderrTail.join('\n');
  // --lock-wait-timeout ends the wait as a statement timeout on pg_dump's LOCK TABLE.
  if (/could not obtain lock|lock timeout|Query was: LOCK TABLE/i.test(text)) {
    return 'Another session holds a lock on a table (ACCESS EXCLUSIVE: a migration, VACUUM FULL, ALTER TABLE, a stuck transaction) longer than PG_LOCK_WAIT_TIMEOUT: find it in pg_locks / pg_stat_activity, then run the backup again (or schedule it away from the maintenance).';
  }
  if (outcome.signal === 'SIGKILL') return 'pg_dump was killed by SIGKILL (out of memory, or by force): on Lambda, give the function more memory; elsewhere check the kernel log (dmesg) for the OOM killer.';
  if (/server version mismatch/i.test(text)) return 'The server is newer than pg_dump: rebuild the pg_dump layer with matching client tools.';
  if (/permission denied for large object/i.test(text)) {
    return (
      'The backup role cannot read large objects: pg_read_all_data does not cover them. Grant SELECT on each existing one ' +
      '(GRANT SELECT ON LARGE OBJECT <oid> TO <backup role>, for every oid in pg_largeobject_metadata) and, on PostgreSQL 18+, ' +
      'on future ones (ALTER DEFAULT PRIVILEGES FOR ROLE <owner> GRANT SELECT ON LARGE OBJECTS TO <backup role>), or set ' +
      'lo_compat_privileges = on (RDS: the DB parameter group). README.md, "The database role", has the script.'
    );
  }
  if (/row-level security/i.test(text)) {
    return (
      'A table has row-level security and the backup role cannot bypass it: pg_read_all_data does not include BYPASSRLS, and a dump ' +
      'without the hidden rows would be incomplete. Run ALTER ROLE <backup role> BYPASSRLS (only a superuser, or a role that itself has ' +
      'BYPASSRLS, may). README.md, "The database role".'
    );
  }
  if (/permission denied/i.test(text)) {
    return 'The backup role lacks read access: grant it pg_read_all_data (PostgreSQL 14+) or SELECT on every table and sequence and USAGE on every schema (README.md, "The database role").';
  }
  if (/password authentication|connection to server/i.test(text)) return 'pg_dump could not connect: check the secret, the network path and sslmode.';
  return 'Read pg_dump\'s messages above; run the same pg_dump by hand (CLI `pg-s3-backup backup`) to reproduce.';
}

/** The on-demand event is malformed: an unknown field or a wrong type, named in the message. */
export class RequestError extends PgS3BackupError {
  constructor(message: string, options: PgS3BackupErrorOptions = {}) {
    super('usage', message, options);
    this.name = 'RequestError';
  }
}

/** The database credentials could not be had: secret missing, unreadable, not JSON, fields missing. */
export class SecretError extends PgS3BackupError {
  constructor(message: string, options: PgS3BackupErrorOptions = {}) {
    super('secret', message, options);
    this.name = 'SecretError';
  }
}

/** The database server could not be reached or refused us (host, port, TLS, password). */
export class ConnectError extends PgS3BackupError {
  constructor(message: string, options: PgS3BackupErrorOptions = {}) {
    super('connect', message, options);
    this.name = 'ConnectError';
  }
}

/** The server's major version is newer than pg_dump's (or older than pg_dump supports). */
export class ServerVersionError extends PgS3BackupError {
  readonly serverVersion: string;
  readonly pgDumpVersion: string;
  constructor(message: string, versions: { serverVersion: string; pgDumpVersion: string }, options: PgS3BackupErrorOptions = {}) {
    super('connect', message, options);
    this.name = 'ServerVersionError';
    this.serverVersion = versions.serverVersion;
    this.pgDumpVersion = versions.pgDumpVersion;
  }
}

/** pg_dump (or pg_dumpall) could not run, failed, was killed or wrote something that is not a dump. */
export class DumpError extends PgS3BackupError {
  readonly outcome: ProcessOutcome | undefined;
  constructor(message: string, options: ProcessErrorOptions = {}) {
    super('dump', message, options);
    this.name = 'DumpError';
    this.outcome = options.outcome;
  }
}

/** The upload to S3 failed; the multipart upload was aborted, nothing is at the final key. */
export class UploadError extends PgS3BackupError {
  constructor(message: string, options: PgS3BackupErrorOptions = {}) {
    super('upload', message, options);
    this.name = 'UploadError';
  }
}

/**
 * On a store without conditional writes, the key this run wrote does not hold this run's object
 * afterwards (another writer, or a lost write): never deleted, never claimed as a backup.
 */
export class KeyTakenError extends PgS3BackupError {
  constructor(message: string, options: PgS3BackupErrorOptions = {}) {
    super('upload', message, options);
    this.name = 'KeyTakenError';
  }
}

/** The dump is in S3 but its manifest could not be written or read: the backup is not complete. */
export class ManifestError extends PgS3BackupError {
  constructor(message: string, options: PgS3BackupErrorOptions = {}) {
    super('manifest', message, options);
    this.name = 'ManifestError';
  }
}

/**
 * A manifest that was read but cannot be trusted: not JSON, an unknown `formatVersion`, a field
 * missing, or it describes another object (another key, database or prefix). Its backup is not
 * complete: listing skips it, retention does not count it, `--latest` takes the one before.
 */
export class UnreadableManifestError extends ManifestError {
  constructor(message: string, options: PgS3BackupErrorOptions = {}) {
    super(message, options);
    this.name = 'UnreadableManifestError';
  }
}

/**
 * A manifest S3 says does not exist (NoSuchKey): the backup was deleted since it was listed (a
 * prune running at the same time: the schedule's and an operator's, or two runs), or its key was
 * never a complete backup. It is not a backup any more: listing drops it, retention neither counts
 * nor deletes it, `--latest` takes the one before. The same for a drill report deleted with its
 * backup since it was listed: `status` takes the newest report still there, `list` shows none.
 */
export class ManifestGoneError extends ManifestError {
  constructor(message: string, options: PgS3BackupErrorOptions = {}) {
    super(message, options);
    this.name = 'ManifestGoneError';
  }
}

/** Listing the bucket failed. */
export class ListError extends PgS3BackupError {
  constructor(message: string, options: PgS3BackupErrorOptions = {}) {
    super('list', message, options);
    this.name = 'ListError';
  }
}

/** Pruning failed, or refused to touch a key outside the database's prefix. */
export class PruneError extends PgS3BackupError {
  constructor(message: string, options: PgS3BackupErrorOptions = {}) {
    super('prune', message, options);
    this.name = 'PruneError';
  }
}

/** The Lambda's remaining time fell under the safety margin: the dump was stopped, the upload aborted. */
export class TimeBudgetError extends PgS3BackupError {
  readonly bytesWritten: number;
  readonly elapsedMs: number;
  constructor(message: string, progress: { bytesWritten: number; elapsedMs: number }, options: PgS3BackupErrorOptions = {}) {
    super('timeout', message, options);
    this.name = 'TimeBudgetError';
    this.bytesWritten = progress.bytesWritten;
    this.elapsedMs = progress.elapsedMs;
  }
}

/** The run was stopped by a signal (SIGTERM from systemd or `kill`, SIGINT from Ctrl-C). */
export class InterruptedError extends PgS3BackupError {
  readonly signal: NodeJS.Signals;
  constructor(signal: NodeJS.Signals, message = `interrupted by ${signal}`, options: PgS3BackupErrorOptions = {}) {
    super('interrupted', message, {
      hint: 'The run was stopped from outside (systemd stop, kill, Ctrl-C, a shutdown): pg_dump was stopped and the upload aborted. Run the backup again.',
      ...options,
    });
    this.name = 'InterruptedError';
    this.signal = signal;
  }
}

/** One or more databases failed in a run; each failure was reported and alerted on its own. */
export class BackupRunError extends PgS3BackupError {
  readonly failures: readonly { readonly database: string; readonly stage: Stage; readonly message: string; readonly hint?: string | undefined }[];
  constructor(failures: BackupRunError['failures'], options: PgS3BackupErrorOptions = {}) {
    const first = failures[0];
    super(
      first?.stage ?? 'dump',
      `backup failed for ${failures.length} database(s): ${failures.map((f) => `${f.database} (${f.stage}: ${f.message})`).join('; ')}`,
      options,
    );
    this.name = 'BackupRunError';
    this.failures = failures;
  }
}

// --- restore, verify and the CLI (issue 5) ---

/** A command-line usage problem the parser cannot see (conflicting or malformed values): exit 2. */
export class UsageError extends PgS3BackupError {
  constructor(message: string, options: PgS3BackupErrorOptions = {}) {
    super('usage', message, options);
    this.name = 'UsageError';
  }
}

/** A backup could not be downloaded to the temporary file (S3, permissions, disk space). */
export class DownloadError extends PgS3BackupError {
  constructor(message: string, options: PgS3BackupErrorOptions = {}) {
    super('download', message, options);
    this.name = 'DownloadError';
  }
}

/**
 * A dump (or a sharded backup's data archive) S3 says does not exist (NoSuchKey) when it is
 * opened: the backup was deleted after it was chosen (a prune running at the same time, once a
 * newer backup completed), or it never completed. Not damage: nothing of it is there to read.
 */
export class DumpGoneError extends DownloadError {
  constructor(message: string, options: PgS3BackupErrorOptions = {}) {
    super(message, options);
    this.name = 'DumpGoneError';
  }
}

/** The downloaded dump's size or SHA-256 differs from its manifest: it was not restored. */
export class IntegrityError extends PgS3BackupError {
  constructor(message: string, options: PgS3BackupErrorOptions = {}) {
    super('verify', message, {
      hint: 'Do not use this object. Restore an older backup (pg-s3-backup list) and investigate who changed it (S3 server access logs, CloudTrail).',
      ...options,
    });
    this.name = 'IntegrityError';
  }
}

/** The restore target database does not exist (and --create was not given). */
export class DatabaseMissingError extends PgS3BackupError {
  constructor(message: string, options: PgS3BackupErrorOptions = {}) {
    super('connect', message, { hint: 'Create it first, or pass --create to have the restore create it.', ...options });
    this.name = 'DatabaseMissingError';
  }
}

/** The restore target already holds objects and --clean was not given: nothing was touched. */
export class TargetNotEmptyError extends PgS3BackupError {
  constructor(message: string, options: PgS3BackupErrorOptions = {}) {
    super('restore', message, {
      hint: 'Restore into a new database (--create with a new name in --target-url), or pass --clean to drop and replace the objects the backup contains.',
      ...options,
    });
    this.name = 'TargetNotEmptyError';
  }
}

/** pg_restore (or the database work around it) failed. */
export class RestoreError extends PgS3BackupError {
  constructor(message: string, options: PgS3BackupErrorOptions = {}) {
    super('restore', message, options);
    this.name = 'RestoreError';
  }
}

/**
 * pg_restore (18) refuses to render the database's own definition (CREATE DATABASE, its comment,
 * settings, grants): a database name holding a line break (CVE-2025-8714). The tables can still
 * be restored into a database that exists; `--create` cannot make it as the backup defines it.
 */
export class DefinitionUnreadableError extends RestoreError {
  constructor(message: string, options: PgS3BackupErrorOptions = {}) {
    super(message, options);
    this.name = 'DefinitionUnreadableError';
  }
}

// --- restore drills (issue 13) ---

/** The throwaway PostgreSQL server of a drill (or `verify --local`) could not be created, started or stopped. */
export class ThrowawayServerError extends PgS3BackupError {
  constructor(message: string, options: PgS3BackupErrorOptions = {}) {
    super('drill', message, options);
    this.name = 'ThrowawayServerError';
  }
}

// --- client-side encryption (issue 16 §2) ---

/**
 * An encrypted backup cannot be opened with what was given: no identity (neither
 * --identity-file/AGE_IDENTITY_FILE nor --identity-secret/AGE_IDENTITY_SECRET_ARN), one that
 * cannot be read or parsed, or one that is not among the backup's recipients. Raised before the
 * target is touched. Its message never holds an identity.
 */
export class IdentityError extends PgS3BackupError {
  constructor(message: string, options: PgS3BackupErrorOptions = {}) {
    super('decrypt', message, options);
    this.name = 'IdentityError';
  }
}

/** The ciphertext is not a readable age file, or a chunk fails its authentication (damaged, truncated): nothing was restored. */
export class DecryptionError extends PgS3BackupError {
  constructor(message: string, options: PgS3BackupErrorOptions = {}) {
    super('decrypt', message, {
      hint: 'Do not use this object. Restore an older backup (pg-s3-backup list) and investigate who changed it (S3 server access logs, CloudTrail).',
      ...options,
    });
    this.name = 'DecryptionError';
  }
}

/**
 * `restore --remote` / `verify --remote`: the Fargate task could not be started, was stopped, did
 * not end in time, or could not be followed. The restore's own failure is not this: the task's
 * error is reported as it is, with the task's exit code.
 */
export class RemoteTaskError extends PgS3BackupError {
  constructor(message: string, options: PgS3BackupErrorOptions = {}) {
    super('remote', message, options);
    this.name = 'RemoteTaskError';
  }
}
