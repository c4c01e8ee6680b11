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
