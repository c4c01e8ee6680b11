import { createRequire } from 'node:module';

/** pg-s3-backup's own version, recorded in every manifest. */
export const TOOL_VERSION: string = (() => {
  try {
    return (createRequire(import.meta.url)('../package.json') as { version: string }).version;
  } catch {
    // Bundled (esbuild) without package.json beside it: the bundler defines this at build time.
    return process.env.PG_S3_BACKUP_VERSION ?? '0.0.0';
  }
})();
