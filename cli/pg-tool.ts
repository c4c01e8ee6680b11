/**
 * Where the CLI looks for pg_dump and pg_restore off Lambda, handed to the engine's one resolver
 * (engine/pg/tools.ts): PG_DUMP_BIN's siblings, else a layer mounted at /opt, else the layer built
 * in this repository (npm run build:layer), else the program of that name on PATH. The PATH one is
 * often older than 18 and cannot read pg_dump 18 archives; restore's error message says so.
 */
import { hostArchitecture, layerRoot, REPO_ROOT } from '../layers/pg-dump/paths.ts';
import { DEFAULT_LAYER_ROOT, type ToolSearch } from '../engine/pg/tools.ts';

export { hostArchitecture, REPO_ROOT };

/** The layer built in this repository for this machine's architecture. */
export function repoLayerRoot(): string {
  return layerRoot(hostArchitecture());
}

export const LOCAL_PG_TOOLS: Omit<ToolSearch, 'pgDumpBin'> = { layerRoots: [DEFAULT_LAYER_ROOT, repoLayerRoot()], orPath: true };
