/**
 * What bounds a backup run: the shared TimeBudget (engine/budget.ts: one signal, aborted when the
 * run's time ends or when it is interrupted) with what only a backup run has, the stage tracker
 * its error names. The store bounds its own requests with the same signal (BackupStore.bounded).
 */
import { TimeBudget } from '../budget.ts';
import { TimeBudgetError, type Stage } from '../errors.ts';

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
export class RunBudget extends TimeBudget {
  readonly tracker: StageTracker;

  constructor(options: RunBudgetOptions) {
    const remaining = options.remainingTimeMs?.();
    const lambdaBudget = remaining === undefined ? Infinity : remaining - options.timeMarginMs;
    const lambda = lambdaBudget <= options.runTimeoutMs;
    const budgetName = lambda
      ? `the invocation's remaining time less TIME_MARGIN_SECONDS (${Math.round(options.timeMarginMs / 1000)} s)`
      : `RUN_TIMEOUT_SECONDS (${Math.round(options.runTimeoutMs / 1000)} s)`;
    const tracker = new StageTracker(options.start.database, options.start.stage);
    super({
      ms: Math.min(options.runTimeoutMs, lambdaBudget),
      interrupt: options.interrupt,
      expired: (elapsedMs) =>
        new TimeBudgetError(`time budget exhausted after ${Math.round(elapsedMs / 1000)} s, at stage "${tracker.stage}" of database ${JSON.stringify(tracker.database)} (${budgetName})`, { bytesWritten: 0, elapsedMs }, {
          hint: options.hint(tracker.stage, lambda),
        }),
    });
    this.tracker = tracker;
  }
}
