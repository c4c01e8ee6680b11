import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPostgres, type TestPostgres } from './postgres.ts';

describe('test PostgreSQL harness', () => {
  let pgsrv: TestPostgres;
  beforeAll(async () => { pgsrv = await startPostgres(); });
  afterAll(async () => { await pgsrv?.stop(); });
  it('starts a PostgreSQL 18 server', async () => {
    const rows = await pgsrv.query<{ v: string }>("select current_setting('server_version_num') as v");
    expect(Number(rows[0]!.v)).toBeGreaterThanOrEqual(180000);
  });
});
