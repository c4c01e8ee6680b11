/**
 * What bounds a run: one signal, aborted when its time budget ends or when it is interrupted, and
 * the helpers that make every wait of the run end with it (an AWS client whose every call carries
 * the signal, a promise raced against it). Used by the backup run; the restore and the drill can
 * bound themselves the same way.
 */

/**
 * An AWS client whose every call is cancelled when `signal` fires: the run's time budget and its
 * interruption reach every stage (secret, key check, upload, manifest, prune) this way.
 */
export function boundedClient<C extends { send: (...args: never[]) => Promise<unknown> }>(client: C, signal: AbortSignal): C {
  return new Proxy(client, {
    get(target, prop, receiver) {
      if (prop !== 'send') return Reflect.get(target, prop, receiver) as unknown;
      return (command: unknown, options?: { abortSignal?: AbortSignal }) => {
        const abortSignal = options?.abortSignal ? AbortSignal.any([signal, options.abortSignal]) : signal;
        return (target.send as (c: unknown, o: unknown) => Promise<unknown>)(command, { ...options, abortSignal });
      };
    },
  });
}

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
