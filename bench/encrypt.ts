/**
 * `npm run bench:encrypt`: what age encryption (ENCRYPT_RECIPIENTS) costs per GiB of dump, before
 * and after its payload moved from the `age-encryption` package's JavaScript ChaCha20-Poly1305 to
 * node:crypto's (OpenSSL; engine/age-payload.ts, issue 24 §3), next to pg_dump's own CPU on the
 * same data: the figure `encryptCpuOverPgDump` (target ≤ 0.3).
 *
 *   npm run bench:encrypt -- [--size 256MB] [--compression zstd:1] [--repeat 3] [--seed 42] [--out bench/results] [--note "…"]
 *
 * One database of the bench's data (bench/generate.ts, seeded) on embedded PostgreSQL 18, dumped
 * once to a file (the input), then `repeat` times as the bench's floor does (`pg_dump -Fc` to
 * /dev/null; its CPU time from GNU time: the denominator). Lambda layout as in bench.ts (the
 * default with taskset and 2 CPUs): this process, hence pg_dump and the encryption, on CPU 0 (the
 * function's), PostgreSQL on CPU 1. Then, in this process, round after round so that drifting machine load spreads
 * over every variant: read the dump file alone (the baseline), encrypt it to one X25519 recipient
 * the old way (the package's streaming Encrypter) and the new way (encryptStream), decrypt both
 * ciphertexts the old way (Decrypter) and the new way (decryptStream). Each variant's CPU is this
 * process's (getrusage: every thread) less the baseline's, per GiB of dump. Results go to
 * `<out>/<date>-encrypt-<size>.md` and `.json`.
 */
