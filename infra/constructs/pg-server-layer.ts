/**
 * The pg-server layer built by layers/pg-server/build.sh (the throwaway PostgreSQL 18 server of the
 * restore drill): a `LayerVersion` from `dist/<arch>.zip` (the tree Lambda merges into /opt holds
 * one folder, `pg-server/`, so it never overwrites the pg_dump layer's /opt/lib), for that
 * architecture only, described with the PostgreSQL version its manifest records.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';
import { z } from 'zod';
import { serverLayerTree, type Architecture } from '../../layers/pg-server/paths.ts';
import { layerArchive, LayerNotBuiltError } from './pg-dump-layer.ts';

/** Where the layer's root is on Lambda: the drill function's PG_SERVER_LAYER. */
export const SERVER_LAYER_MOUNT = '/opt/pg-server';

const ServerLayerManifestSchema = z.looseObject({
  postgresqlVersion: z.string().min(1),
  architecture: z.enum(['arm64', 'x86_64']),
});

export type ServerLayerManifest = z.infer<typeof ServerLayerManifestSchema>;

/** Reads and checks `<tree>/pg-server/manifest.json`; the message says how to build the layer when it is missing. */
function readServerLayerManifest(tree: string, architecture: Architecture): ServerLayerManifest {
  const build = `npm run build:layer:server -- ${architecture}`;
  const file = join(tree, 'pg-server', 'manifest.json');
  if (!existsSync(file)) {
    throw new LayerNotBuiltError(`the pg-server layer for ${architecture} (the restore drill's throwaway PostgreSQL) is not built (no ${file}): run \`${build}\` first, or set drillSchedule=off`);
  }
  let manifest: ServerLayerManifest;
  try {
    manifest = ServerLayerManifestSchema.parse(JSON.parse(readFileSync(file, 'utf8')));
  } catch (cause) {
    throw new LayerNotBuiltError(`${file} is not a pg-server layer manifest: rebuild it with \`${build}\``, { cause });
  }
  if (manifest.architecture !== architecture) {
    throw new LayerNotBuiltError(`${file} describes a ${manifest.architecture} layer but the drill function runs on ${architecture}: run \`${build}\``);
  }
  return manifest;
}

export interface PgServerLayerProps {
  readonly architecture: Architecture;
  /** The built tree (the folder holding `pg-server/`). @default layers/pg-server/dist/<arch> of this repository */
  readonly dir?: string;
}

export class PgServerLayer extends Construct {
  readonly layer: lambda.LayerVersion;
  readonly manifest: ServerLayerManifest;

  constructor(scope: Construct, id: string, props: PgServerLayerProps) {
    super(scope, id);
    const tree = resolve(props.dir ?? serverLayerTree(props.architecture));
    this.manifest = readServerLayerManifest(tree, props.architecture);
    // build.sh's zip keeps the wrappers' and programs' executable bits; a fixture tree is zipped by CDK.
    this.layer = new lambda.LayerVersion(this, 'Layer', {
      code: lambda.Code.fromAsset(layerArchive(tree)),
      compatibleArchitectures: [props.architecture === 'arm64' ? lambda.Architecture.ARM_64 : lambda.Architecture.X86_64],
      description: `PostgreSQL ${this.manifest.postgresqlVersion} server (postgres, initdb, pg_ctl; self-contained, ${props.architecture}) under ${SERVER_LAYER_MOUNT}: the restore drill's throwaway server`,
      license: 'PostgreSQL',
    });
  }
}
