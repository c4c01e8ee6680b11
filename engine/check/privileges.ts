/**
 * Can the backup role dump everything? pg_dump fails on the first object it may not read, late in
 * the night: a table or sequence without SELECT (or in a schema without USAGE), a table with
 * row-level security that applies to the role (pg_dump runs with row_security=off and then
 * refuses), a large object without SELECT (`pg_read_all_data` covers none of the last two).
 * Answered from the catalogs with the server's own privilege functions, before pg_dump runs.
 */
import type pg from 'pg';
import { fail, pass, type Check } from './check.ts';

/** What the catalogs say about the connected role (names already quoted as SQL identifiers). */
export interface PrivilegeFacts {
  /** `quote_ident(current_user)`. */
  readonly role: string;
  readonly superuser: boolean;
  readonly bypassRls: boolean;
  readonly serverVersionNum: number;
  /** `lo_compat_privileges = on`: every large object is readable by everyone. */
  readonly loCompatPrivileges: boolean;
  /** Tables and sequences pg_dump reads. */
  readonly relations: number;
  /** Those the role cannot read, `schema.name` quoted, at most SAMPLE_LIMIT of them… */
  readonly unreadable: readonly { readonly name: string; readonly schema: string; readonly schemaUsage: boolean }[];
  /** …and how many in all. */
  readonly unreadableCount: number;
  /** Tables whose row-level security applies to the role. */
  readonly rlsBlocked: readonly string[];
  readonly rlsBlockedCount: number;
  readonly largeObjects: number;
  /** OIDs of large objects the role cannot read (a sample), and how many in all. */
  readonly unreadableLargeObjects: readonly string[];
  readonly unreadableLargeObjectCount: number;
}

const SAMPLE_LIMIT = 1000;

/**
 * The relations pg_dump reads data from or locks: tables (plain and partitioned) and sequences,
 * outside the system schemas, not temporary, not owned by an extension (unless they are one of
 * its configuration tables, which pg_dump does dump).
 */
const DUMPED_RELATIONS = `
  select c.oid, n.oid as nsp, n.nspname, c.relname, c.relkind, c.relowner, c.relrowsecurity, c.relforcerowsecurity
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
   where c.relkind in ('r', 'p', 'S') and c.relpersistence <> 't'
     and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_toast'
     and (not exists (select 1 from pg_depend d where d.classid = 'pg_class'::regclass and d.objid = c.oid and d.deptype = 'e')
          or exists (select 1 from pg_extension e where c.oid = any (e.extconfig)))`;

/** A large object is readable when its ACL (or the owner's default) grants SELECT to PUBLIC or a role we have. */
const UNREADABLE_LARGE_OBJECTS = `
  select m.oid::text as oid, count(*) over () as total
    from pg_largeobject_metadata m
   where not exists (
           select 1 from aclexplode(coalesce(m.lomacl, acldefault('L', m.lomowner))) a
            where a.privilege_type = 'SELECT'
              and case when a.grantee = 0 then true else pg_has_role(a.grantee, 'USAGE') end)
   order by m.oid limit ${SAMPLE_LIMIT}`;

export async function readPrivileges(client: Pick<pg.Client, 'query'>): Promise<PrivilegeFacts> {
  // `select *`: rolbypassrls exists from 9.5 on only, and pg_dump still dumps 9.2.
  const me = (await client.query<{ role: string; rolsuper: boolean; rolbypassrls?: boolean; v: string; lo: string }>(
    "select quote_ident(current_user) as role, r.*, current_setting('server_version_num') as v, current_setting('lo_compat_privileges') as lo from pg_roles r where r.rolname = current_user",
  )).rows[0]!;
  const serverVersionNum = Number(me.v);
  const superuser = me.rolsuper;
  const bypassRls = me.rolbypassrls === true;

  const counts = (await client.query<{ n: string }>(`select count(*)::text as n from (${DUMPED_RELATIONS}) r`)).rows[0]!;
  const unreadable = (await client.query<{ name: string; schema: string; usage: boolean; total: string }>(
    `select quote_ident(r.nspname) || '.' || quote_ident(r.relname) as name, quote_ident(r.nspname) as schema,
            has_schema_privilege(r.nsp, 'USAGE') as usage, count(*) over () as total
       from (${DUMPED_RELATIONS}) r
      where not has_schema_privilege(r.nsp, 'USAGE') or not has_table_privilege(r.oid, 'SELECT')
      order by 1 limit ${SAMPLE_LIMIT}`,
  )).rows;

  let rls: { name: string; total: string }[] = [];
  // Row-level security exists from 9.5; superusers and BYPASSRLS roles are never subject to it.
  if (serverVersionNum >= 90500 && !superuser && !bypassRls) {
    rls = (await client.query<{ name: string; total: string }>(
      `select quote_ident(r.nspname) || '.' || quote_ident(r.relname) as name, count(*) over () as total
         from (${DUMPED_RELATIONS}) r
        where r.relkind in ('r', 'p') and r.relrowsecurity
          -- The owner (or a member of the owning role) is exempt unless FORCE ROW LEVEL SECURITY.
          and (r.relforcerowsecurity or not pg_has_role(r.relowner, 'USAGE'))
        order by 1 limit ${SAMPLE_LIMIT}`,
    )).rows;
  }

  const loCompatPrivileges = me.lo === 'on';
  const largeObjects = Number((await client.query<{ n: string }>('select count(*)::text as n from pg_largeobject_metadata')).rows[0]!.n);
  let los: { oid: string; total: string }[] = [];
  if (largeObjects > 0 && !superuser && !loCompatPrivileges) los = (await client.query<{ oid: string; total: string }>(UNREADABLE_LARGE_OBJECTS)).rows;

  return {
    role: me.role,
    superuser,
    bypassRls,
    serverVersionNum,
    loCompatPrivileges,
    relations: Number(counts.n),
    unreadable: unreadable.map((r) => ({ name: r.name, schema: r.schema, schemaUsage: r.usage })),
    unreadableCount: Number(unreadable[0]?.total ?? 0),
    rlsBlocked: rls.map((r) => r.name),
    rlsBlockedCount: Number(rls[0]?.total ?? 0),
    largeObjects,
    unreadableLargeObjects: los.map((r) => r.oid),
    unreadableLargeObjectCount: Number(los[0]?.total ?? 0),
  };
}

