/**
 * Small databases that reproduce what a restore can lose (issue 11), each case a few lines of SQL:
 *
 * - `fidelity` (ICU, owned by a role of its own): a database comment, grants, `ALTER DATABASE …
 *   SET search_path`, a connection limit, `ALTER ROLE … IN DATABASE … SET`; a materialized view
 *   created `WITH NO DATA`; a partitioned table whose parent has a `NOT NULL … NOT VALID`
 *   constraint over rows holding NULLs; a table whose columns use a domain, an enum, a sequence
 *   of another schema and an IDENTITY; large objects; objects in a second schema reached through
 *   the database's search_path.
 * - `fid_ascii` (SQL_ASCII, locale C): bytes that are not valid UTF-8, which `upper()` handles in
 *   SQL_ASCII and refuses in UTF8.
 * - `fid_builtin` (the `builtin` locale provider, PostgreSQL 17+): a definition an older server
 *   cannot honour.
 */
import { quoteIdent, type TestPostgres } from './postgres.ts';

/** Cluster-wide roles the fixtures use (a target server needs them to restore owners and grants). */
export const FIDELITY_ROLES = ['fid_owner', 'fid_app', 'fid_reader'] as const;

export async function createFidelityRoles(pgsrv: TestPostgres): Promise<void> {
  for (const role of FIDELITY_ROLES) {
    await pgsrv.query(`DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${role}') THEN CREATE ROLE ${role} LOGIN PASSWORD 'fid-${role}'; END IF; END $$`);
  }
}

/** The tables of `fidelity` with the exact rows each holds (ONLY: a partition parent holds none of its own). */
export const FIDELITY_ROWS: Readonly<Record<string, number>> = {
  'ledger.accounts': 30,
  'ledger.entries': 200,
  'ledger.measurements': 0,
  'ledger.measurements_2025': 60,
  'ledger.measurements_2026': 40,
  'public.documents': 2,
  'public.names': 6,
  // `ledger.pending_totals` is a materialized view WITH NO DATA: no rows to count, and no error.
};

export async function createFidelityDatabase(pgsrv: TestPostgres, name = 'fidelity'): Promise<void> {
  const db = quoteIdent(name);
  await createFidelityRoles(pgsrv);
  await pgsrv.query(`CREATE DATABASE ${db} OWNER fid_owner TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'sv-SE' LOCALE 'C.UTF-8' CONNECTION LIMIT 42`);
  await pgsrv.query(`COMMENT ON DATABASE ${db} IS 'the ledger; do not drop'`);
  await pgsrv.query(`REVOKE ALL ON DATABASE ${db} FROM PUBLIC`);
  await pgsrv.query(`GRANT CONNECT, TEMPORARY ON DATABASE ${db} TO fid_app`);
  await pgsrv.query(`GRANT CONNECT ON DATABASE ${db} TO fid_reader`);
  await pgsrv.query(`ALTER DATABASE ${db} SET search_path TO ledger, public`);
  await pgsrv.query(`ALTER DATABASE ${db} SET statement_timeout TO '5min'`);
  await pgsrv.query(`ALTER ROLE fid_app IN DATABASE ${db} SET work_mem TO '8MB'`);
  await pgsrv.query(
    `
    SET ROLE fid_owner;
    CREATE SCHEMA ledger;
    GRANT USAGE ON SCHEMA ledger TO fid_app, fid_reader;
    CREATE TYPE ledger.account_kind AS ENUM ('asset', 'liability', 'equity');
    CREATE DOMAIN ledger.email AS text CHECK (VALUE LIKE '%@%');
    CREATE SEQUENCE public.account_codes START 1000;
    CREATE TABLE ledger.accounts (
      id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      code int NOT NULL DEFAULT nextval('public.account_codes'),
      kind ledger.account_kind NOT NULL,
      contact ledger.email,
      name text NOT NULL
    );
    INSERT INTO ledger.accounts (kind, contact, name)
      SELECT (ARRAY['asset', 'liability', 'equity']::ledger.account_kind[])[1 + g % 3], 'a' || g || '@example.com', 'Åsa ' || g FROM generate_series(1, 30) g;
    CREATE TABLE ledger.entries (id bigserial PRIMARY KEY, account_id int NOT NULL REFERENCES ledger.accounts(id), amount numeric(12, 2) NOT NULL, memo text);
    INSERT INTO ledger.entries (account_id, amount, memo) SELECT 1 + g % 30, (g * 7 % 1000) / 10.0, CASE WHEN g % 5 = 0 THEN NULL ELSE 'memo ' || g END FROM generate_series(1, 200) g;
    GRANT SELECT ON ledger.accounts, ledger.entries TO fid_reader;
    GRANT SELECT, INSERT ON ledger.entries TO fid_app;
    -- Partitions whose rows hold NULLs, then a NOT VALID not-null constraint on the parent: it
    -- must be added after the data (it would reject those rows if created before).
    CREATE TABLE ledger.measurements (id int NOT NULL, city text, reading int) PARTITION BY RANGE (id);
    CREATE TABLE ledger.measurements_2025 PARTITION OF ledger.measurements FOR VALUES FROM (0) TO (1000);
    CREATE TABLE ledger.measurements_2026 PARTITION OF ledger.measurements FOR VALUES FROM (1000) TO (2000);
    INSERT INTO ledger.measurements SELECT g, CASE WHEN g % 4 = 0 THEN NULL ELSE 'city ' || g END, g FROM generate_series(1, 60) g;
    INSERT INTO ledger.measurements SELECT 1000 + g, NULL, g FROM generate_series(1, 40) g;
    ALTER TABLE ledger.measurements ADD CONSTRAINT measurements_city_nn NOT NULL city NOT VALID;
    CREATE MATERIALIZED VIEW ledger.pending_totals AS SELECT account_id, sum(amount) AS total FROM ledger.entries GROUP BY account_id WITH NO DATA;
    -- Sort order differs between ICU sv-SE and C: å/ä/ö sort after z in Swedish.
    CREATE TABLE public.names (name text PRIMARY KEY);
    INSERT INTO public.names VALUES ('zebra'), ('åsa'), ('ärla'), ('örn'), ('anna'), ('Zorro');
    CREATE TABLE public.documents (id int PRIMARY KEY, content oid);
    INSERT INTO public.documents VALUES (1, lo_from_bytea(0, convert_to(repeat('ledger page ', 2000), 'UTF8'))), (2, lo_from_bytea(0, '\\x00ff00ff'::bytea));
    SELECT setval('public.account_codes', 5000);
    RESET ROLE;
    `,
    [],
    name,
  );
}

export async function createAsciiDatabase(pgsrv: TestPostgres, name = 'fid_ascii'): Promise<void> {
  await pgsrv.query(`CREATE DATABASE ${quoteIdent(name)} TEMPLATE template0 ENCODING 'SQL_ASCII' LOCALE 'C'`);
  // 0xE9 ("é" in Latin-1) alone is not valid UTF-8.
  await pgsrv.query(`CREATE TABLE words (id int PRIMARY KEY, s text); INSERT INTO words VALUES (1, E'caf\\351'), (2, 'plain')`, [], name);
}

export async function createBuiltinDatabase(pgsrv: TestPostgres, name = 'fid_builtin'): Promise<void> {
  await pgsrv.query(`CREATE DATABASE ${quoteIdent(name)} TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER builtin BUILTIN_LOCALE 'C.UTF-8' LOCALE 'C.UTF-8'`);
  await pgsrv.query('CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10)', [], name);
}
