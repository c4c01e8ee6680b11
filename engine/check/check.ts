/**
 * A check answers "would this part fail tonight?" before it does: a name, a verdict, what was
 * seen, and what to do. `ok` is false only for a failure; a warning passes (`status: 'warn'`)
 * but is shown, e.g. an e-mail subscription still waiting for its confirmation link.
 */

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface Check {
  readonly name: string;
  readonly ok: boolean;
  readonly status: CheckStatus;
  /** What was seen (never a secret). */
  readonly detail: string;
  /** What to do about it; absent when there is nothing to do. */
  readonly fix?: string | undefined;
}

export interface CheckReport {
  /** No check failed (warnings allowed). */
  readonly ok: boolean;
  readonly checks: readonly Check[];
}

export function pass(name: string, detail: string): Check {
  return { name, ok: true, status: 'ok', detail };
}

export function warn(name: string, detail: string, fix?: string): Check {
  return { name, ok: true, status: 'warn', detail, ...(fix ? { fix } : {}) };
}

export function fail(name: string, detail: string, fix?: string): Check {
  return { name, ok: false, status: 'fail', detail, ...(fix ? { fix } : {}) };
}

/** A check that could not run because an earlier one failed: a failure, naming what it waits for. */
export function notChecked(name: string, because: string): Check {
  return fail(name, `not checked: ${because}`, `Fix "${because.replace(/ failed$/, '')}" first.`);
}

export function report(checks: readonly Check[]): CheckReport {
  return { ok: checks.every((c) => c.ok), checks };
}

/** An error as check text: its name and message, and its hint as the fix. */
export function describeError(err: unknown): { detail: string; fix: string | undefined } {
  const e = err instanceof Error ? err : new Error(String(err));
  const hint = (e as { hint?: unknown }).hint;
  // AWS errors are known by their name (AccessDenied, NoSuchBucket…): keep it.
  const detail = e.name === 'Error' ? e.message : `${e.name}: ${e.message}`;
  return { detail, fix: typeof hint === 'string' ? hint : undefined };
}
