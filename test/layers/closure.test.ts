/**
 * The library closure of both architectures, checked independently of build.sh: every file in
 * libexec/ and lib/ is an ELF of the layer's architecture, every NEEDED library and the program
 * interpreter are in lib/, and the wrappers use that loader. arm64 cannot run here, so this is
 * its proof of completeness; the zip stays within the size budget.
 */
import { execFile } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { findLoader, type PgTool } from '../../engine/pg/tools.ts';
import { ensureLayer, LAYER_DIR, type Architecture } from '../support/layer.ts';

const execFileAsync = promisify(execFile);
const TOOLS: PgTool[] = ['pg_dump', 'pg_restore', 'pg_dumpall'];
const MAX_ZIP_BYTES = 10 * 1024 * 1024;

// ELF e_machine values (elf.h).
const MACHINES: Record<Architecture, { machine: number; loader: string }> = {
  x86_64: { machine: 62, loader: 'ld-linux-x86-64.so.2' },
  arm64: { machine: 183, loader: 'ld-linux-aarch64.so.1' },
};

/** ELF class, endianness and machine from the header (readelf is not needed for that). */
function elfHeader(file: string): { elf: boolean; class64: boolean; machine: number } {
  const fd = openSync(file, 'r');
  const buf = Buffer.alloc(20);
  try {
    readSync(fd, buf, 0, 20, 0);
  } finally {
    closeSync(fd);
  }
  return { elf: buf.subarray(0, 4).equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46])), class64: buf[4] === 2, machine: buf.readUInt16LE(18) };
}

async function dynamic(file: string): Promise<{ needed: string[]; interpreter?: string }> {
  const { stdout: d } = await execFileAsync('readelf', ['-d', file]);
  const { stdout: l } = await execFileAsync('readelf', ['-l', file]);
  const needed = [...d.matchAll(/\(NEEDED\)\s+Shared library: \[(.+)\]/g)].map((m) => m[1]!);
  const interpreter = /Requesting program interpreter: (.+)\]/.exec(l)?.[1];
  return interpreter ? { needed, interpreter } : { needed };
}

describe.each(['x86_64', 'arm64'] as const)('%s layer', (arch) => {
  let root: string;
  beforeAll(async () => {
    root = await ensureLayer(arch);
  });

  it('every program and library is an ELF of the architecture; nothing is missing from the closure', async () => {
    const { machine, loader } = MACHINES[arch];
    const libs = readdirSync(join(root, 'lib'));
    const programs = readdirSync(join(root, 'libexec'));
    expect(programs.sort()).toEqual([...TOOLS].sort());
    expect(libs).toContain(loader);
    expect(libs).toContain('libc.so.6');
    expect(findLoader(root)).toBe(join(root, 'lib', loader));

    const missing: string[] = [];
    const files = [...programs.map((p) => join(root, 'libexec', p)), ...libs.map((l) => join(root, 'lib', l))];
    for (const file of files) {
      expect(statSync(file).isFile(), `${file} is a regular file (zip and Lambda keep no symlinks)`).toBe(true);
      expect(elfHeader(file), file).toEqual({ elf: true, class64: true, machine });
      const { needed, interpreter } = await dynamic(file);
      for (const soname of needed) if (!libs.includes(soname)) missing.push(`${soname} (needed by ${file})`);
      if (file.includes('/libexec/')) expect(interpreter?.split('/').pop(), file).toBe(loader);
    }
    expect(missing).toEqual([]);
  });

  it('wrappers exec the bundled loader with --argv0, and the zip is within the budget', () => {
    const { loader } = MACHINES[arch];
    for (const tool of TOOLS) {
      const wrapper = readFileSync(join(root, 'bin', tool), 'utf8');
      expect(wrapper.startsWith('#!/bin/sh\n')).toBe(true);
      expect(wrapper).toContain(`exec "$layer/lib/${loader}" --library-path "$layer/lib" --argv0 "$layer/bin/${tool}" "$layer/libexec/${tool}" "$@"`);
      expect(statSync(join(root, 'bin', tool)).mode & 0o111).toBe(0o111);
    }
    const zip = statSync(join(LAYER_DIR, 'dist', `${arch}.zip`)).size;
    expect(zip).toBeGreaterThan(1024 * 1024);
    expect(zip).toBeLessThanOrEqual(MAX_ZIP_BYTES);
  });
});

it('the x86_64 wrappers run the tools from anywhere, also through a symlink, with an empty environment', async () => {
  const root = await ensureLayer('x86_64');
  const elsewhere = mkdtempSync(join(tmpdir(), 'pgs3b-wrapper-'));
  try {
    for (const tool of TOOLS) {
      symlinkSync(join(root, 'bin', tool), join(elsewhere, tool));
      for (const file of [join(root, 'bin', tool), join(elsewhere, tool)]) {
        const { stdout } = await execFileAsync(file, ['--version'], { env: {} });
        expect(stdout, file).toMatch(new RegExp(`^${tool} \\(PostgreSQL\\) 18\\.`));
      }
    }
  } finally {
    rmSync(elsewhere, { recursive: true, force: true });
  }
});