import { Decrypter, Encrypter, generateX25519Identity, identityToRecipient } from 'age-encryption';
import { closeSync, createReadStream, createWriteStream, mkdtempSync, openSync, readFileSync, rmSync, statSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { parseArgs } from 'node:util';
import { decryptStream, encryptStream } from '../engine/encryption.ts';
import { libpqEnv } from '../engine/pg/env.ts';
import { ensureLayer } from '../scripts/layer.ts';
import { startPostgres, type TestPostgres } from '../test/support/postgres.ts';
import { generateDatabase } from './generate.ts';
import { hasTaskset, parseSize, pinProcessTree, spawnTimed, spread, type Spread } from './measure.ts';
import { cleanUpOnInterrupt, writeResults } from './services.ts';

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '256MB' },
    compression: { type: 'string', default: 'zstd:1' },
    repeat: { type: 'string', default: '3' },
    seed: { type: 'string', default: '42' },
    out: { type: 'string', default: 'bench/results' },
    note: { type: 'string', multiple: true, default: [] },
    layout: { type: 'string', default: hasTaskset && cpus().length >= 2 ? 'lambda' : 'shared' },
  },
});
const RUNNER_CPU = '0';
const SERVER_CPU = '1';
const repeat = Number(values.repeat);
const GiB = 1024 ** 3;
const log = (m: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${m}`);

/** This process's CPU time (user + system, every thread), ms. */
function cpuMs(): number {
  const u = process.resourceUsage();
  return (u.userCPUTime + u.systemCPUTime) / 1000;
}

/** A sink that only counts: what a variant costs is its own work, not a consumer's. */
function discard(): Writable {
  return new Writable({ highWaterMark: 64 * 1024, write: (_c, _e, cb) => cb() });
}

const VARIANTS = ['read only (baseline)', 'encrypt, before: age-encryption (JavaScript ChaCha20-Poly1305)', 'encrypt, after: node:crypto (OpenSSL)', 'decrypt, before: age-encryption', 'decrypt, after: node:crypto'] as const;
type Variant = (typeof VARIANTS)[number];

interface Files {
  readonly dump: string;
  readonly cipherOld: string;
  readonly cipherNew: string;
}

async function runVariant(v: Variant, files: Files, recipient: string, identity: string): Promise<void> {
  const web = (path: string) => Readable.toWeb(createReadStream(path, { highWaterMark: 64 * 1024 })) as unknown as ReadableStream<Uint8Array>;
  const fromWeb = (s: ReadableStream<Uint8Array>) => Readable.fromWeb(s as unknown as WebReadableStream<Uint8Array>);
  switch (v) {
    case 'read only (baseline)':
      return pipeline(createReadStream(files.dump, { highWaterMark: 64 * 1024 }), discard());
    case 'encrypt, before: age-encryption (JavaScript ChaCha20-Poly1305)': {
      // engine/encryption.ts before issue 24: the package's streaming Encrypter, end to end.
      const e = new Encrypter();
      e.addRecipient(recipient);
      return pipeline(fromWeb(await e.encrypt(web(files.dump))), discard());
    }
    case 'encrypt, after: node:crypto (OpenSSL)':
      return pipeline(await encryptStream(createReadStream(files.dump, { highWaterMark: 64 * 1024 }), [recipient]), discard());
    case 'decrypt, before: age-encryption': {
      const d = new Decrypter();
      d.addIdentity(identity);
      return pipeline(fromWeb(await d.decrypt(web(files.cipherOld))), discard());
    }
    case 'decrypt, after: node:crypto':
      return pipeline(await decryptStream(createReadStream(files.cipherNew, { highWaterMark: 64 * 1024 }), [identity], { key: 'bench' }), discard());
  }
}

async function databaseSize(pg: TestPostgres, database: string): Promise<number> {
  const [row] = await pg.query<{ bytes: string }>('SELECT pg_database_size($1)::text AS bytes', [database]);
  return Number(row!.bytes);
}

async function main(): Promise<void> {
  const targetBytes = parseSize(values.size);
  const work = mkdtempSync(join(tmpdir(), 'pgs3b-bench-encrypt-'));
  let pg: TestPostgres | undefined;
  const cleanup = async () => {
    await pg?.stop().catch(() => {});
    rmSync(work, { recursive: true, force: true });
  };
  cleanUpOnInterrupt(cleanup);
  try {
    const load0 = loadavg();
    let layer: string;
    [layer, pg] = await Promise.all([ensureLayer(), startPostgres()]);
    const lambda = values.layout === 'lambda';
    if (lambda) {
      // As bench.ts: the function's CPU runs pg_dump and the encryption; the server has the other.
      const [row] = await pg.query<{ dir: string }>("SELECT current_setting('data_directory') AS dir");
      await pinProcessTree(Number(readFileSync(join(row!.dir, 'postmaster.pid'), 'utf8').split('\n')[0]), SERVER_CPU);
      await pinProcessTree(process.pid, RUNNER_CPU);
    }
    const database = 'bench_encrypt';
    await pg.query(`CREATE DATABASE ${database}`);
    log(`generating ${values.size} (seed ${values.seed})`);
    await generateDatabase(pg.urlFor(database), {
      targetBytes,
      seed: Number(values.seed),
      batchRows: Math.max(1000, Math.min(40_000, Math.floor(targetBytes / 1250 / 4))),
      onProgress: (b) => process.stdout.write(`\r  ${(b / 1024 ** 2).toFixed(0)} MiB `),
    });
    process.stdout.write('\n');
    const databaseBytes = await databaseSize(pg, database);

    const dump = join(work, 'bench.dump');
    const pgDump = join(layer, 'bin', 'pg_dump');
    const dumpArgs = ['--format=custom', `--compress=${values.compression}`, '--no-sync'];
    const env = libpqEnv(pg.connection(database));
    await spawnTimed(pgDump, [...dumpArgs, `--file=${dump}`], { env, stdio: ['ignore', 'ignore', 'pipe'], label: 'pg_dump (file)' }).done;
    const pgDumpCpu: number[] = [];
    for (let round = 1; round <= repeat; round++) {
      // The bench's floor: to /dev/null, so that the figure is pg_dump's work, not a file system's.
      const devNull = openSync('/dev/null', 'w');
      try {
        const r = await spawnTimed(pgDump, dumpArgs, { env, stdio: ['ignore', devNull, 'pipe'], label: 'pg_dump' }).done;
        if (r.cpuMs === undefined) throw new Error('pg_dump CPU time needs GNU time (/usr/bin/time: apt-get install time)');
        pgDumpCpu.push(r.cpuMs);
        log(`pg_dump round ${round}: ${(r.ms / 1000).toFixed(2)} s wall, ${(r.cpuMs / 1000).toFixed(2)} CPU-s`);
      } finally {
        closeSync(devNull);
      }
    }
    const dumpBytes = statSync(dump).size;
    const dumpGiB = dumpBytes / GiB;
    // The server is no longer needed: its memory and CPU out of the way of what follows.
    await pg.stop();
    pg = undefined;

    const identity = await generateX25519Identity();
    const recipient = await identityToRecipient(identity);
    const files: Files = { dump, cipherOld: join(work, 'old.age'), cipherNew: join(work, 'new.age') };
    {
      const e = new Encrypter();
      e.addRecipient(recipient);
      await pipeline(Readable.fromWeb((await e.encrypt(Readable.toWeb(createReadStream(dump)) as unknown as ReadableStream<Uint8Array>)) as unknown as WebReadableStream<Uint8Array>), createWriteStream(files.cipherOld));
      await pipeline(await encryptStream(createReadStream(dump), [recipient]), createWriteStream(files.cipherNew));
    }
    // A warm-up pass of each (JIT, page cache), not counted.
    for (const v of VARIANTS) await runVariant(v, files, recipient, identity);
    const cpu = new Map<Variant, number[]>(VARIANTS.map((v) => [v, []]));
    const wall = new Map<Variant, number[]>(VARIANTS.map((v) => [v, []]));
    for (let round = 1; round <= repeat; round++) {
      for (const v of VARIANTS) {
        const c0 = cpuMs();
        const t0 = performance.now();
        await runVariant(v, files, recipient, identity);
        wall.get(v)!.push(performance.now() - t0);
        cpu.get(v)!.push(cpuMs() - c0);
        log(`round ${round} ${v}: ${(cpu.get(v)!.at(-1)! / 1000).toFixed(2)} CPU-s`);
      }
    }
    const load1 = loadavg();

    const baseline = spread(cpu.get('read only (baseline)')!).median;
    const pgDumpSpread = spread(pgDumpCpu);
    const pgDumpPerGiB = pgDumpSpread.median / 1000 / dumpGiB;
    /** CPU-s per GiB of dump of a variant, the file reading (baseline) taken out. */
    const net = (v: Variant) => (spread(cpu.get(v)!).median - (v === 'read only (baseline)' ? 0 : baseline)) / 1000 / dumpGiB;
    const rows = VARIANTS.map((v) => ({ variant: v, cpuMs: spread(cpu.get(v)!), wallMs: spread(wall.get(v)!), cpuSecondsPerDumpGiB: net(v), mibPerCpuSecond: v === 'read only (baseline)' ? undefined : 1024 / net(v) }));
    const before = net('encrypt, before: age-encryption (JavaScript ChaCha20-Poly1305)');
    const after = net('encrypt, after: node:crypto (OpenSSL)');
    const headline = {
      encryptCpuOverPgDump: after / pgDumpPerGiB,
      encryptCpuOverPgDumpBefore: before / pgDumpPerGiB,
      encryptCpuPerDumpGiB: { before, after },
      decryptCpuPerDumpGiB: { before: net('decrypt, before: age-encryption'), after: net('decrypt, after: node:crypto') },
      encryptSpeedup: before / after,
      pgDumpCpuPerDumpGiB: pgDumpPerGiB,
    };
    const date = new Date().toISOString().slice(0, 10);
    const results = {
      date,
      size: values.size,
      databaseBytes,
      dumpBytes,
      compression: values.compression,
      repeat,
      command: `npm run bench:encrypt -- ${process.argv.slice(2).map((a) => (/\s/.test(a) ? JSON.stringify(a) : a)).join(' ')}`.trim(),
      machine: { cores: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', node: process.version, openssl: process.versions.openssl },
      loadAverage: { start: load0[0], end: load1[0] },
      headline,
      pgDumpCpuMs: pgDumpSpread,
      layout: values.layout,
      variants: rows,
      notes: values.note,
    };
    const s = (ms: Spread) => `${(ms.median / 1000).toFixed(2)} s (${(ms.min / 1000).toFixed(2)}–${(ms.max / 1000).toFixed(2)})`;
    const lines = [
      `# pg-s3-backup bench — age encryption, ${values.size} database, ${date}`,
      '',
      `Command: \`${results.command}\``,
      '',
      `Database ${(databaseBytes / 1024 ** 2).toFixed(0)} MiB (the bench's data, bench/generate.ts, seed ${values.seed}), dump ${(dumpBytes / 1024 ** 2).toFixed(1)} MiB at \`${values.compression}\`; ${repeat} rounds, variants alternated, medians (min–max). ${lambda ? 'Lambda layout: pg_dump and this process (the encryption) pinned to CPU 0, PostgreSQL to CPU 1. ' : 'Not pinned. '}${cpus().length} × ${results.machine.cpuModel}, Node ${process.version}, OpenSSL ${process.versions.openssl}. Load average ${load0[0]!.toFixed(1)} at the start, ${load1[0]!.toFixed(1)} at the end.`,
      '',
      '## Headline',
      '',
      '| figure | value |',
      '|---|---|',
      `| **encryptCpuOverPgDump** (encryption CPU ÷ pg_dump CPU, same dump; target ≤ 0.3) | **${headline.encryptCpuOverPgDump.toFixed(3)}** (before: ${headline.encryptCpuOverPgDumpBefore.toFixed(2)}) |`,
      `| encryption, CPU-s per GiB of dump | ${after.toFixed(2)} (before: ${before.toFixed(2)}; ${headline.encryptSpeedup.toFixed(1)} × less) |`,
      `| decryption, CPU-s per GiB of dump | ${headline.decryptCpuPerDumpGiB.after.toFixed(2)} (before: ${headline.decryptCpuPerDumpGiB.before.toFixed(2)}) |`,
      `| pg_dump, CPU-s per GiB of dump | ${pgDumpPerGiB.toFixed(2)} (${s(pgDumpSpread)} per dump) |`,
      '',
      '## Variants (this process: the dump file read, the work, the output discarded)',
      '',
      '| variant | wall | CPU | CPU-s per GiB of dump (baseline taken out) | MiB per CPU-second |',
      '|---|---|---|---|---|',
      ...rows.map((r) => `| ${r.variant} | ${s(r.wallMs)} | ${s(r.cpuMs)} | ${r.cpuSecondsPerDumpGiB.toFixed(2)} | ${r.mibPerCpuSecond === undefined ? '—' : r.mibPerCpuSecond.toFixed(0)} |`),
      '',
      'CPU is getrusage of this process (every thread: the file reads on libuv\'s pool included, hence the baseline), user + system. pg_dump\'s is GNU time\'s, its archive written to /dev/null (the bench\'s floor). The uploader\'s own cost (SHA-256, TLS, HTTP) is not in these figures: see the `levers` mode of `npm run bench`.',
      ...values.note.map((n) => `\nNote: ${n}`),
    ];
    const base = writeResults(values.out, `${date}-encrypt-${values.size}`, results, `${lines.join('\n')}\n`);
    console.log(`\n${lines.join('\n')}`);
    log(`written to ${base}.md and .json`);
  } finally {
    await cleanup();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exitCode = 1;
});
