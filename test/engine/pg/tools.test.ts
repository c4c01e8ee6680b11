import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_LAYER_ROOT, findLoader, layerCommand, resolvePgTool } from '../../../engine/pg/tools.ts';

const dirs: string[] = [];
function fakeLayer(loader: string | undefined): string {
  const root = mkdtempSync(join(tmpdir(), 'pgs3b-fake-layer-'));
  dirs.push(root);
  mkdirSync(join(root, 'lib'));
  writeFileSync(join(root, 'lib', 'libc.so.6'), '');
  if (loader) writeFileSync(join(root, 'lib', loader), '');
  return root;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('findLoader', () => {
  it.each(['ld-linux-x86-64.so.2', 'ld-linux-aarch64.so.1'])('finds %s in lib/', (loader) => {
    const root = fakeLayer(loader);
    expect(findLoader(root)).toBe(join(root, 'lib', loader));
  });

  it('returns undefined without a loader or without lib/', () => {
    expect(findLoader(fakeLayer(undefined))).toBeUndefined();
    expect(findLoader(join(tmpdir(), 'no-such-layer-dir'))).toBeUndefined();
  });
});

describe('layerCommand', () => {
  it('runs the real program through the bundled loader, argv0 = the bin/ wrapper beside the others', () => {
    const root = fakeLayer('ld-linux-x86-64.so.2');
    expect(layerCommand(root, 'pg_dumpall')).toEqual({
      file: join(root, 'lib', 'ld-linux-x86-64.so.2'),
      args: ['--library-path', join(root, 'lib'), '--argv0', join(root, 'bin', 'pg_dumpall'), join(root, 'libexec', 'pg_dumpall')],
    });
  });

  it('takes an explicit loader (paths as seen from another root, e.g. inside a chroot)', () => {
    expect(layerCommand('/opt', 'pg_dump', '/opt/lib/ld-linux-aarch64.so.1')).toEqual({
      file: '/opt/lib/ld-linux-aarch64.so.1',
      args: ['--library-path', '/opt/lib', '--argv0', '/opt/bin/pg_dump', '/opt/libexec/pg_dump'],
    });
  });

  it('says what to do when the layer is missing', () => {
    expect(() => layerCommand(fakeLayer(undefined), 'pg_dump')).toThrow(/no dynamic loader .* is the layer attached and built\?/);
  });
});

describe('resolvePgTool', () => {
  it('uses PG_DUMP_BIN for pg_dump and its siblings for the other tools', () => {
    expect(resolvePgTool('pg_dump', { pgDumpBin: '/usr/lib/postgresql/18/bin/pg_dump' })).toEqual({ file: '/usr/lib/postgresql/18/bin/pg_dump', args: [] });
    expect(resolvePgTool('pg_restore', { pgDumpBin: '/usr/lib/postgresql/18/bin/pg_dump' })).toEqual({ file: '/usr/lib/postgresql/18/bin/pg_restore', args: [] });
    expect(resolvePgTool('pg_dumpall', { pgDumpBin: 'pg_dump' })).toEqual({ file: 'pg_dumpall', args: [] });
  });

  it('defaults to the layer at the given root, else /opt', () => {
    const root = fakeLayer('ld-linux-x86-64.so.2');
    expect(resolvePgTool('pg_restore', { layerRoots: [root] }).args.at(-1)).toBe(join(root, 'libexec', 'pg_restore'));
    expect(DEFAULT_LAYER_ROOT).toBe('/opt');
    // An empty root (not /opt itself, where a real layer may be mounted on the machine running the tests).
    const empty = mkdtempSync(join(tmpdir(), 'pgs3b-no-layer-'));
    dirs.push(empty);
    expect(() => resolvePgTool('pg_dump', { layerRoots: [empty] })).toThrow(empty);
  });
});
