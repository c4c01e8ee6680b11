/**
 * How to spawn the PostgreSQL client tools. The layer (layers/pg-dump) ships real ELF programs in
 * `libexec/` with their whole library closure, loader and libc included, in `lib/`. They are run
 * through the bundled loader directly, because Lambda's LD_LIBRARY_PATH puts the system's /lib64
 * before /opt/lib: a plain exec would mix the layer's libraries with Amazon Linux's.
 */
import { existsSync, readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

export type PgTool = 'pg_dump' | 'pg_restore' | 'pg_dumpall';
/** The server programs of the pg-server layer (the throwaway server of restore drills). */
export type ServerTool = 'postgres' | 'initdb' | 'pg_ctl';

/** Where Lambda mounts layers. */
export const DEFAULT_LAYER_ROOT = '/opt';

export interface SpawnCommand {
  /** The program to execute (no shell). */
  readonly file: string;
  /** Arguments that must come before the tool's own. */
  readonly args: readonly string[];
}

/** The dynamic loader shipped in `<layerRoot>/lib` (ld-linux-x86-64.so.2 or ld-linux-aarch64.so.1). */
export function findLoader(layerRoot: string): string | undefined {
  const lib = join(layerRoot, 'lib');
  if (!existsSync(lib)) return undefined;
  const loader = readdirSync(lib).find((f) => /^ld-linux-.*\.so\.\d+$/.test(f));
  return loader ? join(lib, loader) : undefined;
}

/**
 * The command line that runs `tool` from the layer at `layerRoot` through the bundled loader:
 * `<root>/lib/ld-linux-*.so.* --library-path <root>/lib --argv0 <root>/bin/<tool> <root>/libexec/<tool>`.
 * `--argv0` matters: the tools locate themselves through argv[0] (a bare name would be looked up
 * on PATH, and fail with an error message when absent), and pg_dumpall runs the pg_dump beside
 * it through /bin/sh: `<root>/bin/pg_dump` is the layer's wrapper, which goes through the loader
 * again (`<root>/libexec/pg_dump` run directly would get the system's loader).
 */
export function layerCommand(layerRoot: string, tool: PgTool, loader = findLoader(layerRoot)): SpawnCommand {
  if (!loader) {
    throw new Error(`no dynamic loader (lib/ld-linux-*.so.*) in the pg_dump layer at ${layerRoot}: is the layer attached and built?`);
  }
  return {
    file: loader,
    args: ['--library-path', join(layerRoot, 'lib'), '--argv0', join(layerRoot, 'bin', tool), join(layerRoot, 'libexec', tool)],
  };
}

export interface ToolSearch {
  /** PG_DUMP_BIN: pg_dump, with pg_restore and pg_dumpall as its siblings. */
  readonly pgDumpBin?: string | undefined;
  /** Layer roots to look in, in order (default: /opt, where Lambda mounts layers). */
  readonly layerRoots?: readonly string[];
  /** Off Lambda: when no layer holds the tool, the program of that name on PATH. */
  readonly orPath?: boolean;
}

/**
 * The one lookup of the PostgreSQL client tools, for the function, the CLI, the bench and the
 * tests: an explicit `PG_DUMP_BIN` (its siblings for pg_restore and pg_dumpall); else the first
 * layer root that holds the tool; else, when `orPath`, the name on PATH (often older than 18:
 * restore's error says so when it cannot read an archive); else the first root, whose missing
 * loader is reported as a missing layer.
 */
export function resolvePgTool(tool: PgTool, search: ToolSearch = {}): SpawnCommand {
  if (search.pgDumpBin) {
    const file = tool === 'pg_dump' ? search.pgDumpBin : siblingOf(search.pgDumpBin, tool);
    return { file, args: [] };
  }
  const roots = search.layerRoots ?? [DEFAULT_LAYER_ROOT];
  for (const root of roots) {
    if (findLoader(root) !== undefined && existsSync(join(root, 'libexec', tool))) return layerCommand(root, tool);
  }
  if (search.orPath) return { file: tool, args: [] };
  return layerCommand(roots[0] ?? DEFAULT_LAYER_ROOT, tool);
}

function siblingOf(pgDumpBin: string, tool: PgTool): string {
  const name = basename(pgDumpBin).replace(/pg_dump/, tool);
  // A bare name (found on PATH) stays a bare name.
  return pgDumpBin.includes('/') ? join(dirname(pgDumpBin), name) : name;
}
