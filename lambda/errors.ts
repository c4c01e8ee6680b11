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
  | 'list'
  | 'download'
  | 'restore'
  | 'verify'
  | 'usage';

export interface PgS3BackupErrorOptions extends ErrorOptions {
  /** What the operator should do about it. */
  readonly hint?: string;
}

export class PgS3BackupError extends Error {
  readonly stage: Stage;
  readonly hint: string | undefined;
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
