/**
 * Repository paths of the pg-server layer (the throwaway PostgreSQL server of restore drills),
 * beside the layer itself: the CLI's `verify --local`, the CDK app, the demo and the tests find the
 * built layer here.
 */
import { join } from 'node:path';
import { REPO_ROOT, type Architecture } from '../pg-dump/paths.ts';

export { REPO_ROOT, type Architecture };

export const SERVER_LAYER_DIR = join(REPO_ROOT, 'layers', 'pg-server');
export const SERVER_BUILD_SCRIPT = join(SERVER_LAYER_DIR, 'build.sh');
/** The shared building blocks build.sh sources; a change to either rebuilds the layer. */
export const SERVER_BUILD_SOURCES = [SERVER_BUILD_SCRIPT, join(REPO_ROOT, 'layers', 'debian-closure.sh')] as const;

/** What build.sh makes for `arch`: the tree Lambda mounts at /opt (it holds one folder, pg-server/). */
export function serverLayerTree(arch: Architecture = 'x86_64'): string {
  return join(SERVER_LAYER_DIR, 'dist', arch);
}

/** The layer's own root (`/opt/pg-server` on Lambda): lib/, libexec/, share/, manifest.json. */
export function serverLayerRoot(arch: Architecture = 'x86_64'): string {
  return join(serverLayerTree(arch), 'pg-server');
}

/** The zip CDK publishes. */
export function serverLayerZip(arch: Architecture = 'x86_64'): string {
  return join(SERVER_LAYER_DIR, 'dist', `${arch}.zip`);
}
