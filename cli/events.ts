/**
 * The CLI's adapter of the engine's events (engine/events.ts): a redrawn line on a terminal, one
 * JSON object per line otherwise. The JSON `event` is the union's tag, so the CLI's output is a
 * declared interface (CLI_EVENT_NAMES, test/cli/events.test.ts): the engine's log wording never
 * reaches it.
 */
import { ENGINE_EVENTS, type EngineEvent, type EngineEventName, type EventSink } from '../engine/events.ts';
import type { Output, ProgressEvent } from './output.ts';

/** What the CLI itself writes besides the engine's events: the result (last), an error, a warning; `status`'s lines. */
export const CLI_OWN_EVENTS = ['result', 'error', 'warning', 'database status', 'alarm state', 'remote task'] as const;

/** Every `event` a JSON line of the CLI can carry: the engine's (all but metrics-only ones) and the CLI's own. */
export const CLI_EVENT_NAMES: readonly string[] = [
  ...(Object.keys(ENGINE_EVENTS) as EngineEventName[]).filter((name) => ENGINE_EVENTS[name] !== 'metric'),
  ...CLI_OWN_EVENTS.filter((name) => !(name in ENGINE_EVENTS)),
];

/** The line the CLI draws for one engine event (undefined: not shown). */
export function cliEvent(e: EngineEvent): ProgressEvent | undefined {
  const kind = ENGINE_EVENTS[e.event];
  if (kind === 'metric') return undefined;
  // pg_dump's output has bytes and a rate but no total: its size is known only when it ends.
  if (e.event === 'dump') return { ...e, streaming: true };
  return kind === 'warn' || kind === 'error' ? { ...e, level: kind } : e;
}

/**
 * The sink the CLI gives the engine. pg_dump's progress arrives per chunk: at most five redraws a
 * second (Output throttles JSON lines further).
 */
export function cliEvents(out: Output, now: () => number = Date.now): EventSink {
  let lastDump = 0;
  return (e) => {
    if (e.event === 'dump') {
      const t = now();
      if (t - lastDump < 200) return;
      lastDump = t;
    }
    const line = cliEvent(e);
    if (line) out.progress(line);
  };
}
