/**
 * The wording of alerts and notices: pure formatting, the one place messages are written. Where
 * they go, and how long that may take, is engine/alerts/'s.
 */
import { PgS3BackupError, type Stage } from './errors.ts';
import { describeExit } from './pg/process.ts';

export const SUBJECT_PREFIX = '[pg-s3-backup]';
/** SNS's limit for a subject. */
export const MAX_SUBJECT_LENGTH = 100;

export interface Message {
  readonly subject: string;
  readonly body: string;
}

export interface FailureReport {
  readonly database: string;
  readonly stage: Stage;
  readonly error: Error;
  /** The dump key attempted, if one was chosen. */
  readonly key?: string | undefined;
  readonly bucket?: string | undefined;
  readonly requestId?: string | undefined;
  readonly startedAt: Date;
  readonly failedAt: Date;
  /** Every text here goes through it (secrets redacted). */
  readonly redact: (text: string) => string;
  /** With stage "prune": the size of the complete backup at `key` (this run's). */
  readonly completeBytes?: number | undefined;
}

/**
 * SNS subjects must be ASCII without control characters, at most 100 characters: other
 * characters become `?`, accents are dropped first (`données` → `donnees`).
 */
export function subjectText(text: string): string {
  const ascii = text.normalize('NFKD').replace(/[\u0300-\u036f]/g, '').replace(/[^\x20-\x7e]/g, '?');
  return ascii.slice(0, MAX_SUBJECT_LENGTH);
}

export function formatFailure(r: FailureReport): Message {
  const e = r.error;
  const lines: string[] = [
    r.stage === 'prune' && r.key
      ? `pg-s3-backup: pruning the older backups of database ${JSON.stringify(r.database)} FAILED (its new backup is complete).`
      : `pg-s3-backup: the backup of database ${JSON.stringify(r.database)} FAILED at stage "${r.stage}".`,
    '',
    `Error: ${r.redact(`${e.name}: ${e.message}`)}`,
  ];
  if (e instanceof PgS3BackupError && e.hint) lines.push(`What to do: ${r.redact(e.hint)}`);
  const outcome = (e as { outcome?: { exitCode: number | null; signal: NodeJS.Signals | null; stderrTail: readonly string[] } }).outcome;
  if (outcome) {
    lines.push(`Exit: ${describeExit(outcome.exitCode, outcome.signal)} (code ${outcome.exitCode ?? 'none'}, signal ${outcome.signal ?? 'none'})`);
    if (outcome.stderrTail.length > 0 && !e.message.includes(outcome.stderrTail.join('\n'))) {
      lines.push('', 'Last lines of stderr:', ...outcome.stderrTail.map((l) => `  ${r.redact(l)}`));
    }
  }
  const progress = e as { bytesWritten?: number; elapsedMs?: number };
  if (progress.bytesWritten !== undefined) lines.push(`Bytes written before stopping: ${progress.bytesWritten}; elapsed: ${Math.round((progress.elapsedMs ?? 0) / 1000)} s`);
  lines.push(
    '',
    ...(r.stage === 'prune' && r.key
      ? [
          // Pruning runs only after a complete backup: say so, never "nothing was written".
          `The backup itself is complete: s3://${r.bucket ?? ''}/${r.key} (dump and manifest${r.completeBytes === undefined ? '' : `, ${r.completeBytes} bytes`}).`,
          'Only the pruning of older backups failed, and it stopped at the error above: more backups than the retention rules keep may remain until the next successful run prunes them (or run `pg-s3-backup prune` once the cause is fixed).',
        ]
      : [`Key attempted: ${r.key ? `s3://${r.bucket ?? ''}/${r.key}` : '(none: failed before choosing one)'}`, ...leftoverLines(e, r.bucket)]),
    `Request id: ${r.requestId ?? '(none)'}`,
    `Started: ${r.startedAt.toISOString()}`,
    `Failed:  ${r.failedAt.toISOString()} (after ${Math.round((r.failedAt.getTime() - r.startedAt.getTime()) / 1000)} s)`,
  );
  if (e.cause instanceof Error && !e.message.includes(e.cause.message)) lines.push(`Cause: ${r.redact(`${e.cause.name}: ${e.cause.message}`)}`);
  return { subject: subjectText(`${SUBJECT_PREFIX} FAILED ${r.database}: ${r.stage}`), body: lines.join('\n') };
}

/** What the failed run left in the bucket: the truth, never "nothing" when the clean-up failed. */
function leftoverLines(e: Error, bucket: string | undefined): string[] {
  const left = e instanceof PgS3BackupError ? e.leftover : undefined;
  const pruned = 'Existing backups were not pruned.';
  if (!left) return [`Nothing was written at that key: the multipart upload was aborted, or never started. ${pruned}`];
  const lines: string[] = [];
  if (left.uploadId !== undefined) {
    lines.push(
      `The multipart upload could NOT be aborted (${left.reason}): upload id ${left.uploadId} is still open and its parts are stored.`,
      `What removes it: the bucket's lifecycle rule (AbortIncompleteMultipartUpload), or \`pg-s3-backup prune\` once it is a day old, or by hand: aws s3api abort-multipart-upload --bucket ${bucket ?? '<bucket>'} --key <key above> --upload-id ${left.uploadId}`,
    );
  }
  if (left.objectKey !== undefined) {
    lines.push(
      `An object may be left at that key (${left.reason}). It has no manifest, so it is not a backup: restore, list and retention ignore it, and prune deletes it once it is a day old.`,
    );
  }
  lines.push(pruned);
  return lines;
}

export interface SuccessSummary {
  readonly database: string;
  readonly key: string;
  readonly bytes: number;
  readonly sha256: string;
  readonly durationMs: number;
}

export function formatSuccess(
  backups: readonly SuccessSummary[],
  pruned: readonly string[],
  bucket: string,
  locked: readonly { readonly key: string; readonly retainUntil?: string; readonly legalHold: boolean }[] = [],
): Message {
  const names = backups.map((b) => b.database).join(', ');
  return {
    subject: subjectText(`${SUBJECT_PREFIX} OK ${names}`),
    body: [
      `pg-s3-backup: ${backups.length} backup(s) completed.`,
      '',
      ...backups.map((b) => `- ${b.database}: s3://${bucket}/${b.key} (${b.bytes} bytes, ${Math.round(b.durationMs / 1000)} s, sha256 ${b.sha256})`),
      '',
      `Pruned ${pruned.length} object(s).`,
      // Retention would have deleted these, but Object Lock holds them: a later run deletes them.
      ...(locked.length > 0
        ? [
            `Left ${locked.length} backup(s) in place under Object Lock (deleted by a later prune once the lock ends):`,
            ...locked.map((l) => `- s3://${bucket}/${l.key}${l.retainUntil ? ` (retained until ${l.retainUntil})` : ''}${l.legalHold ? ' (legal hold)' : ''}`),
          ]
        : []),
    ].join('\n'),
  };
}
