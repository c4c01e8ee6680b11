/**
 * `npx tsx bench/row-counts.ts [GB]` (default 1): what ROW_COUNTS costs. Generates a database of
 * that size (bench/generate.ts), then times, three times each, pg_dump (zstd:1, to a counting sink)
 * alone and inside withDumpSnapshot with ROW_COUNTS=exact and estimate (the counts run beside the
 * dump, on the dump's exported snapshot), and the exact count on its own. Prints medians as JSON.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { withDumpSnapshot } from '../engine/pg/row-counts.ts';
import type { PgConnection } from '../engine/pg/connection.ts';
import type { RowCountMode } from '../engine/store/manifest.ts';
import { startEmbeddedPostgres } from '../scripts/local-services.ts';
import { ensureLayer } from '../scripts/layer.ts';
import { generateDatabase } from './generate.ts';

const gb = Number(process.argv[2] ?? '1');
const password = 'bench';
const layer = await ensureLayer('x86_64');
const pgsrv = await startEmbeddedPostgres({ password, fast: true });
try {
  const admin = `postgresql://postgres:${password}@${pgsrv.host}:${pgsrv.port}/postgres`;
  const { default: pg } = await import('pg');
  const c = new pg.Client({ connectionString: admin });
  await c.connect();
  await c.query('CREATE DATABASE bench');
  await c.end();
  const url = `postgresql://postgres:${password}@${pgsrv.host}:${pgsrv.port}/bench`;
  const generated = await generateDatabase(url, { targetBytes: gb * 1024 ** 3 });
  const conn: PgConnection = {
    host: pgsrv.host, port: pgsrv.port, user: 'postgres', password, database: 'bench', sslmode: 'disable', sslrootcert: undefined,
    connectTimeoutSeconds: 10, applicationName: undefined, passfile: '/dev/null', params: {},
  };
  const dump = (snapshot: string | undefined): Promise<number> =>
    new Promise((resolve, reject) => {
      const args = ['-Fc', '--compress=zstd:1', ...(snapshot ? [`--snapshot=${snapshot}`] : [])];
      const child = spawn(join(layer, 'bin', 'pg_dump'), args, {
        env: { PGHOST: pgsrv.host, PGPORT: String(pgsrv.port), PGUSER: 'postgres', PGPASSWORD: password, PGDATABASE: 'bench', PATH: process.env.PATH ?? '' },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let bytes = 0;
      child.stdout.on('data', (b: Buffer) => (bytes += b.length));
      child.on('error', reject);
      child.on('close', (code) => (code === 0 ? resolve(bytes) : reject(new Error(`pg_dump exit ${code}`))));
    });
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const time = async (mode: RowCountMode | 'none'): Promise<{ wallMs: number; countMs: number }> => {
    const t0 = Date.now();
    if (mode === 'none') {
      await dump(undefined);
      return { wallMs: Date.now() - t0, countMs: 0 };
    }
    const { counts } = await withDumpSnapshot(conn, mode, dump);
    return { wallMs: Date.now() - t0, countMs: counts.ms };
  };
  const results: Record<string, { wallMs: number; countMs: number }> = {};
  for (const mode of ['none', 'exact', 'estimate'] as const) {
    const runs = [];
    for (let i = 0; i < 3; i++) runs.push(await time(mode));
    results[mode] = { wallMs: median(runs.map((r) => r.wallMs)), countMs: median(runs.map((r) => r.countMs)) };
  }
  console.log(JSON.stringify({ databaseBytes: generated.bytes, results, exactOverheadPercent: Math.round((results.exact!.wallMs / results.none!.wallMs - 1) * 100) }, null, 2));
} finally {
  await pgsrv.stop();
}
