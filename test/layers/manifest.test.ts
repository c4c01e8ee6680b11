/**
 * manifest.json tells exactly what the layer holds and where it comes from. Checked against the
 * files themselves, the .deb files build.sh downloaded (whose sha256 apt verified against the
 * signed index), the files inside those packages, the licenses and the zip.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { layerCommand } from '../../engine/pg/tools.ts';
import { BUILD_SOURCES, cachedDebPath } from '../../layers/pg-dump/paths.ts';
import { ensureLayer, LAYER_DIR, type Architecture } from '../support/layer.ts';
import { run } from './support.ts';

const execFileAsync = promisify(execFile);
const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

const Manifest = z.strictObject({
  postgresqlVersion: z.string().regex(/^\d+\.\d+$/),
  postgresqlMajor: z.number().int(),
  architecture: z.enum(['x86_64', 'arm64']),
  debianArchitecture: z.enum(['amd64', 'arm64']),
  debianSuite: z.string().min(1),
  buildScriptSha256: z.string().regex(/^[0-9a-f]{64}$/),
  loader: z.string(),
  tools: z.array(z.string()),
  packages: z.array(z.strictObject({ name: z.string(), version: z.string(), deb: z.string(), sha256: z.string().regex(/^[0-9a-f]{64}$/) })).min(1),
  files: z.array(z.strictObject({ path: z.string(), sha256: z.string().regex(/^[0-9a-f]{64}$/), package: z.string() })).min(1),
});
type Manifest = z.infer<typeof Manifest>;

function treeFiles(root: string, dirs: readonly string[]): string[] {
  return dirs.flatMap((d) => readdirSync(join(root, d), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(root.length + 1))).sort();
}

describe.each(['x86_64', 'arm64'] as const)('%s manifest', (arch: Architecture) => {
  let root: string;
  let manifest: Manifest;
  const extracted = mkdtempSync(join(tmpdir(), `pgs3b-debs-${arch}-`));

  beforeAll(async () => {
    root = await ensureLayer(arch);
    manifest = Manifest.parse(JSON.parse(readFileSync(join(root, 'manifest.json'), 'utf8')));
  });
  afterAll(() => rmSync(extracted, { recursive: true, force: true }));

  it('describes the architecture, the PostgreSQL version and the loader', () => {
    expect(manifest.architecture).toBe(arch);
    expect(manifest.debianArchitecture).toBe(arch === 'x86_64' ? 'amd64' : 'arm64');
    expect(manifest.postgresqlVersion.split('.')[0]).toBe(String(manifest.postgresqlMajor));
    expect(manifest.postgresqlMajor).toBeGreaterThanOrEqual(18);
    expect(manifest.tools).toEqual(['pg_dump', 'pg_restore', 'pg_dumpall']);
    expect(existsSync(join(root, manifest.loader))).toBe(true);
    expect(manifest.buildScriptSha256).toBe(createHash('sha256').update(Buffer.concat(BUILD_SOURCES.map((f) => readFileSync(f)))).digest('hex'));
    const client = manifest.packages.find((p) => p.name === `postgresql-client-${manifest.postgresqlMajor}`);
    expect(client?.version.startsWith(`${manifest.postgresqlVersion}-`)).toBe(true);
  });

  it('lists every file of libexec/ and lib/ with its sha256, each from a listed package', () => {
    expect(manifest.files.map((f) => f.path).sort()).toEqual(treeFiles(root, ['libexec', 'lib']));
    const names = new Set(manifest.packages.map((p) => p.name));
    for (const f of manifest.files) {
      expect(sha256(join(root, f.path)), f.path).toBe(f.sha256);
      expect(names.has(f.package), `${f.path} from ${f.package}`).toBe(true);
    }
    // Every listed package contributes a file: nothing unused is claimed.
    expect(new Set(manifest.files.map((f) => f.package))).toEqual(names);
  });

  it('matches the downloaded packages: name, exact version, architecture, sha256, and the files inside them', async () => {
    for (const p of manifest.packages) {
      // The download cache (outside the checkout) keeps each package under its name, version and sha256.
      const deb = cachedDebPath(p);
      expect(existsSync(deb), `${deb} (rebuild with npm run build:layer -- ${arch})`).toBe(true);
      expect(sha256(deb), p.deb).toBe(p.sha256);
      expect(p.deb).toMatch(new RegExp(`^${p.name.replaceAll('+', '\\+')}_[^_]+_(${manifest.debianArchitecture}|all)\\.deb$`));
      const { stdout } = await execFileAsync('dpkg-deb', ['--showformat=${Package} ${Version} ${Architecture}', '--show', deb]);
      expect(stdout.split(' ')[0]).toBe(p.name);
      expect(stdout.split(' ')[1]).toBe(p.version);
      expect(['all', manifest.debianArchitecture]).toContain(stdout.split(' ')[2]);
      await execFileAsync('dpkg-deb', ['-x', deb, join(extracted, p.name)]);
    }
    const triplet = arch === 'x86_64' ? 'x86_64-linux-gnu' : 'aarch64-linux-gnu';
    for (const f of manifest.files) {
      const [dir, name] = f.path.split('/') as [string, string];
      const candidates =
        dir === 'libexec'
          ? [`usr/lib/postgresql/${manifest.postgresqlMajor}/bin/${name}`]
          : [`usr/lib/${triplet}/${name}`, `lib/${triplet}/${name}`, `usr/lib/${name}`, `lib/${name}`];
      const inPackage = candidates.map((c) => join(extracted, f.package, c)).find((c) => existsSync(c));
      expect(inPackage, `${f.path} in ${f.package}`).toBeDefined();
      expect(sha256(realpathSync(inPackage!)), f.path).toBe(f.sha256);
    }
  });

  it('ships the copyright file of every package', () => {
    expect(readdirSync(join(root, 'licenses')).sort()).toEqual(manifest.packages.map((p) => p.name).sort());
    for (const p of manifest.packages) expect(readFileSync(join(root, 'licenses', p.name, 'copyright'), 'utf8').length).toBeGreaterThan(100);
  });

  it('the zip holds exactly the tree', async () => {
    const { stdout } = await execFileAsync('unzip', ['-Z1', join(LAYER_DIR, 'dist', `${arch}.zip`)], { maxBuffer: 16 * 1024 * 1024 });
    const zipped = stdout.split('\n').filter((l) => l && !l.endsWith('/')).sort();
    expect(zipped).toEqual(treeFiles(root, ['bin', 'libexec', 'lib', 'licenses']).concat('manifest.json').sort());
  });
});

it('the x86_64 manifest agrees with the version pg_dump reports', async () => {
  const root = await ensureLayer('x86_64');
  const manifest = Manifest.parse(JSON.parse(readFileSync(join(root, 'manifest.json'), 'utf8')));
  const cmd = layerCommand(root, 'pg_dump');
  const out = await run(cmd.file, [...cmd.args, '--version'], {});
  expect(out.code).toBe(0);
  expect(out.stdout.toString()).toMatch(new RegExp(`^pg_dump \\(PostgreSQL\\) ${manifest.postgresqlVersion.replace('.', '\\.')} `));
});
