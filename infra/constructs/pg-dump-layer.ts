/**
 * The pg_dump layer built by layers/pg-dump/build.sh: a `LayerVersion` from `dist/<arch>`, for
 * that architecture only (the ELF binaries inside are architecture-specific), described with
 * the PostgreSQL version its manifest records.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';
import { z } from 'zod';
import { REPO_ROOT, type Architecture } from '../../layers/pg-dump/paths.ts';


export class LayerNotBuiltError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'LayerNotBuiltError';
  }
}

const LayerManifestSchema = z.looseObject({
  postgresqlVersion: z.string().min(1),
  architecture: z.enum(['arm64', 'x86_64']),
});

export type LayerManifest = z.infer<typeof LayerManifestSchema>;

/** Where `npm run build:layer -- <arch>` puts the layer. */
function defaultLayerDir(architecture: Architecture): string {
  return join(REPO_ROOT, 'layers', 'pg-dump', 'dist', architecture);
}

/** Reads and checks `<dir>/manifest.json`; the message says how to build the layer when it is missing. */
function readLayerManifest(dir: string, architecture: Architecture): LayerManifest {
  const build = `npm run build:layer -- ${architecture}`;
  const file = join(dir, 'manifest.json');
  if (!existsSync(file)) {
    throw new LayerNotBuiltError(`the pg_dump layer for ${architecture} is not built (no ${file}): run \`${build}\` first`);
  }
  let manifest: LayerManifest;
  try {
    manifest = LayerManifestSchema.parse(JSON.parse(readFileSync(file, 'utf8')));
  } catch (cause) {
    throw new LayerNotBuiltError(`${file} is not a pg_dump layer manifest: rebuild it with \`${build}\``, { cause });
  }
  if (manifest.architecture !== architecture) {
    throw new LayerNotBuiltError(`${file} describes a ${manifest.architecture} layer but the function runs on ${architecture}: run \`${build}\``);
  }
  return manifest;
}

/**
 * build.sh's own zip (`dist/<arch>.zip`) when it exists: it keeps the executable bits of the
 * loader and the programs exactly as built and checked. Otherwise the directory is zipped by CDK.
 */
export function layerArchive(dir: string): string {
  const zip = `${dir}.zip`;
  return existsSync(zip) ? zip : dir;
}

export interface PgDumpLayerProps {
  readonly architecture: Architecture;
  /** The built layer directory (default layers/pg-dump/dist/<arch> of this repository). */
  readonly dir?: string;
}

export class PgDumpLayer extends Construct {
  readonly layer: lambda.LayerVersion;
  readonly manifest: LayerManifest;

  constructor(scope: Construct, id: string, props: PgDumpLayerProps) {
    super(scope, id);
    const dir = resolve(props.dir ?? defaultLayerDir(props.architecture));
    this.manifest = readLayerManifest(dir, props.architecture);
    this.layer = new lambda.LayerVersion(this, 'Layer', {
      code: lambda.Code.fromAsset(layerArchive(dir)),
      compatibleArchitectures: [props.architecture === 'arm64' ? lambda.Architecture.ARM_64 : lambda.Architecture.X86_64],
      description: `pg_dump, pg_restore and pg_dumpall ${this.manifest.postgresqlVersion} (PostgreSQL client, self-contained, ${props.architecture})`,
      license: 'PostgreSQL',
    });
  }
}
