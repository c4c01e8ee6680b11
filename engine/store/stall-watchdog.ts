/**
 * The stall watchdog of a streamed upload, and what its errors say: no byte from the tool for
 * DUMP_STALL_TIMEOUT_SECONDS stops the dump (naming S3 when S3 is the one not taking the bytes),
 * and the time budget's error mid-dump names what the dump was doing when it ended.
 */
import { DumpError, TimeBudgetError, UploadError, type PgS3BackupError } from '../errors.ts';

/** No dump byte for this long is worth naming as the cause when the time budget ends. */
const IDLE_WORTH_NAMING_MS = 10_000;

export interface StallWatch {
  /** No byte for this long (ms) stops the tool: DUMP_STALL_TIMEOUT_SECONDS; undefined or 0: no watchdog. */
  readonly stallMs: number | undefined;
  /** How long since the last byte (ms). */
  readonly idleMs: () => number;
  /** The tool has exited or the upload already failed: nothing left to watch. */
  readonly over: () => boolean;
  readonly bytes: () => number;
  /** Whether the bytes stopped because S3 stopped taking them. */
  readonly s3Blocked: () => boolean;
  readonly toolName: string;
  readonly onStall: (err: PgS3BackupError) => void;
}

/** Starts watching; returns the function that stops it. */
export function watchForStall(w: StallWatch): () => void {
  const stallMs = w.stallMs;
  if (stallMs === undefined || stallMs <= 0) return () => {};
  const timer = setInterval(() => {
    if (w.over()) return;
    const idle = w.idleMs();
    if (idle >= stallMs) w.onStall(stallError({ idleMs: idle, bytes: w.bytes(), s3Blocked: w.s3Blocked(), toolName: w.toolName }));
  }, Math.max(100, Math.min(1000, Math.floor(stallMs / 4))));
  timer.unref();
  return () => clearInterval(timer);
}

/** The time budget ended mid-dump: the message and hint say what the dump was doing. */
export function budgetExhausted(s: { bytes: number; elapsedMs: number; idleMs: number; s3Blocked: boolean; toolName?: string }): TimeBudgetError {
  const tool = s.toolName ?? 'pg_dump';
  const idle = Math.round(s.idleMs / 1000);
  let hint: string;
  // Idle for half the run (or 10 s) is no longer throughput: name what stopped.
  if (s.idleMs < Math.min(IDLE_WORTH_NAMING_MS, s.elapsedMs / 2)) {
    hint = 'The dump was still running: give the function more memory (more CPU and network) or a longer timeout (15 min at most); for databases that cannot be dumped within 15 minutes, run the CLI or scripts/backup.sh on a host (host mode).';
  } else if (s.s3Blocked) {
    hint = `S3 stopped accepting data ${idle} s before the end (the parts in flight got no answer): check the network path to S3 (VPC endpoint, NAT, proxy) and S3's health; AWS_SOCKET_TIMEOUT_SECONDS and AWS_REQUEST_TIMEOUT_SECONDS bound each request.`;
  } else if (s.bytes === 0) {
    hint = `${tool} wrote nothing for ${idle} s: it was most likely waiting for a lock held by another session (ACCESS EXCLUSIVE: a migration, VACUUM FULL, ALTER TABLE) or for a server that does not answer; look at pg_stat_activity (application_name pg-s3-backup) and lower PG_LOCK_WAIT_TIMEOUT.`;
  } else {
    hint = `${tool} stopped receiving data from the server ${idle} s before the end: a stalled server or network path, or a lock taken after the dump started (pg_stat_activity, application_name pg-s3-backup); DUMP_STALL_TIMEOUT_SECONDS stops such a dump sooner.`;
  }
  return new TimeBudgetError(`time budget exhausted after ${Math.round(s.elapsedMs / 1000)} s with ${s.bytes} bytes uploaded: dump stopped, upload aborted`, { bytesWritten: s.bytes, elapsedMs: s.elapsedMs }, { hint });
}

/** The stall watchdog fired: S3 or the dump stopped, and the error says which. */
function stallError(s: { idleMs: number; bytes: number; s3Blocked: boolean; toolName: string }): PgS3BackupError {
  const idle = Math.round(s.idleMs / 1000);
  if (s.s3Blocked) {
    return new UploadError(`S3 accepted no data for ${idle} s (DUMP_STALL_TIMEOUT_SECONDS) after ${s.bytes} bytes: ${s.toolName} stopped, upload aborted`, {
      hint: 'The parts in flight got no answer: check the network path to S3 (VPC endpoint, NAT, proxy) and S3\'s health, then run the backup again.',
    });
  }
  return new DumpError(`${s.toolName} wrote no data for ${idle} s (DUMP_STALL_TIMEOUT_SECONDS) after ${s.bytes} bytes: stopped, upload aborted`, {
    hint: s.bytes === 0
      ? `${s.toolName} is most likely waiting for a lock another session holds, or for a server that does not answer: look at pg_stat_activity (application_name pg-s3-backup); PG_LOCK_WAIT_TIMEOUT bounds lock waits.`
      : 'The server stopped sending data: a stalled server or network path, or a lock taken after the dump started (look at pg_stat_activity, application_name pg-s3-backup). Run the backup again.',
  });
}
