/** Administrative SQL on the target server: does a database exist, create it as the backup defines it, drop it, is it empty. */
import type pg from 'pg';
import { DatabaseMissingError, RestoreError } from '../errors.ts';
import { serverVersionNum, withClient } from '../pg/client.ts';
import type { PgConnection } from '../pg/connection.ts';
import { serverMajor } from '../pg/pg-dump.ts';
import { describeCreate, quoteIdent, type DefinitionStatement } from './database-definition.ts';
import { fitCreateDatabase } from './server-versions.ts';

/** A database to connect to for CREATE/DROP DATABASE. */
const MAINTENANCE_DATABASES = ['postgres', 'template1'];

async function withMaintenanceClient<T>(target: PgConnection, fn: (client: pg.Client) => Promise<T>): Promise<T> {
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

/** The server's version as a manifest records its source's (`18.1`, `13.23`), and its major. */
export async function serverVersion(target: PgConnection): Promise<{ readonly text: string; readonly major: number }> {
  return withMaintenanceClient(target, async (c) => {
    const row = (await c.query<{ n: string; v: string }>("SELECT current_setting('server_version_num') AS n, current_setting('server_version') AS v")).rows[0]!;
    return { text: row.v.split(' ')[0]!, major: serverMajor(Number(row.n)) };
  });
}

export async function databaseExists(target: PgConnection, database: string): Promise<boolean> {
  return withMaintenanceClient(target, async (c) => (await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [database])).rowCount === 1);
}

export interface DefinitionOutcome {
  /** Statements of the definition that failed, each with its error (like pg_restore's). */
  readonly errors: string[];
  /** Statements left out on purpose (--no-owner, --no-acl), as they read. */
  readonly notRestored: string[];
}

/**
 * Creates `database` as the archive defines its own database (database-definition.ts): the
 * CREATE DATABASE statement first (template0, the source's encoding, locale and provider), and
 * when the server cannot honour it, a RestoreError saying what the backup asks for and nothing
 * created. Then owner, comment, settings, connection limit, role settings and grants, each on
 * its own: a failure is returned as an error, as pg_restore reports it, not thrown. `--no-owner`
 * leaves out the owner and the role settings (both name roles of the source server), `--no-acl`
 * the grants. Without a definition in the archive: a plain CREATE DATABASE from template0.
 */
export async function createDatabase(
  target: PgConnection,
  database: string,
  definition: readonly DefinitionStatement[] = [],
  options: { readonly noOwner?: boolean | undefined; readonly noAcl?: boolean | undefined } = {},
): Promise<DefinitionOutcome> {
  const create = definition.find((s) => s.kind === 'create')?.sql ?? `CREATE DATABASE ${quoteIdent(database)} WITH TEMPLATE = template0;`;
  const errors: string[] = [];
  const notRestored: string[] = [];
  await withMaintenanceClient(target, async (c) => {
    // pg_dump 18 words the definition for PostgreSQL 18: fitted to this server, or refused naming
    // what it lacks, before anything is created (server-versions.ts).
    const version = await serverVersionNum(c);
    const fitted = fitCreateDatabase(create, version);
    if ('unsupported' in fitted) {
      throw new RestoreError(`cannot create database "${database}" as the backup defines it (${describeCreate(create)}): ${fitted.unsupported.reason}; nothing was restored`, {
        hint:
          `Restore into a PostgreSQL ${fitted.unsupported.needs} or newer server; or create the database yourself with a locale this server has and restore into it ` +
          'without --create (collation-dependent order and unique indexes may then differ: yours to judge).',
      });
    }
    try {
      await c.query(fitted.sql);
    } catch (err) {
      const code = (err as { code?: string }).code;
      const privilege = code === '42501';
      throw new RestoreError(`cannot create database "${database}" as the backup defines it (${describeCreate(create)}): ${(err as Error).message}; nothing was restored`, {
        cause: err,
        hint: privilege
          ? 'The user in the URL needs CREATEDB (or create the database yourself and restore without --create).'
          : 'The target server lacks what the source database used (an encoding, a locale, a locale provider such as ICU or builtin, or a newer PostgreSQL): ' +
            'install the locale or use a server of the same or a newer major version; or create the database yourself with the closest definition and restore into it without --create (the differences are then yours to judge).',
      });
    }
  });
  // The rest inside the new database, as `pg_restore --create` runs it after `\connect`: a
  // comment's text is converted into this database's encoding, not the maintenance database's.
  const rest = definition.filter((s) => s.kind !== 'create');
  if (rest.length === 0) return { errors, notRestored };
  await withClient(target, database, async (c) => {
    for (const s of rest) {
      if ((options.noOwner && (s.kind === 'owner' || s.kind === 'role-setting')) || (options.noAcl && s.kind === 'acl')) {
        notRestored.push(s.sql);
        continue;
      }
      try {
        await c.query(s.run ?? s.sql);
      } catch (err) {
        errors.push(`${(err as Error).message}
Command was: ${s.sql}`);
      }
    }
  });
  return { errors, notRestored };
}

export async function dropDatabase(target: PgConnection, database: string): Promise<void> {
  await withMaintenanceClient(target, async (c) => {
    // WITH (FORCE) (PostgreSQL 13+) ends sessions a failed pg_restore may have left behind.
    const force = (await serverVersionNum(c)) >= 130000;
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

export async function countUserObjects(target: PgConnection, database = target.database): Promise<number> {
  return withClient(target, database, async (c) => Number((await c.query<{ n: string }>(USER_OBJECTS_SQL)).rows[0]!.n));
}
