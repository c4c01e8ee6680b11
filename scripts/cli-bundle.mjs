// The CLI as one prebuilt bundle (dist/cli/): cli/entry.ts and everything it imports, built by the
// installed esbuild the way the Lambda handler is (infra/constructs/backup-function.ts,
// handlerBundling), split per command so `--help` loads no engine and no AWS client.
//
// Built by npm's `prepare` (so `npm ci` leaves a ready CLI), rebuilt by bin/pg-s3-backup.mjs on
// first use when a source changed, and by the Fargate runner's synth; the Fargate image copies
// this folder and nothing of the sources. Plain JavaScript: it runs with node alone, before any
// TypeScript loader exists (and the CLI needs none at run time).
//
// Freshness: the build records every input esbuild read (sources and node_modules files, from its
// metafile) with its size, mtime and SHA-256 in inputs.json. A file whose size or mtime moved is
// hashed again; only a changed content makes the bundle stale (a `git checkout` that touches
// files without changing them costs hashes, not a build). test/cli/bundle.test.ts proves the
// recorded inputs are the sources of today's tree.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const CLI_BUNDLE_DIR = join(REPO_ROOT, 'dist', 'cli');
/** The bundle's entry: `node dist/cli/pg-s3-backup.mjs <command>` is the CLI. */
export const CLI_BUNDLE_ENTRY = join(CLI_BUNDLE_DIR, 'pg-s3-backup.mjs');
export const CLI_BUNDLE_INPUTS = join(CLI_BUNDLE_DIR, 'inputs.json');
/** The RDS CA bundle beside the CLI, as the Lambda has it beside the handler (engine/pg/tls.ts). */
export const CLI_RDS_CA_BUNDLE = join(CLI_BUNDLE_DIR, 'rds-ca-bundle.pem');

const ENTRY_SOURCE = join(REPO_ROOT, 'cli', 'entry.ts');

/** esbuild's options, shared by the build and by the test that asks esbuild for today's inputs. */
export function cliBuildOptions() {
  const version = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')).version;
  return {
    absWorkingDir: REPO_ROOT,
    entryPoints: { 'pg-s3-backup': ENTRY_SOURCE },
    bundle: true,
    // One chunk per command (cli/main.ts imports each on demand) plus the chunks they share.
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node24',
    mainFields: ['module', 'main'],
    outExtension: { '.js': '.mjs' },
    chunkNames: 'chunks/[name]-[hash]',
    // CommonJS dependencies bundled into an ES module still call `require` for Node built-ins.
    banner: { js: "import { createRequire as __pgS3BackupCreateRequire } from 'node:module'; const require = __pgS3BackupCreateRequire(import.meta.url);" },
    minify: true,
    sourcemap: 'linked',
    sourcesContent: false,
    external: ['pg-native'],
    define: { 'process.env.PG_S3_BACKUP_VERSION': JSON.stringify(version) },
    metafile: true,
    logLevel: 'warning',
  };
}

const sha256 = (file) => createHash('sha256').update(readFileSync(file)).digest('hex');

/** Every input of a metafile, repository-relative, with what identifies its content. */
function describeInputs(metafile) {
  const inputs = {};
  for (const path of Object.keys(metafile.inputs).sort()) {
    // Virtual inputs (none today) have no file to compare.
    const file = join(REPO_ROOT, path);
    if (!existsSync(file)) continue;
    const st = statSync(file);
    inputs[path] = { size: st.size, mtimeMs: st.mtimeMs, sha256: sha256(file) };
  }
  // package.json holds the version the bundle defines.
  const pkg = join(REPO_ROOT, 'package.json');
  inputs['package.json'] = { size: statSync(pkg).size, mtimeMs: statSync(pkg).mtimeMs, sha256: sha256(pkg) };
  return inputs;
}

/**
 * Why the bundle in dist/cli cannot be used as is (missing, or a recorded input changed or
 * vanished), or undefined when it matches the sources.
 */
