/**
 * What a killed run leaves in the temporary folder (SIGKILL of `verify --local` or `restore`, a
 * Lambda sandbox stopped at its timeout): a downloaded dump — plaintext production data — and a
 * throwaway server's folder. Each such folder carries an owner file naming the process that made
 * it (`<pid> <start time>`: a pid alone may be reused, by a Lambda runtime restarted in the same
 * sandbox for one), so that a later run removes only folders whose owner is gone, never those of
 * a run still going on beside it.
 */
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Folders of downloaded dumps (download.ts): `<tempDir>/pgs3-dump-XXXXXX/backup.dump`. */
export const DUMP_DIR_PREFIX = 'pgs3-dump-';
const OWNER_FILE = 'owner';

/** A process's start time in clock ticks since boot (/proc/<pid>/stat, field 22), where /proc exists. */
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/**
 * Marks `dir` as this process's. The file is written under another name and renamed into place: a
 * sweep beside us then finds either no owner file (left alone) or the whole one, never the empty
 * file writeFileSync creates before it writes (read as "owner gone", it removed a live run's dump).
 */
export function markOwner(dir: string): void {
  const partial = join(dir, `${OWNER_FILE}.${process.pid}.partial`);
  writeFileSync(partial, `${process.pid} ${startTime(process.pid) ?? '-'}\n`, { mode: 0o600 });
  renameSync(partial, join(dir, OWNER_FILE));
}

/** Whether the process that made `dir` still runs; undefined when `dir` names none (made before owner files, or its owner file not complete yet). */
export function ownerAlive(dir: string): boolean | undefined {
  let text: string;
  try {
    text = readFileSync(join(dir, OWNER_FILE), 'utf8');
  } catch {
    return undefined;
  }
  // Whole owner files end with a newline. One without is being written by a run that does not
  // rename it into place (an earlier release beside this one): not ours to judge either.
  if (!text.endsWith('\n')) return undefined;
  const [pidText, start] = text.trim().split(' ');
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid < 1) return false;
  if (start !== undefined && start !== '-' && existsSync('/proc/self/stat')) return startTime(pid) === start;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes the dump folders in `parentDir` whose owner is gone; returns them. Folders without an owner file are not ours to judge: left alone. */
export function sweepStaleDumps(parentDir: string): string[] {
  const removed: string[] = [];
  for (const name of existsSync(parentDir) ? readdirSync(parentDir) : []) {
    if (!name.startsWith(DUMP_DIR_PREFIX)) continue;
    const dir = join(parentDir, name);
    try {
      if (!statSync(dir).isDirectory() || ownerAlive(dir) !== false) continue;
      rmSync(dir, { recursive: true, force: true });
      removed.push(dir);
    } catch {
      // Not ours to remove (another user's): leave it.
    }
  }
  return removed;
}
