/** Small pieces the command modules share: exit codes and commander option parsers. */
import { InvalidArgumentError } from 'commander';

export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

/** Thrown by a command that already reported its outcome and only needs the exit code set. */
export class ExitCode extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
    this.name = 'ExitCode';
  }
}

/** commander option parser for `--jobs`. */
export function positiveInt(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 64) throw new InvalidArgumentError('expected a whole number from 1 to 64');
  return Number(value);
}

/** commander option collector for repeatable options (`--database A --database B`). */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
