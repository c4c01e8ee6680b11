/**
 * `pg-s3-backup doctor --local` on the README's host set-up: the repository checked out, its layer
 * built (npm run build:layer), no PG_DUMP_BIN and nothing at /opt. `run` finds pg_dump there
 * (cli/pg-tool.ts), so doctor must find the same one (issue 22, item 7).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runCli, startCliServices, type CliServices, resultOf } from '../support/cli.ts';

let svc: CliServices;

beforeAll(async () => {
  svc = await startCliServices();
}, 300_000);

afterAll(async () => {
  await svc?.stop();
});

it('finds pg_dump where run finds it (the repository\'s layer), and run works with the same environment', async () => {
  const env = { ...svc.env };
  delete env.PG_DUMP_BIN;
  const doctor = await runCli(['doctor', '--local', '--json'], env);
  const report = resultOf<{ checks: { name: string; status: string; detail: string }[] }>(doctor);
  const pgDump = report.checks.find((c) => c.name.startsWith('pg_dump'));
  expect(pgDump, doctor.stdout).toMatchObject({ name: 'pg_dump: runs', status: 'ok', detail: expect.stringMatching(/^pg_dump 18/) });
  expect(report.checks.filter((c) => c.status === 'fail'), doctor.stdout).toEqual([]);
  const run = await runCli(['backup', '--reason', 'doctor --local test'], env);
  expect(run.code, run.stderr).toBe(0);
});
