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
 * - `shop` (createShopDatabase): the version matrices' database, in SQL PostgreSQL 13 runs.
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

/** Roles are cluster-wide: every server has them, as a target restoring owners and grants needs. */
export async function createShopRoles(pgsrv: TestPostgres): Promise<void> {
  await pgsrv.query('CREATE ROLE shop_owner LOGIN; CREATE ROLE shop_app LOGIN');
}

/**
 * `shop`: a production-shaped database in SQL every supported version runs (13+), owned by
 * shop_owner (createShopRoles first): a comment, grants, `ALTER DATABASE … SET`, `ALTER ROLE … IN
 * DATABASE … SET`, a connection limit; an enum, a domain, an identity and a bigserial sequence
 * (set past its rows), a partitioned table, a view, a populated materialized view, a trigger,
 * large objects. `definition`: the locale part of CREATE DATABASE.
 */
export async function createShopDatabase(pgsrv: TestPostgres, name: string, definition: string): Promise<void> {
  const db = quoteIdent(name);
  await pgsrv.query(`CREATE DATABASE ${db} OWNER shop_owner TEMPLATE template0 ENCODING 'UTF8' ${definition} CONNECTION LIMIT 50`);
  await pgsrv.query(`COMMENT ON DATABASE ${db} IS 'orders; production'`);
  await pgsrv.query(`REVOKE ALL ON DATABASE ${db} FROM PUBLIC; GRANT CONNECT, TEMPORARY ON DATABASE ${db} TO shop_app`);
  await pgsrv.query(`ALTER DATABASE ${db} SET search_path TO sales, public`);
  await pgsrv.query(`ALTER ROLE shop_app IN DATABASE ${db} SET work_mem TO '8MB'`);
  await pgsrv.query(
    `
    SET ROLE shop_owner;
    CREATE SCHEMA sales;
    GRANT USAGE ON SCHEMA sales TO shop_app;
    CREATE TYPE sales.status AS ENUM ('new', 'paid', 'shipped');
    CREATE DOMAIN sales.email AS text CHECK (VALUE LIKE '%@%');
    CREATE TABLE sales.customers (
      id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      email sales.email NOT NULL UNIQUE,
      name text NOT NULL,
      tags text[],
      profile jsonb
    );
    CREATE INDEX customers_name ON sales.customers (name);
    INSERT INTO sales.customers (email, name, tags, profile)
      SELECT 'c' || g || '@example.com', (ARRAY['Åsa', 'Zoë', 'Ärla', 'anna', 'Zorro', 'Örn'])[1 + g % 6] || ' ' || g,
             ARRAY['t' || g % 7, 'ü'], jsonb_build_object('n', g, 'vip', g % 10 = 0)
      FROM generate_series(1, 300) g;
    CREATE TABLE sales.orders (
      id bigserial PRIMARY KEY,
      customer_id int NOT NULL REFERENCES sales.customers (id),
      status sales.status NOT NULL DEFAULT 'new',
      total numeric(12, 2) CHECK (total >= 0),
      placed_at timestamptz NOT NULL
    );
    INSERT INTO sales.orders (customer_id, status, total, placed_at)
      SELECT 1 + g % 300, (ARRAY['new', 'paid', 'shipped']::sales.status[])[1 + g % 3], (g * 13 % 5000) / 10.0, '2026-01-01'::timestamptz + g * interval '1 hour'
      FROM generate_series(1, 1500) g;
    CREATE TABLE sales.events (id int NOT NULL, at date NOT NULL, payload text) PARTITION BY RANGE (at);
    CREATE TABLE sales.events_2025 PARTITION OF sales.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
    CREATE TABLE sales.events_2026 PARTITION OF sales.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
    INSERT INTO sales.events SELECT g, '2025-06-01'::date + g, 'e' || g FROM generate_series(1, 400) g;
    CREATE VIEW sales.order_totals AS SELECT customer_id, sum(total) AS total, count(*) AS n FROM sales.orders GROUP BY customer_id;
    CREATE MATERIALIZED VIEW sales.top_customers AS SELECT c.name, t.total FROM sales.order_totals t JOIN sales.customers c ON c.id = t.customer_id ORDER BY t.total DESC, c.id LIMIT 20;
    CREATE FUNCTION sales.stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.placed_at := coalesce(NEW.placed_at, now()); RETURN NEW; END $$;
    CREATE TRIGGER orders_stamp BEFORE INSERT ON sales.orders FOR EACH ROW EXECUTE FUNCTION sales.stamp();
    GRANT SELECT ON ALL TABLES IN SCHEMA sales TO shop_app;
    GRANT SELECT, INSERT ON sales.orders TO shop_app;
    CREATE TABLE public.documents (id int PRIMARY KEY, content oid);
    INSERT INTO public.documents VALUES (1, lo_from_bytea(0, convert_to(repeat('invoice ', 3000), 'UTF8'))), (2, lo_from_bytea(0, '\\x00ff00ff'::bytea));
    SELECT setval('sales.orders_id_seq', 9000);
    RESET ROLE;
    `,
    [],
    name,
  );
}
