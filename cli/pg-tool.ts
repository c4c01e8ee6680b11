/**
 * Where the CLI finds pg_restore (and pg_dump for `run`) off Lambda: PG_DUMP_BIN's siblings, else a
 * layer mounted at /opt, else the layer built in this repository (npm run build:layer), else the
 * program of that name on PATH. The PATH one is often older than 18 and cannot read pg_dump 18
 * archives; restore's error message says so when it happens.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { hostArchitecture, layerRoot, REPO_ROOT } from '../layers/pg-dump/paths.ts';
import { DEFAULT_LAYER_ROOT, findLoader, layerCommand, resolvePgTool, type PgTool, type SpawnCommand } from '../engine/pg/tools.ts';

export { hostArchitecture, REPO_ROOT };

/** The layer built in this repository for this machine's architecture. */
export function repoLayerRoot(): string {
  return layerRoot(hostArchitecture());
}

function hasLayerTool(root: string, tool: PgTool): boolean {
  return findLoader(root) !== undefined && existsSync(join(root, 'libexec', tool));
}

export function resolveLocalPgTool(
  tool: PgTool,
  options: { readonly pgDumpBin?: string | undefined; readonly layerRoots?: readonly string[] } = {},
): SpawnCommand {
  if (options.pgDumpBin) return resolvePgTool(tool, { pgDumpBin: options.pgDumpBin });
  for (const root of options.layerRoots ?? [DEFAULT_LAYER_ROOT, repoLayerRoot()]) {
    if (hasLayerTool(root, tool)) return layerCommand(root, tool);
  }
  return { file: tool, args: [] };
}
