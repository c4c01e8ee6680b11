/**
 * The demo's sample database: a small shop (customers, products, orders, order items, a revenue
 * view) with the features a real schema has — identity columns, foreign keys, checks, indexes,
 * JSONB, numeric money, timestamps, unicode. Rows come from a seeded random(), so every run
 * creates the same data.
 */
import pg from 'pg';

const SCHEMA = `
CREATE TABLE customers (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  email       text NOT NULL UNIQUE,
  name        text NOT NULL,
  country     char(2) NOT NULL,
  created_at  timestamptz NOT NULL
);
CREATE TABLE products (
  id          int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  sku         text NOT NULL UNIQUE,
  name        text NOT NULL,
  price       numeric(10,2) NOT NULL CHECK (price > 0),
  attributes  jsonb NOT NULL DEFAULT '{}'
);
CREATE TABLE orders (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  customer_id bigint NOT NULL REFERENCES customers (id),
  status      text NOT NULL CHECK (status IN ('pending', 'paid', 'shipped', 'delivered', 'refunded')),
  placed_at   timestamptz NOT NULL,
  note        text
);
CREATE INDEX orders_customer_id_idx ON orders (customer_id);
CREATE INDEX orders_placed_at_idx ON orders (placed_at);
CREATE TABLE order_items (
  order_id    bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
  product_id  int NOT NULL REFERENCES products (id),
  quantity    int NOT NULL CHECK (quantity > 0),
  unit_price  numeric(10,2) NOT NULL,
  PRIMARY KEY (order_id, product_id)
);
CREATE VIEW daily_revenue AS
  SELECT date_trunc('day', o.placed_at) AS day, sum(i.quantity * i.unit_price) AS revenue, count(DISTINCT o.id) AS orders
  FROM orders o JOIN order_items i ON i.order_id = o.id
  WHERE o.status <> 'refunded'
  GROUP BY 1;
`;

const CUSTOMERS = `
INSERT INTO customers (email, name, country, created_at)
SELECT 'customer' || g || '@example.com',
       (ARRAY['Amélie', 'Jürgen', 'Siobhán', 'Øyvind', 'Zoë', 'José', 'Mei', 'Olu'])[1 + g % 8] || ' ' || initcap(substr(md5(g::text), 1, 8)),
       (ARRAY['FR', 'DE', 'IE', 'NO', 'GB', 'ES', 'CN', 'NG'])[1 + g % 8],
       now() - (random() * interval '900 days')
FROM generate_series(1, $1::int) g`;

const PRODUCTS = `
INSERT INTO products (sku, name, price, attributes)
SELECT 'SKU-' || lpad(g::text, 5, '0'),
       (ARRAY['Mug', 'T-shirt', 'Notebook', 'Backpack', 'Lamp', 'Headphones'])[1 + g % 6] || ' ' || g,
       round((2 + random() * 200)::numeric, 2),
       jsonb_build_object('colour', (ARRAY['red', 'blue', 'black', 'white'])[1 + g % 4], 'weight_g', 50 + g % 950)
FROM generate_series(1, $1::int) g`;

/** `$1` orders for random customers, each with one to four distinct products. */
const ORDERS = `
WITH o AS (
  INSERT INTO orders (customer_id, status, placed_at, note)
  SELECT 1 + floor(random() * (SELECT count(*) FROM customers))::bigint,
         (ARRAY['pending', 'paid', 'shipped', 'delivered', 'delivered', 'delivered', 'refunded'])[1 + floor(random() * 7)::int],
         now() - (random() * interval '365 days'),
         CASE WHEN random() < 0.2 THEN 'Please leave the parcel with the neighbour, merci !' END
  FROM generate_series(1, $1::int)
  RETURNING id
)
INSERT INTO order_items (order_id, product_id, quantity, unit_price)
SELECT o.id, p.id, 1 + floor(random() * 3)::int, p.price
FROM o
CROSS JOIN LATERAL (
  SELECT DISTINCT 1 + floor(random() * (SELECT count(*) FROM products))::int AS pid
  FROM generate_series(1, 1 + (o.id % 4)::int)
) pick
JOIN products p ON p.id = pick.pid`;

const ROW_COUNT = 'SELECT (SELECT count(*) FROM customers) + (SELECT count(*) FROM products) + (SELECT count(*) FROM orders) + (SELECT count(*) FROM order_items) AS n';

/** How many rows of each: the default (≈ 300,000 rows, 39 MiB) is the benchmarks' "demo" size. */
export interface ShopSize {
  readonly customers: number;
  readonly products: number;
  readonly orders: number;
}
export const SHOP_SIZE: ShopSize = { customers: 20000, products: 1000, orders: 80000 };

/** Creates `database` on the server of `admin` and fills it; returns its row count and size. */
export async function createShop(admin: pg.ClientConfig, database: string, shop: ShopSize = SHOP_SIZE): Promise<{ rows: number; bytes: number }> {
  const server = new pg.Client(admin);
  await server.connect();
  try {
    await server.query(`CREATE DATABASE ${database}`);
  } finally {
    await server.end();
  }
  const c = new pg.Client({ ...admin, database });
  await c.connect();
  try {
    await c.query('SELECT setseed(0.42)');
    await c.query(SCHEMA);
    await c.query(CUSTOMERS, [shop.customers]);
    await c.query(PRODUCTS, [shop.products]);
    await c.query(ORDERS, [shop.orders]);
    await c.query('ANALYZE');
    const rows = await c.query<{ n: string }>(ROW_COUNT);
    const size = await c.query<{ s: string }>('SELECT pg_database_size(current_database()) AS s');
    return { rows: Number(rows.rows[0]!.n), bytes: Number(size.rows[0]!.s) };
  } finally {
    await c.end();
  }
}

/** A day of business: `count` new orders. */
export async function addOrders(conn: pg.ClientConfig, count: number): Promise<number> {
  const c = new pg.Client(conn);
  await c.connect();
  try {
    await c.query(ORDERS, [count]);
    return count;
  } finally {
    await c.end();
  }
}

/** Rows in the shop's four tables. */
export async function countRows(conn: pg.ClientConfig): Promise<number> {
  const c = new pg.Client(conn);
  await c.connect();
  try {
    return Number((await c.query<{ n: string }>(ROW_COUNT)).rows[0]!.n);
  } finally {
    await c.end();
  }
}
