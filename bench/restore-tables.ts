/**
 * `npm run bench:restore-tables`: does parallel restore of an archive without data offsets (what
 * a dump streamed to S3 is) cost more as tables multiply? pg_restore must find each table's data
 * block by reading block headers from where it last was, one scan per worker; if that were
 * per-table from the start of the file, the data pass would grow with tables².
 *
 *   npm run bench:restore-tables -- [--tables 100,400,1600] [--rows 2000] [--jobs 2] [--repeat 2] [--out bench/results]
 *
 * For each table count: one database of N tables of `rows` rows each; dumped twice with the
 * layer's pg_dump (to a pipe: no offsets, as the engine uploads; and with --file: offsets), each
 * restored as the engine does (pre-data; data with --jobs; post-data with --jobs), timing the
 * data pass. The ratio offset-less ÷ offsets per table count is the answer: flat means linear.
 */
import { spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { pgRestoreArgs, sections } from '../engine/restore/pg-restore.ts';
import { ensureLayer } from '../scripts/layer.ts';
import { startPostgres, type TestPostgres } from '../test/support/postgres.ts';
import { spread, spawnTimed, type Spread } from './measure.ts';

const { values } = parseArgs({
  options: {
    tables: { type: 'string', default: '100,400,1600' },
    rows: { type: 'string', default: '2000' },
    jobs: { type: 'string', default: '2' },
    repeat: { type: 'string', default: '2' },
    out: { type: 'string', default: 'bench/results' },
  },
});
const counts = values.tables.split(',').map(Number);
const rows = Number(values.rows);
const jobs = Number(values.jobs);
const repeat = Number(values.repeat);

const log = (m: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${m}`);

function env(pg: TestPostgres, database: string): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH, PGHOST: pg.host, PGPORT: String(pg.port), PGUSER: pg.user, PGPASSWORD: pg.password, PGDATABASE: database, PGPASSFILE: '/dev/null' };
}

interface Row {
  readonly tables: number;
  readonly dumpBytes: number;
  readonly offsetsMs: Spread;
  readonly offsetlessMs: Spread;
}

async function main(): Promise<void> {
  const layer = await ensureLayer();
  const pgDump = join(layer, 'bin', 'pg_dump');
  const pgRestore = join(layer, 'bin', 'pg_restore');
  const work = mkdtempSync(join(tmpdir(), 'pgs3b-restore-tables-'));
  const pg = await startPostgres();
  const results: Row[] = [];
  try {
    for (const n of counts) {
      const db = `tables_${n}`;
      await pg.query(`CREATE DATABASE ${db}`);
      log(`${n} tables of ${rows} rows`);
      await pg.query(
        `DO $$ BEGIN FOR i IN 1..${n} LOOP
           EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, v text)', i);
           EXECUTE format('INSERT INTO t%s SELECT g, md5(g::text) FROM generate_series(1, ${rows}) g', i);
         END LOOP; END $$`,
        [],
        db,
      );
      const withOffsets = join(work, `${db}.file.dump`);
      const offsetless = join(work, `${db}.pipe.dump`);
      await spawnTimed(pgDump, ['--format=custom', '--compress=zstd:1', '--no-sync', `--file=${withOffsets}`], { env: env(pg, db), stdio: ['ignore', 'ignore', 'pipe'], label: 'pg_dump --file' }).done;
      // To a pipe, as the engine streams it to S3: pg_dump cannot seek back to write the offsets.
      const child = spawn(pgDump, ['--format=custom', '--compress=zstd:1', '--no-sync'], { env: env(pg, db), stdio: ['ignore', 'pipe', 'inherit'] });
      await Promise.all([pipeline(child.stdout, createWriteStream(offsetless)), new Promise((r) => child.on('close', r))]);
      const times: Record<'offsets' | 'offsetless', number[]> = { offsets: [], offsetless: [] };
      for (let round = 1; round <= repeat; round++) {
        for (const [kind, file] of [['offsets', withOffsets], ['offsetless', offsetless]] as const) {
          const target = `${db}_restore`;
          await pg.query(`DROP DATABASE IF EXISTS ${target}`);
          await pg.query(`CREATE DATABASE ${target}`);
          for (const section of sections({})) {
            const r = await spawnTimed(pgRestore, pgRestoreArgs(target, file, { section, jobs }), { env: env(pg, target), stdio: ['ignore', 'ignore', 'pipe'], label: `pg_restore ${section}` }).done;
            if (section === 'data') times[kind].push(r.ms);
          }
          log(`  round ${round} ${kind}: data pass ${(times[kind].at(-1)! / 1000).toFixed(2)} s`);
          await pg.query(`DROP DATABASE ${target}`);
        }
      }
      results.push({ tables: n, dumpBytes: statSync(offsetless).size, offsetsMs: spread(times.offsets), offsetlessMs: spread(times.offsetless) });
      rmSync(withOffsets);
      rmSync(offsetless);
      await pg.query(`DROP DATABASE ${db}`);
    }
  } finally {
    await pg.stop();
    rmSync(work, { recursive: true, force: true });
  }
  const lines = [
    `# Parallel restore of an archive without data offsets (${new Date().toISOString().slice(0, 10)})`,
    '',
    `Data pass of \`pg_restore --section=data --jobs ${jobs}\` (median of ${repeat}), tables of ${rows} rows, zstd:1, embedded PostgreSQL 18 on this machine.`,
    '',
    '| tables | dump | with offsets (pg_dump --file) | without offsets (streamed, as the engine) | ratio |',
    '|---:|---:|---:|---:|---:|',
    ...results.map((r) => `| ${r.tables} | ${(r.dumpBytes / 1024 ** 2).toFixed(1)} MiB | ${(r.offsetsMs.median / 1000).toFixed(2)} s | ${(r.offsetlessMs.median / 1000).toFixed(2)} s | ${(r.offsetlessMs.median / r.offsetsMs.median).toFixed(2)} |`),
  ];
  console.log(`\n${lines.join('\n')}`);
  mkdirSync(values.out, { recursive: true });
  const file = join(values.out, `${new Date().toISOString().slice(0, 10)}-restore-tables.md`);
  writeFileSync(file, `${lines.join('\n')}\n`);
  log(`written to ${file}`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exitCode = 1;
});