/** How many names an explanation shows before "and N more". */
const SHOWN = 5;

function sample(names: readonly string[], total: number): string {
  const shown = names.slice(0, SHOWN).join(', ');
  return total > SHOWN ? `${shown} and ${total - SHOWN} more` : shown;
}

/** Pure: the facts → three checks (tables and sequences, row-level security, large objects). */
export function privilegeChecks(database: string, f: PrivilegeFacts): Check[] {
  const db = `database ${JSON.stringify(database)}`;
  const checks: Check[] = [];

  const tablesName = `${db}: every table readable`;
  if (f.unreadableCount === 0) {
    checks.push(pass(tablesName, `role ${f.role} can read all ${f.relations} table(s) and sequence(s)${f.superuser ? ' (superuser)' : ''}`));
  } else {
    const schemas = [...new Set(f.unreadable.filter((u) => !u.schemaUsage).map((u) => u.schema))];
    const noUsage = schemas.length > 0 ? `; no USAGE on schema(s) ${schemas.join(', ')}` : '';
    // pg_read_all_data (PostgreSQL 14+) is SELECT on every table and sequence and USAGE on every schema.
    const fix =
      f.serverVersionNum >= 140000
        ? `As an administrator: GRANT pg_read_all_data TO ${f.role}; (or GRANT USAGE on the schema and SELECT on each table and sequence).`
        : `As an administrator, for each schema: ${[...new Set(f.unreadable.map((u) => u.schema))]
            .slice(0, SHOWN)
            .map((s) => `GRANT USAGE ON SCHEMA ${s} TO ${f.role}; GRANT SELECT ON ALL TABLES IN SCHEMA ${s} TO ${f.role}; GRANT SELECT ON ALL SEQUENCES IN SCHEMA ${s} TO ${f.role};`)
            .join(' ')}`;
    checks.push(fail(tablesName, `role ${f.role} cannot read ${f.unreadableCount} of ${f.relations} table(s) and sequence(s): ${sample(f.unreadable.map((u) => u.name), f.unreadableCount)}${noUsage}; pg_dump would stop with "permission denied"`, fix));
  }

  const rlsName = `${db}: row-level security`;
  if (f.superuser || f.bypassRls) {
    checks.push(pass(rlsName, `role ${f.role} is not subject to row-level security (${f.superuser ? 'superuser' : 'BYPASSRLS'})`));
  } else if (f.serverVersionNum < 90500) {
    checks.push(pass(rlsName, 'the server predates row-level security'));
  } else if (f.rlsBlockedCount === 0) {
    checks.push(pass(rlsName, 'no table has row-level security that applies to the role'));
  } else {
    checks.push(fail(
      rlsName,
      `${f.rlsBlockedCount} table(s) have row-level security that applies to role ${f.role}: ${sample(f.rlsBlocked, f.rlsBlockedCount)}; pg_dump would stop with "query would be affected by row-level security policy"`,
      `As a superuser (or a role with BYPASSRLS and CREATEROLE): ALTER ROLE ${f.role} BYPASSRLS; pg_read_all_data does not bypass row-level security (README.md, "The database role").`,
    ));
  }

  const loName = `${db}: large objects readable`;
  if (f.largeObjects === 0) {
    checks.push(pass(loName, 'no large objects'));
  } else if (f.unreadableLargeObjectCount === 0) {
    checks.push(pass(loName, `role ${f.role} can read all ${f.largeObjects} large object(s)${f.superuser ? ' (superuser)' : f.loCompatPrivileges ? ' (lo_compat_privileges is on)' : ''}`));
  } else {
    const grants = f.unreadableLargeObjects.slice(0, 3).map((oid) => `GRANT SELECT ON LARGE OBJECT ${oid} TO ${f.role};`).join(' ');
    checks.push(fail(
      loName,
      `role ${f.role} cannot read ${f.unreadableLargeObjectCount} of ${f.largeObjects} large object(s) (OIDs ${sample(f.unreadableLargeObjects, f.unreadableLargeObjectCount)}); pg_dump would stop with "permission denied for large object"`,
      `As their owner or a superuser: ${grants}${f.unreadableLargeObjectCount > 3 ? ` … or all at once: DO $$DECLARE o oid; BEGIN FOR o IN SELECT oid FROM pg_largeobject_metadata LOOP EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO ${f.role.replace(/'/g, "''").replace(/%/g, '%%')}', o); END LOOP; END$$;` : ''}${f.serverVersionNum >= 180000 ? ` For those created later: ALTER DEFAULT PRIVILEGES FOR ROLE <their owner> GRANT SELECT ON LARGE OBJECTS TO ${f.role};` : ''} Or set lo_compat_privileges = on (RDS: the DB parameter group). pg_read_all_data does not cover large objects; README.md, "The database role", has the script.`,
    ));
  }
  return checks;
}