export function staleReason() {
  if (!existsSync(CLI_BUNDLE_ENTRY) || !existsSync(CLI_BUNDLE_INPUTS) || !existsSync(CLI_RDS_CA_BUNDLE)) return 'not built';
  let recorded;
  try {
    recorded = JSON.parse(readFileSync(CLI_BUNDLE_INPUTS, 'utf8')).inputs;
  } catch {
    return 'inputs.json unreadable';
  }
  for (const [path, was] of Object.entries(recorded)) {
    const file = join(REPO_ROOT, path);
    let st;
    try {
      st = statSync(file);
    } catch {
      return `${path} is gone`;
    }
    if (st.size === was.size && st.mtimeMs === was.mtimeMs) continue;
    if (st.size !== was.size || sha256(file) !== was.sha256) return `${path} changed`;
  }
  return undefined;
}

/**
 * Builds the bundle into a fresh folder, then moves it into place: chunks first (their names hold
 * their content's hash), then the entry and inputs.json, each by an atomic rename, so a CLI
 * started meanwhile runs either the old bundle or the new one. `clean`: remove what the new build
 * does not contain (npm's prepare, the image's synth); a first-use rebuild keeps old chunks, which
 * a CLI started before it may still load.
 */
export async function buildCliBundle({ clean = false } = {}) {
  let esbuild;
  try {
    esbuild = await import('esbuild');
  } catch (cause) {
    throw new Error('pg-s3-backup: the CLI bundle (dist/cli) must be built, and esbuild (a dev dependency) is not installed: run `npm ci` (with the dev dependencies) in the repository, then run the command again', { cause });
  }
  const { rdsCaBundlePem } = await import('../infra/rds-ca-bundle.mjs');
  mkdirSync(join(REPO_ROOT, 'dist'), { recursive: true });
  const staging = mkdtempSync(join(REPO_ROOT, 'dist', '.cli-'));
  try {
    const result = await esbuild.build({ ...cliBuildOptions(), outdir: staging });
    writeFileSync(join(staging, 'rds-ca-bundle.pem'), rdsCaBundlePem(), { mode: 0o644 });
    const outputs = [...listFiles(staging), 'inputs.json'].sort();
    writeFileSync(join(staging, 'inputs.json'), `${JSON.stringify({ outputs, inputs: describeInputs(result.metafile) }, null, 1)}\n`);
    if (clean) rmSync(CLI_BUNDLE_DIR, { recursive: true, force: true });
    mkdirSync(join(CLI_BUNDLE_DIR, 'chunks'), { recursive: true });
    const last = new Set(['pg-s3-backup.mjs', 'pg-s3-backup.mjs.map', 'inputs.json']);
    const files = listFiles(staging);
    for (const f of files.filter((f) => !last.has(f))) renameSync(join(staging, f), join(CLI_BUNDLE_DIR, f));
    for (const f of ['pg-s3-backup.mjs.map', 'pg-s3-backup.mjs', 'inputs.json']) renameSync(join(staging, f), join(CLI_BUNDLE_DIR, f));
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

/** Files under `dir`, relative to it. */
export function listFiles(dir) {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => relative(dir, join(d.parentPath, d.name)))
    .sort();
}

/** Files in dist/cli that the last build did not write (chunks of earlier builds), or undefined when unreadable. */
export function strayFiles() {
  try {
    const expected = new Set(JSON.parse(readFileSync(CLI_BUNDLE_INPUTS, 'utf8')).outputs);
    return listFiles(CLI_BUNDLE_DIR).filter((f) => !expected.has(f));
  } catch {
    return undefined;
  }
}

/**
 * The bundle's entry, rebuilt first when stale. `clean` (the Fargate image's synth, the test
 * suite's setup, where no CLI is running): also when dist/cli holds files of an earlier build,
 * which the image must not ship, and the rebuild removes them.
 */
export async function ensureCliBundle({ clean = false } = {}) {
  const reason = staleReason() ?? (clean && strayFiles()?.length !== 0 ? 'files of an earlier build' : undefined);
  if (reason !== undefined) {
    process.stderr.write(`pg-s3-backup: building the CLI bundle (${reason}) …\n`);
    await buildCliBundle({ clean });
  }
  return CLI_BUNDLE_ENTRY;
}

// `node scripts/cli-bundle.mjs` (npm's prepare): a clean build. `--if-stale`: ensureCliBundle({ clean: true }).
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  try {
    if (process.argv.includes('--if-stale')) await ensureCliBundle({ clean: true });
    else await buildCliBundle({ clean: true });
  } catch (err) {
    process.stderr.write(`${err.message}\n`);
    process.exitCode = 1;
  }
}
