/** Administrative SQL on the target server: does a database exist, create it, drop it, is it empty. */
import pg from 'pg';
import { DatabaseMissingError, RestoreError } from '../errors.ts';
import { quoteIdent, withClient, type PgTarget } from './target.ts';

/** A database to connect to for CREATE/DROP DATABASE. */
const MAINTENANCE_DATABASES = ['postgres', 'template1'];

async function withMaintenanceClient<T>(target: PgTarget, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  let last: unknown;
  for (const db of MAINTENANCE_DATABASES) {
    try {
      return await withClient(target, db, fn);
    } catch (err) {
      if (!(err instanceof DatabaseMissingError)) throw err;
      last = err;
    }
  }
  throw last;
}

export async function databaseExists(target: PgTarget, database: string): Promise<boolean> {
  return withMaintenanceClient(target, async (c) => (await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [database])).rowCount === 1);
}

export async function createDatabase(target: PgTarget, database: string): Promise<void> {
  await withMaintenanceClient(target, async (c) => {
    try {
      await c.query(`CREATE DATABASE ${quoteIdent(database)}`);
    } catch (err) {
      throw new RestoreError(`cannot create database "${database}": ${(err as Error).message}`, {
        cause: err,
        hint: 'The user in the URL needs CREATEDB (or create the database yourself and restore without --create).',
      });
    }
  });
}

export async function dropDatabase(target: PgTarget, database: string): Promise<void> {
  await withMaintenanceClient(target, async (c) => {
    // WITH (FORCE) (PostgreSQL 13+) ends sessions a failed pg_restore may have left behind.
    const force = Number((await c.query<{ v: string }>("SELECT current_setting('server_version_num') AS v")).rows[0]!.v) >= 130000;
    await c.query(`DROP DATABASE IF EXISTS ${quoteIdent(database)}${force ? ' WITH (FORCE)' : ''}`);
  });
}

/**
 * What the target database already holds besides an empty `public` schema: user tables, views,
 * sequences, functions, types, schemas and extensions other than plpgsql. Zero means "empty".
 */
const USER_OBJECTS_SQL = `
SELECT
  (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_to%' AND n.nspname NOT LIKE 'pg\\_temp%')
  + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema'))
  + (SELECT count(*) FROM pg_namespace n
     WHERE n.nspname NOT IN ('public', 'pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_to%' AND n.nspname NOT LIKE 'pg\\_temp%')
  + (SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql')
  AS n`;

export async function countUserObjects(target: PgTarget, database = target.database): Promise<number> {
  return withClient(target, database, async (c) => Number((await c.query<{ n: string }>(USER_OBJECTS_SQL)).rows[0]!.n));
}
