import { describe, expect, it } from 'vitest';
import type { PgConnection } from '../../../engine/pg/connection.ts';
import { databasesToBackUp, selectDatabases } from '../../../engine/pg/discover.ts';

const creds = { host: 'db.internal', port: 5432, username: 'backup', password: 'pw', dbname: 'app', sslmode: undefined, sslrootcert: undefined };
const config = { databases: undefined, discover: undefined, sslMode: undefined, sslRootCert: undefined, rdsCaBundle: undefined, inLambda: false, connectTimeoutSeconds: 10 };

/** The server's list, and the connections it was asked through. */
function server(names: readonly string[]) {
  const asked: PgConnection[] = [];
  return { asked, listDatabases: async (conn: PgConnection) => (asked.push(conn), names) };
}

describe('databasesToBackUp', () => {
  it('takes the named databases first, then DATABASES, without asking the server', async () => {
    const s = server(['other']);
    expect(await databasesToBackUp(['a', 'b'], { ...config, databases: ['c'] }, creds, s)).toEqual(['a', 'b']);
    expect(await databasesToBackUp(undefined, { ...config, databases: ['c'] }, creds, s)).toEqual(['c']);
    expect(s.asked).toEqual([]);
  });

  it('DATABASES=*: lists the server through the secret\'s database (postgres without one) and applies the patterns', async () => {
    const s = server(['app', 'app_test', 'rdsadmin', 'template1', 'shop']);
    const discover = { include: ['*'], exclude: ['*_test'] };
    expect(await databasesToBackUp(undefined, { ...config, discover }, creds, s)).toEqual(['app', 'shop']);
    expect(await databasesToBackUp(undefined, { ...config, discover }, { ...creds, dbname: undefined }, s)).toEqual(['app', 'shop']);
    expect(s.asked.map((c) => [c.host, c.database])).toEqual([['db.internal', 'app'], ['db.internal', 'postgres']]);
  });

  it('else the login\'s own database, or none', async () => {
    expect(await databasesToBackUp(undefined, config, creds, server([]))).toEqual(['app']);
    expect(await databasesToBackUp(undefined, config, { ...creds, dbname: undefined }, server([]))).toEqual([]);
  });
});

describe('selectDatabases', () => {
  it('never offers templates or rdsadmin, exclude wins, the result is sorted and unique', () => {
    expect(selectDatabases(['b', 'a', 'a', 'template0', 'rdsadmin', 'a_old'], { include: ['*'], exclude: ['*_old'] })).toEqual(['a', 'b']);
    expect(selectDatabases(['shop1', 'shop22', 'blog'], { include: ['shop?'], exclude: [] })).toEqual(['shop1']);
  });
});
