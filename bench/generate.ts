/**
 * Generates a realistic database of about `targetBytes`, reproducibly from `seed`: the same seed
 * and size give the same rows (PostgreSQL's random() is deterministic after setseed() within
 * one session, and every batch is issued in the same order).
 *
 * Tables: customers (text, numeric, timestamps, JSONB profile, two indexes), orders (numbers,
 * status, timestamps), events (bulk: JSONB payload and free text, the bulk of the size), and a
 * few large objects in documents.
 */
import pg from 'pg';

export interface GenerateOptions {
  readonly targetBytes: number;
  readonly seed?: number;
  /** Rows of `events` per batch; one batch is roughly 40 MB. */
  readonly batchRows?: number;
  readonly onProgress?: (bytes: number) => void;
}

const SCHEMA = `
CREATE TABLE customers (
  id bigint PRIMARY KEY,
  name text NOT NULL,
  email text NOT NULL,
  created_at timestamptz NOT NULL,
  balance numeric(12,2) NOT NULL,
  profile jsonb NOT NULL
);
CREATE TABLE orders (
  id bigint PRIMARY KEY,
  customer_id bigint NOT NULL REFERENCES customers(id),
  amount numeric(12,2) NOT NULL,
  status text NOT NULL,
  placed_at timestamptz NOT NULL
);
CREATE TABLE events (
  id bigint PRIMARY KEY,
  customer_id bigint NOT NULL,
  occurred_at timestamptz NOT NULL,
  kind text NOT NULL,
  payload jsonb NOT NULL,
  body text NOT NULL
);
CREATE TABLE documents (
  id bigint PRIMARY KEY,
  title text NOT NULL,
  content oid NOT NULL
);
`;

// Words give text that compresses like prose; md5 hex gives the incompressible part of ids,
// tokens and hashes that real payloads carry.
const WORDS = `'{order,invoice,payment,refund,shipment,customer,account,balance,update,created,deleted,
status,pending,complete,failed,retry,warehouse,product,price,discount,coupon,review,rating,
address,city,country,email,phone,session,login,logout,cart,checkout,delivery,return,ticket}'::text[]`;

export async function generateDatabase(connectionString: string, options: GenerateOptions): Promise<{ bytes: number; eventRows: number }> {
  const seed = options.seed ?? 42;
  const batchRows = options.batchRows ?? 40_000;
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    await client.query(SCHEMA);
    await client.query('SELECT setseed($1)', [((seed % 1000) / 1000) * 2 - 1]);
    await client.query(`
      INSERT INTO customers
      SELECT g, 'Customer ' || g, 'user' || g || '@example.com',
             timestamptz '2020-01-01' + (random() * 2000) * interval '1 day',
             round((random() * 100000)::numeric, 2),
             jsonb_build_object('tier', (ARRAY['free','pro','enterprise'])[1 + floor(random()*3)::int],
                                'tags', jsonb_build_array(md5(random()::text), md5(random()::text)),
                                'consent', random() < 0.5)
      FROM generate_series(1, 20000) g`);
    await client.query(`
      INSERT INTO orders
      SELECT g, 1 + floor(random() * 20000)::bigint, round((random() * 500)::numeric, 2),
             (ARRAY['new','paid','shipped','cancelled'])[1 + floor(random()*4)::int],
             timestamptz '2021-01-01' + (random() * 1500) * interval '1 day'
      FROM generate_series(1, 200000) g`);
    await client.query('CREATE INDEX customers_email ON customers (email)');
    await client.query('CREATE INDEX orders_customer ON orders (customer_id)');
    // A few large objects, so backups and restores exercise pg_dump's blob path.
    await client.query(`
      INSERT INTO documents
      SELECT g, 'Document ' || g,
             lo_from_bytea(0, convert_to(repeat(md5(random()::text) || ' ', 20000 + g * 1000), 'UTF8'))
      FROM generate_series(1, 8) g`);

    let nextId = 1;
    let bytes = await databaseSize(client);
    while (bytes < options.targetBytes) {
      await client.query(
        `INSERT INTO events
         SELECT g, 1 + floor(random() * 20000)::bigint,
                timestamptz '2024-01-01' + (random() * 700) * interval '1 day',
                (${WORDS})[1 + floor(random() * 36)::int],
                jsonb_build_object('request_id', md5(random()::text), 'amount', round((random() * 1000)::numeric, 2),
                                   'items', floor(random() * 10)::int, 'ip', '10.' || floor(random()*255)::int || '.' || floor(random()*255)::int || '.1'),
                (SELECT string_agg(CASE WHEN random() < 0.7 THEN (${WORDS})[1 + floor(random() * 36)::int] ELSE md5(random()::text) END, ' ')
                   FROM generate_series(1, 40 + (g % 7) * 10))
         FROM generate_series($1::bigint, $2::bigint) g`,
        [nextId, nextId + batchRows - 1],
      );
      nextId += batchRows;
      bytes = await databaseSize(client);
      options.onProgress?.(bytes);
    }
    await client.query('CREATE INDEX events_occurred ON events (occurred_at)');
    await client.query('VACUUM ANALYZE');
    return { bytes: await databaseSize(client), eventRows: nextId - 1 };
  } finally {
    await client.end();
  }
}

async function databaseSize(client: pg.Client): Promise<number> {
  const res = await client.query<{ size: string }>('SELECT pg_database_size(current_database())::text AS size');
  return Number(res.rows[0]!.size);
}
