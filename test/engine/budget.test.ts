/**
 * The shared time budget (engine/budget.ts): the one signal of the backup run, the drill's
 * databases and the CLI's commands. Pure: real timers of a few ms, every wait on the signal's own
 * event (node's timers fire in order of expiry, so a later, longer timer runs after the budget's).
 */
import { getEventListeners } from 'node:events';
import { setTimeout as after } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { TimeBudget, untilAborted } from '../../engine/budget.ts';
import { InterruptedError, TimeBudgetError } from '../../engine/errors.ts';

const aborted = (signal: AbortSignal) => new Promise<void>((resolve) => (signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve(), { once: true })));

const ranOut = (what: string) => (elapsedMs: number) => new TimeBudgetError(`${what} ran out after ${elapsedMs} ms`, { bytesWritten: 0, elapsedMs }, { hint: 'give it more time' });

describe('TimeBudget', () => {
  it('the deadline aborts the signal with the owner\'s TimeBudgetError, made when it passes', async () => {
    const budget = new TimeBudget({ ms: 5, expired: ranOut('the test') });
    expect(budget.signal.aborted).toBe(false);
    await aborted(budget.signal);
    const reason = budget.signal.reason as TimeBudgetError;
    expect(reason).toBeInstanceOf(TimeBudgetError);
    expect(reason.stage).toBe('timeout');
    expect(reason.hint).toBe('give it more time');
    expect(reason.elapsedMs).toBeGreaterThanOrEqual(4);
    expect(reason.message).toBe(`the test ran out after ${reason.elapsedMs} ms`);
    expect(budget.expired).toBe(true);
    expect(() => budget.signal.throwIfAborted()).toThrow(reason);
    budget.end();
  });

  it('a remaining-time function is read once, at the start; what is left of 0 or less ends the work at once', async () => {
    let reads = 0;
    const budget = new TimeBudget({ ms: () => (reads++, -1_000), expired: ranOut('the invocation') });
    expect(reads).toBe(1);
    await aborted(budget.signal);
    expect(budget.expired).toBe(true);
    expect(budget.ms).toBe(-1_000);
    expect(reads).toBe(1);
  });

  it('an interruption wins with its own reason; the deadline passing afterwards changes nothing', async () => {
    const interrupt = new AbortController();
    const budget = new TimeBudget({ ms: 5, interrupt: interrupt.signal, expired: ranOut('the test') });
    const signal = new InterruptedError('SIGTERM');
    interrupt.abort(signal);
    expect(budget.signal.aborted).toBe(true);
    expect(budget.signal.reason).toBe(signal);
    await after(20);
    expect(budget.signal.reason).toBe(signal);
    expect(budget.expired).toBe(false);
    budget.end();
  });

  it('an interruption that came before the budget was made ends it at once, with its reason', () => {
    const interrupt = new AbortController();
    interrupt.abort(new InterruptedError('SIGINT'));
    const budget = new TimeBudget({ ms: 60_000, interrupt: interrupt.signal, expired: ranOut('the test') });
    expect(budget.signal.reason).toBeInstanceOf(InterruptedError);
    expect(budget.expired).toBe(false);
    budget.end();
  });

  it('end() clears the deadline and stops listening to the interruption', async () => {
    const interrupt = new AbortController();
    const budget = new TimeBudget({ ms: 5, interrupt: interrupt.signal, expired: ranOut('the test') });
    expect(getEventListeners(interrupt.signal, 'abort')).toHaveLength(1);
    budget.end();
    expect(getEventListeners(interrupt.signal, 'abort')).toHaveLength(0);
    await after(20);
    expect(budget.signal.aborted).toBe(false);
    interrupt.abort(new InterruptedError('SIGTERM'));
    expect(budget.signal.aborted).toBe(false);
  });
});

describe('untilAborted', () => {
  it('settles with the work and releases its listener, whether the work resolves or rejects', async () => {
    const budget = new TimeBudget({ ms: 60_000, expired: ranOut('the test') });
    await expect(untilAborted(Promise.resolve(42), budget.signal)).resolves.toBe(42);
    expect(getEventListeners(budget.signal, 'abort')).toHaveLength(0);
    await expect(untilAborted(Promise.reject(new Error('the work failed')), budget.signal)).rejects.toThrow('the work failed');
    expect(getEventListeners(budget.signal, 'abort')).toHaveLength(0);
    budget.end();
  });

  it('rejects with the budget\'s reason as soon as it fires, though the work never settles', async () => {
    const budget = new TimeBudget({ ms: 5, expired: ranOut('the wait') });
    const never = new Promise<never>(() => {});
    await expect(untilAborted(never, budget.signal)).rejects.toBeInstanceOf(TimeBudgetError);
    // Already stopped: rejects at once, with the same reason, and adds no listener.
    await expect(untilAborted(never, budget.signal)).rejects.toBe(budget.signal.reason);
    expect(getEventListeners(budget.signal, 'abort')).toHaveLength(0);
  });
});
