/**
 * What bounds a piece of work in time, for every feature that has a bound (the backup run, the
 * drill's databases, a restore or verify): one signal, aborted when the deadline passes or when
 * the work is interrupted, and the helper that makes a wait end with it. The signal's reason is
 * the error the work ends with: the owner's TimeBudgetError (it knows what ran out and what to do)
 * or the interruption's own reason (InterruptedError, a caller's signal), whichever came first.
 * `signal.throwIfAborted()` (the platform's) throws that reason where a step checks before it starts.
 */
import type { TimeBudgetError } from './errors.ts';

/** Resolves or rejects with `work`, or rejects with the signal's reason as soon as it fires. */
export function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e as Error);
      },
    );
  });
}

export interface TimeBudgetOptions {
  /**
   * The time the work has, ms from now: a number, or a function read once now (the time left of
   * something larger, e.g. Lambda's remaining time less a margin). 0 or less ends it at once.
   */
  readonly ms: number | (() => number);
  /** Aborted from outside (SIGTERM/SIGINT, a caller's own bound): the budget ends with its reason. */
  readonly interrupt?: AbortSignal | undefined;
  /** The error the deadline ends the work with, made when it passes (`elapsedMs` since the start). */
  readonly expired: (elapsedMs: number) => TimeBudgetError;
}

/**
 * A deadline and an interruption as one signal. Whichever comes first gives the signal its reason
 * (the other is then ignored). `end()` once the work is over: it clears the timer and stops
 * listening to the interruption, so a long-lived interrupt signal does not collect listeners.
 */
export class TimeBudget {
  readonly signal: AbortSignal;
  /** The bound, ms from the start. */
  readonly ms: number;
  private readonly startedAt = Date.now();
  private readonly timer: NodeJS.Timeout;
  private readonly interrupt: AbortSignal | undefined;
  private readonly onInterrupt: () => void;
  private ranOut = false;

  constructor(options: TimeBudgetOptions) {
    this.ms = typeof options.ms === 'number' ? options.ms : options.ms();
    const controller = new AbortController();
    this.signal = controller.signal;
    this.timer = setTimeout(() => {
      if (controller.signal.aborted) return;
      this.ranOut = true;
      controller.abort(options.expired(Date.now() - this.startedAt));
      // setTimeout takes at most 2^31-1 ms (about 24 days); a longer bound would fire at once.
    }, Math.min(Math.max(0, this.ms), 2 ** 31 - 1));
    this.interrupt = options.interrupt;
    this.onInterrupt = () => controller.abort(options.interrupt?.reason);
    if (options.interrupt?.aborted) this.onInterrupt();
    else options.interrupt?.addEventListener('abort', this.onInterrupt, { once: true });
  }

  /** The deadline ended the work (not an interruption). */
  get expired(): boolean {
    return this.ranOut;
  }

  end(): void {
    clearTimeout(this.timer);
    this.interrupt?.removeEventListener('abort', this.onInterrupt);
  }
}
