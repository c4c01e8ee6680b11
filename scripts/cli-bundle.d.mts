import type { BuildOptions } from 'esbuild';

export declare const REPO_ROOT: string;
/** dist/cli: the CLI bundle's folder (what the Fargate image copies to /app). */
export declare const CLI_BUNDLE_DIR: string;
/** dist/cli/pg-s3-backup.mjs: `node` it to run the CLI. */
export declare const CLI_BUNDLE_ENTRY: string;
/** dist/cli/inputs.json: every input of the build with its size, mtime and SHA-256. */
export declare const CLI_BUNDLE_INPUTS: string;
/** dist/cli/rds-ca-bundle.pem: the RDS CA bundle beside the CLI. */
export declare const CLI_RDS_CA_BUNDLE: string;
export interface RecordedInput {
  readonly size: number;
  readonly mtimeMs: number;
  readonly sha256: string;
}
/** esbuild's options for the bundle (without outdir). */
export declare function cliBuildOptions(): BuildOptions & { metafile: true };
/** Why dist/cli does not match the sources, or undefined when it does. */
export declare function staleReason(): string | undefined;
/** Builds dist/cli; `clean` removes what the new build does not contain. */
export declare function buildCliBundle(options?: { readonly clean?: boolean }): Promise<void>;
/** Files under `dir`, relative to it, sorted. */
export declare function listFiles(dir: string): string[];
/** Files in dist/cli the last build did not write, or undefined when inputs.json is unreadable. */
export declare function strayFiles(): string[] | undefined;
/** The bundle's entry, rebuilt first when stale (`clean`: also when it holds files of an earlier build, removing them). */
export declare function ensureCliBundle(options?: { readonly clean?: boolean }): Promise<string>;
