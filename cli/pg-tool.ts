/**
 * Where the CLI looks for pg_dump and pg_restore off Lambda, handed to the engine's one resolver
 * (engine/pg/tools.ts): PG_DUMP_BIN's siblings, else a layer mounted at /opt, else the layer built
 * in this repository (npm run build:layer), else the program of that name on PATH. The PATH one is
 * often older than 18 and cannot read pg_dump 18 archives; restore's error message says so.
 */
import { hostArchitecture, layerRoot, REPO_ROOT } from '../layers/pg-dump/paths.ts';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_LAYER_ROOT, findLoader, type ToolSearch } from '../engine/pg/tools.ts';
import { UsageError } from '../engine/errors.ts';
import { DEFAULT_SERVER_LAYER_ROOT } from '../engine/restore/throwaway-server.ts';
import { serverLayerRoot } from '../layers/pg-server/paths.ts';

export { hostArchitecture, REPO_ROOT };

/** The layer built in this repository for this machine's architecture. */
export function repoLayerRoot(): string {
  return layerRoot(hostArchitecture());
}

export const LOCAL_PG_TOOLS: Omit<ToolSearch, 'pgDumpBin'> = { layerRoots: [DEFAULT_LAYER_ROOT, repoLayerRoot()], orPath: true };

/**
 * The pg-server layer for `verify --local`: --server-layer, else one mounted at /opt/pg-server,
 * else the one built in this repository (npm run build:layer:server).
 */
export function resolveServerLayer(explicit: string | undefined): string {
  const candidates = explicit ? [explicit] : [DEFAULT_SERVER_LAYER_ROOT, serverLayerRoot(hostArchitecture())];
  const found = candidates.find((root) => findLoader(root) !== undefined && existsSync(join(root, 'libexec', 'postgres')));
  if (found) return found;
  throw new UsageError(`no pg-server layer at ${candidates.join(' or ')}`, {
    hint: explicit
      ? '--server-layer must be the layer root (the folder holding lib/, libexec/ and share/: …/dist/<arch>/pg-server).'
      : 'Build it once: npm run build:layer:server (x86_64) or npm run build:layer:server -- arm64, then run verify --local again.',
  });
}
