/**
 * What bounds a backup run: one signal, aborted when its time budget ends or when it is
 * interrupted, and the helpers that make every wait of the run end with it (a promise raced
 * against it). The store bounds its own requests with the same signal (BackupStore.bounded). Only
 * the backup run has a budget today, so it lives here; a restore or drill budget would move it up.
 */
import { TimeBudgetError, type Stage } from '../errors.ts';

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

/** Throws the run's reason (time budget, interruption) if it has been stopped. */
export function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) throw signal.reason as Error;
}

/**
 * Where a run is: the database (or pseudo name) it works on and its stage. The budget's message
 * names them, so it is kept up to date explicitly: each piece of work `begin`s with the tracker,
 * and `enter`s its stages through the progress it got.
 */
export class StageTracker {
  constructor(
    public database: string,
    public stage: Stage,
  ) {}

  /** One piece of work (a database, the globals) starts at `stage`: its own progress, mirrored here. */
  begin(database: string, stage: Stage): WorkProgress {
    this.database = database;
    this.stage = stage;
    return new WorkProgress(this, stage);
  }

  /** The run moves on to `stage` of `database` without a piece of work of its own (pruning). */
  enter(database: string, stage: Stage): void {
    this.database = database;
    this.stage = stage;
  }
}

/** One piece of work's stage, key and bytes, so that a failure reports where it happened. */
export class WorkProgress {
  key: string | undefined = undefined;
  bytes = 0;
  constructor(
    private readonly run: StageTracker,
    private current: Stage,
  ) {}

  get stage(): Stage {
    return this.current;
  }

  /** Moves to `stage`, here and in the run's tracker. */
  enter(stage: Stage): void {
    this.current = stage;
    this.run.stage = stage;
  }
}

export interface RunBudgetOptions {
  /** The configured bound of the run (RUN_TIMEOUT_SECONDS), ms. */
  readonly runTimeoutMs: number;
  /** Lambda's `getRemainingTimeInMillis` (absent off Lambda). */
  readonly remainingTimeMs?: (() => number) | undefined;
  /** Kept of the invocation's time for the clean-up and the alerts (TIME_MARGIN_SECONDS), ms. */
  readonly timeMarginMs: number;
  /** Aborted on an interruption (SIGTERM/SIGINT): the run stops with its reason. */
  readonly interrupt?: AbortSignal | undefined;
  /** Where the run starts (the tracker's first database and stage). */
  readonly start: { readonly database: string; readonly stage: Stage };
  /** The hint of the budget's error, by the stage it ended in; `lambda`: the invocation's time was the bound. */
  readonly hint: (stage: Stage, lambda: boolean) => string;
}

/**
 * A run's time budget: the smaller of its configured bound and the invocation's remaining time
 * less the margin. One signal for the whole run: the budget or an interruption aborts it, with a
 * TimeBudgetError naming the stage and database the tracker holds, or the interruption's reason.
 * `end()` once the run is over (clears the timer, stops listening to the interruption).
 */
export class RunBudget {
  readonly signal: AbortSignal;
  readonly tracker: StageTracker;
  private readonly timer: NodeJS.Timeout;
  private readonly onInterrupt: () => void;

  constructor(private readonly options: RunBudgetOptions) {
    const t0 = Date.now();
    const remaining = options.remainingTimeMs?.();
    const lambdaBudget = remaining === undefined ? Infinity : remaining - options.timeMarginMs;
    const lambda = lambdaBudget <= options.runTimeoutMs;
    const budgetName = lambda
      ? `the invocation's remaining time less TIME_MARGIN_SECONDS (${Math.round(options.timeMarginMs / 1000)} s)`
      : `RUN_TIMEOUT_SECONDS (${Math.round(options.runTimeoutMs / 1000)} s)`;
    const tracker = new StageTracker(options.start.database, options.start.stage);
    this.tracker = tracker;
    const run = new AbortController();
    this.signal = run.signal;
    this.timer = setTimeout(() => {
      run.abort(new TimeBudgetError(`time budget exhausted after ${Math.round((Date.now() - t0) / 1000)} s, at stage "${tracker.stage}" of database ${JSON.stringify(tracker.database)} (${budgetName})`, { bytesWritten: 0, elapsedMs: Date.now() - t0 }, {
        hint: options.hint(tracker.stage, lambda),
      }));
    }, Math.max(0, Math.min(options.runTimeoutMs, lambdaBudget)));
    this.onInterrupt = () => run.abort(options.interrupt?.reason);
    if (options.interrupt?.aborted) this.onInterrupt();
    else options.interrupt?.addEventListener('abort', this.onInterrupt, { once: true });
  }

  end(): void {
    clearTimeout(this.timer);
    this.options.interrupt?.removeEventListener('abort', this.onInterrupt);
  }
}
