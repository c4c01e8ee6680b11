/**
 * The archive's table of contents, read from `pg_restore --list --verbose` (pure functions):
 * which entries it holds, what each depends on (the `;	depends on:` lines), and the selection
 * `restore --table` restores: the named tables with what they need and what belongs to them.
 */
import { UsageError } from '../errors.ts';
import { quoteIdent } from './database-definition.ts';

export interface TocEntry {
  readonly id: number;
  /** pg_dump's object type: TABLE, TABLE DATA, SEQUENCE SET, FK CONSTRAINT, … */
  readonly desc: string;
  /** The catalog object's OID (0 when it has none); a TABLE DATA entry carries its table's. */
  readonly oid: number;
  /** `-` when the object has none. */
  readonly schema: string;
  /** The object's name (pg_dump's tag): `Line Items`; `accounts accounts_pkey` for a constraint (table, then constraint). */
  readonly tag: string;
  /** The object's owner (empty for ENCODING, STDSTRINGS, SEARCHPATH). */
  readonly owner: string;
  /** The rest of the line: the object's name (tag), then its owner. */
  readonly tagAndOwner: string;
  /** Schema, tag and owner as `--list` prints them: the same text for a table and its data, in any archive of one backup. */
  readonly subject: string;
  readonly deps: readonly number[];
  /** The `--list` line itself, for a `--use-list` file. */
  readonly line: string;
}

/**
 * Object types pg_dump writes, longest first so that `TABLE DATA` is not read as `TABLE`. A line
 * is `<id>; <catalog oid> <oid> <type> <schema> <tag> <owner>`: pg_restore prints the fields
 * separated by single spaces, unquoted (a line break in a name becomes a space), so type, schema,
 * tag and owner may all hold spaces. The type is one of these (or one word); the rest is resolved
 * by parseToc.
 */
const DESCS = [
  'MATERIALIZED VIEW DATA', 'DATABASE PROPERTIES', 'SEQUENCE OWNED BY', 'TEXT SEARCH CONFIGURATION', 'TEXT SEARCH DICTIONARY', 'TEXT SEARCH PARSER',
  'TEXT SEARCH TEMPLATE', 'FOREIGN DATA WRAPPER', 'PUBLICATION TABLES IN SCHEMA', 'PUBLICATION TABLE', 'MATERIALIZED VIEW', 'CONSTRAINT TRIGGER',
  'DEFAULT ACL', 'FK CONSTRAINT', 'CHECK CONSTRAINT', 'FOREIGN TABLE', 'FOREIGN SERVER', 'SEQUENCE SET', 'SECURITY LABEL', 'BLOB METADATA', 'TABLE ATTACH',
  'INDEX ATTACH', 'EVENT TRIGGER', 'USER MAPPING', 'ACCESS METHOD', 'OPERATOR CLASS', 'OPERATOR FAMILY', 'LARGE OBJECT', 'LARGE OBJECTS', 'TABLE DATA',
  'SHELL TYPE', 'STATISTICS DATA', 'PROCEDURAL LANGUAGE', 'ROW SECURITY', 'SUBSCRIPTION TABLE', 'BLOB COMMENTS', 'ACL LANGUAGE',
].sort((a, b) => b.length - a.length);

const LINE = /^(\d+); (\d+) (\d+) (.*)$/;

/**
 * pg_class's catalog OID, and the types of the entries that carry it: a TABLE in a schema named
 * `DATA` or `ATTACH` reads as `TABLE DATA …`, but only a relation's own entry names pg_class (the
 * TABLE DATA, TABLE ATTACH, SEQUENCE SET, INDEX ATTACH … entries carry 0). Longest first.
 */
const PG_CLASS = 1259;
const CLASS_DESCS = ['MATERIALIZED VIEW', 'FOREIGN TABLE', 'SEQUENCE', 'TABLE', 'INDEX', 'VIEW'];

/** Table-like entries `--table` may name (as `pg_restore --table` matches them). */
const RELATIONS = new Set(['TABLE', 'VIEW', 'MATERIALIZED VIEW', 'FOREIGN TABLE', 'SEQUENCE']);
/** Data entries, restored with the relation they fill. */
const DATA = new Set(['TABLE DATA', 'MATERIALIZED VIEW DATA', 'SEQUENCE SET']);

/** The relation each data type fills: its schema and name are the relation's (same OID, or its dependency). */
const DATA_OF: Readonly<Record<string, string>> = { 'TABLE DATA': 'TABLE', 'MATERIALIZED VIEW DATA': 'MATERIALIZED VIEW', 'SEQUENCE SET': 'SEQUENCE' };

/**
 * The entries of a `pg_restore --list --verbose` listing.
 *
 * `<schema> <tag> <owner>` is ambiguous as text once a name holds a space (`Sales Data Line Items
 * alice` may be schema `Sales`, table `Data Line Items`). What the archive says elsewhere decides.
 * The owner is the database's owner when the line ends with it (the DATABASE entry names it after
 * the database the header names), else a role whose name holds a space that owns one of `tables`
 * (the manifest's exact names, when it has them), else the last word. Without `tables`, another
 * role whose name holds a space is not told apart: verify (dataWithoutRelation) and --table
 * (selectTables) then match the text from its start. A schema's own SCHEMA entry (`- <name> <owner>`) names it; an object in that
 * schema depends on that entry (pg_dump records it), a data entry carries its relation's OID, and
 * what belongs to a table depends on it (resolve's steps, in order). Else the schema is the first
 * word: `public`, whose entry pg_dump leaves out, or any schema of an archive with no SCHEMA
 * entries (a sharded backup's data archive, whose entries sharded-table.ts matches by OID and
 * text, never by parsed name).
 */
export function parseToc(list: string, tables?: readonly { readonly schema: string; readonly table: string }[]): TocEntry[] {
  const raw: { id: number; desc: string; oid: number; subject: string; deps: number[]; line: string }[] = [];
  let database: string | undefined;
  for (const line of list.split('\n')) {
    database ??= /^;\s+dbname: (.*)$/.exec(line)?.[1];
    const dep = /^;\s*depends on:(.*)$/.exec(line);
    if (dep && raw.length > 0) {
      raw[raw.length - 1]!.deps.push(...dep[1]!.trim().split(/\s+/).filter(Boolean).map(Number));
      continue;
    }
    const m = LINE.exec(line);
    if (!m) continue;
    const rest = m[4]!;
    const fits = (d: string) => rest.startsWith(`${d} `);
    const relation = Number(m[2]) === PG_CLASS ? CLASS_DESCS.find(fits) : undefined;
    const desc = relation ?? DESCS.find(fits) ?? rest.split(' ')[0]!;
    raw.push({ id: Number(m[1]), desc, oid: Number(m[3]), subject: rest.slice(desc.length + 1), deps: [], line });
  }
  const databaseEntry = database === undefined ? undefined : raw.find((r) => r.desc === 'DATABASE' && r.subject.startsWith(`- ${database} `));
  const databaseOwner = databaseEntry?.subject.slice(`- ${database} `.length);
  const owners = ownersOfTables(raw, tables);
  const split = (subject: string) => {
    // The longest known owner the text ends with: role `my app` is not role `app` with `my` in the table's name.
    const known = [...(databaseOwner ? [databaseOwner] : []), ...owners].filter((o) => subject.endsWith(` ${o}`)).sort((a, b) => b.length - a.length)[0];
    if (known !== undefined) return { head: subject.slice(0, -known.length - 1), owner: known };
    const i = subject.lastIndexOf(' ');
    return i < 0 ? { head: subject, owner: '' } : { head: subject.slice(0, i), owner: subject.slice(i + 1) };
  };
  // Schemas by their SCHEMA entry's id: `- <name> <owner>`.
  const schemaById = new Map<number, string>();
  for (const r of raw) {
    if (r.desc === 'SCHEMA' && r.subject.startsWith('- ')) schemaById.set(r.id, split(r.subject).head.slice(2));
  }
  const known = [...new Set(schemaById.values())].sort((a, b) => b.length - a.length);
  const byId = new Map(raw.map((r) => [r.id, r]));
  const relationByOid = new Map(raw.filter((r) => RELATIONS.has(r.desc) && r.oid !== 0).map((r) => [`${r.desc}\u0000${r.oid}`, r]));
  const resolved = new Map<number, { schema: string; tag: string; owner: string }>();
  const resolve = (r: (typeof raw)[number]): { schema: string; tag: string; owner: string } => {
    const done = resolved.get(r.id);
    if (done) return done;
    const { head, owner } = split(r.subject);
    const fits = (s: string) => head.startsWith(`${s} `);
    const relationsOf = (ids: readonly number[]) => ids.map((d) => byId.get(d)).filter((d): d is (typeof raw)[number] => d !== undefined && RELATIONS.has(d.desc) && d !== r);
    const pick = (): string | undefined => {
      if (head.startsWith('- ') || head === '-') return '-';
      // 1. The schema whose entry it depends on (every relation in a schema the archive defines does).
      const own = r.deps.map((d) => schemaById.get(d)).find((s) => s !== undefined && fits(s));
      if (own !== undefined) return own;
      // 2. Data: the relation it fills (same OID; a sequence's value: its dependency).
      const filled = DATA_OF[r.desc];
      if (filled !== undefined) {
        const relation = relationByOid.get(`${filled}\u0000${r.oid}`) ?? relationsOf(r.deps).find((d) => d.desc === filled);
        const s = relation && resolve(relation).schema;
        if (s !== undefined && fits(s)) return s;
      }
      // A relation with neither is in a schema the archive leaves out (`public`), whatever other schema its text starts with.
      if (RELATIONS.has(r.desc) || filled !== undefined) return undefined;
      // 3. What belongs to a relation (constraint, index, trigger, default, comment, grant) is in
      //    its schema: the relation whose schema and name its text starts with (a foreign key
      //    depends on both tables), else the one schema of the relations it depends on.
      const relations = relationsOf(r.deps).map(resolve).filter((d) => fits(d.schema));
      //    A partition's TABLE ATTACH is named after the partition alone (its text is exactly
      //    `<schema> <partition>`), and its parent may be in another schema.
      const owning = relations.find((d) => head === `${d.schema} ${d.tag}` || head.startsWith(`${d.schema} ${d.tag} `));
      if (owning) return owning.schema;
      const schemas = new Set(relations.map((d) => d.schema));
      if (schemas.size === 1) return [...schemas][0];
      // 4. The longest schema the archive defines that its text starts with.
      return known.find(fits);
    };
    const picked = pick();
    const schema = picked ?? (head.includes(' ') ? head.slice(0, head.indexOf(' ')) : head);
    const result = { schema, tag: head === schema ? '' : head.slice(schema.length + 1), owner };
    resolved.set(r.id, result);
    return result;
  };
  return raw.map((r) => {
    const { schema, tag, owner } = resolve(r);
    return { id: r.id, desc: r.desc, oid: r.oid, schema, tag, owner, tagAndOwner: r.subject.slice(schema.length + 1), subject: r.subject, deps: r.deps, line: r.line };
  });
}

/**
 * Owners whose names hold a space, read off the TABLE and TABLE DATA lines of the tables named
 * exactly in `tables` (the manifest's, from the catalog: every ordinary and partitioned table, so
 * the longest name a line starts with is its table's): what follows `<schema> <table> ` is the
 * owner. Longest first, so that the longest owner a line ends with is taken.
 */
function ownersOfTables(raw: readonly { desc: string; subject: string }[], tables: readonly { readonly schema: string; readonly table: string }[] | undefined): string[] {
  if (!tables?.length) return [];
  const prefixes = new Set(tables.map((t) => `${t.schema} ${t.table} `));
  const owners = new Set<string>();
  for (const r of raw) {
    if (r.desc !== 'TABLE' && r.desc !== 'TABLE DATA') continue;
    let longest: string | undefined;
    for (let i = r.subject.indexOf(' '); i >= 0; i = r.subject.indexOf(' ', i + 1)) if (prefixes.has(r.subject.slice(0, i + 1))) longest = r.subject.slice(0, i + 1);
    const owner = longest === undefined ? '' : r.subject.slice(longest.length);
    if (owner.includes(' ')) owners.add(owner);
  }
  return [...owners].sort((a, b) => b.length - a.length);
}

/** `schema.table`, as results and messages name a relation. */
function qualified(e: TocEntry): string {
  return `${e.schema}.${e.tag}`;
}

/** The relation as SQL names it (and as `--table` takes it when a name holds a dot or a quote). */
function quoted(e: TocEntry): string {
  return `${quoteIdent(e.schema)}.${quoteIdent(e.tag)}`;
}

/**
 * The (schema, name) pairs `--table` may mean. As written, names are taken literally (as
 * `pg_restore --table` takes them: no case folding, quotes are part of the name), and a dot may
 * be part of a name: each way of cutting at a dot is a reading. Written as in SQL, with double
 * quotes (`"Sales Data"."Line Items"`, `""` for a quote inside), it is read as one or two
 * identifiers too. The archive decides which reading names a relation (selectTables refuses two).
 */
function readings(name: string): { schema: string | undefined; table: string }[] {
  const cuts = [...name.matchAll(/\./g)].map((m) => m.index).filter((i) => i > 0 && i < name.length - 1);
  const literal = [{ schema: undefined, table: name }, ...cuts.map((i) => ({ schema: name.slice(0, i), table: name.slice(i + 1) }))];
  const sql = name.includes('"') ? sqlIdentifiers(name) : undefined;
  if (sql?.length === 1) return [{ schema: undefined, table: sql[0]! }, ...literal];
  if (sql?.length === 2) return [{ schema: sql[0]!, table: sql[1]! }, ...literal];
  return literal;
}

/** `a."b.c"` → [a, b.c]: dot-separated identifiers, each in double quotes or not; undefined when it is not that. */
function sqlIdentifiers(name: string): string[] | undefined {
  const parts: string[] = [];
  let i = 0;
  for (;;) {
    let part = '';
    if (name[i] === '"') {
      for (i++; ; i++) {
        if (i >= name.length) return undefined;
        if (name[i] === '"') {
          if (name[i + 1] !== '"') break;
          i++;
        }
        part += name[i];
      }
      i++;
    } else {
      const end = name.indexOf('.', i);
      part = name.slice(i, end < 0 ? name.length : end);
      if (part.includes('"')) return undefined;
      i += part.length;
    }
    if (part === '') return undefined;
    parts.push(part);
    if (i >= name.length) return parts;
    if (name[i] !== '.') return undefined;
    i++;
  }
}

/** `schema.table` of every table whose data the archive holds. */
export function tablesWithData(entries: readonly TocEntry[]): string[] {
  return entries.filter((e) => e.desc === 'TABLE DATA').map(qualified);
}

/** Entries that define a relation verify's catalog query counts (relkind r, p, m, f). */
const DEFINED = new Set(['TABLE', 'MATERIALIZED VIEW', 'FOREIGN TABLE']);

/**
 * `schema.table` (as parsed) of each table whose data the archive holds but that none of
 * `relations` (what a restore gave back, named by the catalog) fills. A relation may fill an entry
 * whose text starts with its schema and name: the owner follows, whatever it is (a role whose name
 * holds a space is not told from the table's name by the text alone). But each relation the
 * archive defines is one relation of its own: `public orders x postgres` starts with `public
 * orders `, and still is not table `orders` when `public orders postgres` is. So the archive's
 * relations (their entries; a data entry of none, as an extension's table, stands for its own) are
 * paired with the restored ones, each restored relation used once (a bipartite matching, by
 * augmenting paths: each path is as long as names prefix one another). A table is reported when
 * no pairing gives its relation one: then a relation is missing, whichever way the text reads.
 * When every table came back, the true pairing exists, so nothing is reported.
 */
export function dataWithoutRelation(entries: readonly TocEntry[], relations: readonly { schema: string; name: string }[]): string[] {
  // Restored relations by the text they start a line with: two may read the same (`Sales Data` `Line Items`, `Sales` `Data Line Items`).
  const restored = new Map<string, string[]>();
  for (const r of relations) {
    const text = `${r.schema} ${r.name} `;
    restored.set(text, [...(restored.get(text) ?? []), `${r.schema}\u0000${r.name}`]);
  }
  const defining = new Map(entries.filter((e) => DEFINED.has(e.desc) && e.oid !== 0).map((e) => [e.oid, e]));
  const data = entries.filter((e) => e.desc === 'TABLE DATA');
  const nodeOf = (e: TocEntry) => defining.get(e.oid) ?? e;
  const nodes = [...new Set([...defining.values(), ...data.map(nodeOf)])];
  // The restored relations each node's text starts with; the one it was parsed as first.
  const candidates = new Map(
    nodes.map((n) => {
      const found: string[] = [];
      for (let i = n.subject.indexOf(' '); i >= 0; i = n.subject.indexOf(' ', i + 1)) found.push(...(restored.get(n.subject.slice(0, i + 1)) ?? []));
      const parsed = `${n.schema}\u0000${n.tag}`;
      return [n, found.includes(parsed) ? [parsed, ...found.filter((f) => f !== parsed)] : found] as const;
    }),
  );
  const holder = new Map<string, TocEntry>();
  // The parsed reading first, for every node: a table missing is named as parsed (`orders x`), not as the table it could also be read as.
  for (const n of nodes) {
    const first = candidates.get(n)![0];
    if (first === `${n.schema}\u0000${n.tag}` && !holder.has(first)) holder.set(first, n);
  }
  const claim = (n: TocEntry, seen: Set<string>): boolean => {
    for (const c of candidates.get(n)!) {
      if (seen.has(c)) continue;
      seen.add(c);
      const held = holder.get(c);
      if (held === undefined || claim(held, seen)) {
        holder.set(c, n);
        return true;
      }
    }
    return false;
  };
  // An augmenting path moves held relations along, and every node that held one still holds one.
  const paired = new Set(holder.values());
  for (const n of nodes) if (!paired.has(n) && claim(n, new Set())) paired.add(n);
  return data.filter((e) => !paired.has(nodeOf(e))).map(qualified);
}

export interface TableSelection {
  /** TOC ids to restore (as a `--use-list` file: `useList`). */
  readonly ids: ReadonlySet<number>;
  /** `schema.table` of each named relation, then of each table restored with them (partitions, and the tables a view reads). */
  readonly tables: readonly string[];
  /** Entries that belong to a selected table but need something not selected (a foreign key to another table). */
  readonly leftOut: readonly string[];
}

/**
 * The entries that restore the named relations (`table` or `schema.table`): their definition and
 * data; everything they depend on, transitively (schema, types, domains, enums, sequences of their
 * defaults, functions); and what belongs to them and needs nothing else: identity and owned
 * sequences with their values, defaults, indexes, constraints, triggers, comments, grants. A
 * foreign key to a table that is not selected is left out, and named. Throws UsageError for a
 * name the archive does not hold, or one that matches tables in several schemas.
 */
export function selectTables(entries: readonly TocEntry[], names: readonly string[]): TableSelection {
  const byId = new Map(entries.map((e) => [e.id, e]));
  const relations = entries.filter((e) => RELATIONS.has(e.desc));
  const named: TocEntry[] = [];
  for (const name of names) {
    const read = readings(name);
    const exact = relations.filter((e) => read.some((r) => e.tag === r.table && (r.schema === undefined || e.schema === r.schema)));
    // Else the name as the start of the text (`public t1 bob smith`): the owner is a role whose
    // name holds a space, read as part of the table's name; the name given says where it ends.
    const found =
      exact.length > 0
        ? exact
        : relations.flatMap((e) => {
            const r = read.find((r) => (r.schema === undefined || e.schema === r.schema) && e.subject.startsWith(`${e.schema} ${r.table} `));
            return r ? [{ ...e, tag: r.table, owner: e.subject.slice(`${e.schema} ${r.table} `.length), tagAndOwner: e.subject.slice(e.schema.length + 1) }] : [];
          });
    if (found.length === 0) {
      throw new UsageError(`no table "${name}" in the backup`, { hint: 'Name it as in the source database, optionally schema-qualified (--table schema.table, or --table \'"Sales Data"."Line Items"\' in double quotes as in SQL); `pg_restore --list` of the dump shows every table.' });
    }
    if (found.length > 1) {
      throw new UsageError(`--table ${name} matches ${found.map(qualified).join(', ')}`, {
        // A shell line: a single quote in a name closes the quoting, so it is written '\''.
        hint: `Name one with its schema, in double quotes when a name holds a dot: --table '${quoted(found[0]!).replace(/'/g, "'\\''")}'.`,
      });
    }
    named.push(found[0]!);
  }
  const ids = new Set<number>();
  const addWithDeps = (id: number) => {
    if (ids.has(id) || !byId.has(id)) return;
    ids.add(id);
    for (const d of byId.get(id)!.deps) addWithDeps(d);
  };
  for (const e of named) addWithDeps(e.id);
  // A partitioned table is its partitions: each one's `TABLE ATTACH` depends on the partition and
  // its parent (`<partition>` is its tag). Whatever brought the parent in (named, or read by a
  // view), its partitions come too, level after level; else its rows stay behind.
  for (let changed = true; changed; ) {
    changed = false;
    for (const attach of entries) {
      if (attach.desc !== 'TABLE ATTACH' || ids.has(attach.id)) continue;
      const tables = attach.deps.map((d) => byId.get(d)).filter((d): d is TocEntry => d?.desc === 'TABLE');
      // The partition's own entry reads the same as its attachment (name and owner), whatever the schemas' names.
      const child = tables.find((t) => t.subject === attach.subject) ?? tables.find((t) => t.schema === attach.schema && t.tag === attach.tag);
      const parent = tables.find((t) => t !== child);
      if (!child || !parent || !ids.has(parent.id) || ids.has(child.id)) continue;
      addWithDeps(child.id);
      changed = true;
    }
  }
  // The grants and comment of schema `public` come with a table in it, as a schema's own come with
  // the schema's entry (below): pg_dump writes no entry for `public` (their dependency names none),
  // and a role that owns a table may need public's grant to be given it (schemaGrantsFirst).
  if ([...ids].some((id) => byId.get(id)!.schema === 'public')) {
    for (const e of entries) if (isSchemaAnnotation(e, 'public') && !e.deps.some((d) => byId.has(d))) ids.add(e.id);
  }
  // What the named relations rely on is restored with its own attachments (a sequence's value,
  // a type's comment), but a schema is not: that would pull in every table of the schema.
  const anchors = new Set([...ids].filter((id) => byId.get(id)!.desc !== 'SCHEMA'));
  const leftOut: string[] = [];
  for (let changed = true; changed; ) {
    changed = false;
    for (const e of entries) {
      if (ids.has(e.id) || e.deps.length === 0) continue;
      // Another table or view is never pulled in by belonging.
      if (RELATIONS.has(e.desc) && e.desc !== 'SEQUENCE') continue;
      const known = e.deps.filter((d) => byId.has(d));
      const touchesAnchor = known.some((d) => anchors.has(d));
      const annotation = e.desc === 'ACL' || e.desc === 'COMMENT' || e.desc === 'SECURITY LABEL';
      if (!touchesAnchor && !annotation) continue;
      if (known.length === 0 || !known.every((d) => ids.has(d))) continue;
      ids.add(e.id);
      if (!DATA.has(e.desc)) anchors.add(e.id);
      changed = true;
    }
  }
  // A foreign key of a selected table to a table that is not: its tag is "<table> <constraint>"
  // (either may hold a space), and it depends on its table and on the table it references. Its
  // table is the one whose name its tag starts with; of two (`orders`, `orders x`), the longer
  // name: a foreign key of `orders x` is not one of `orders`.
  const namedById = new Map(named.map((n) => [n.id, n]));
  for (const e of entries) {
    if (ids.has(e.id) || e.desc !== 'FK CONSTRAINT') continue;
    const own = e.deps
      .map((d) => namedById.get(d) ?? byId.get(d))
      .filter((d): d is TocEntry => d?.desc === 'TABLE' && d.schema === e.schema && e.tag.startsWith(`${d.tag} `))
      .sort((a, b) => b.tag.length - a.tag.length)[0];
    if (own && namedById.has(own.id)) leftOut.push(`${e.desc} ${qualified(e)}`);
  }
  // The tables restored besides the named ones (partitions; the tables a view or materialized view reads), so the result says so.
  const namedIds = new Set(named.map((e) => e.id));
  const alsoRestored = entries.filter((e) => ids.has(e.id) && !namedIds.has(e.id) && (e.desc === 'TABLE' || e.desc === 'MATERIALIZED VIEW'));
  return { ids, tables: [...named, ...alsoRestored].map(qualified), leftOut };
}

/** A COMMENT, grants (ACL) or SECURITY LABEL of a schema (of `name` when given): `- SCHEMA <name> <owner>`, the name quoted as SQL needs. */
function isSchemaAnnotation(e: TocEntry, name?: string): boolean {
  if ((e.desc !== 'COMMENT' && e.desc !== 'ACL' && e.desc !== 'SECURITY LABEL') || !e.subject.startsWith('- SCHEMA ')) return false;
  return name === undefined || [`- SCHEMA ${name} `, `- SCHEMA ${quoteIdent(name)} `].some((n) => e.subject.startsWith(n));
}

/**
 * The schemas and their grants, to restore before anything else (undefined when no schema has
 * grants of its own): of the entries in `ids` (all when not given). A role that is no superuser
 * (RDS's master user) may give a table to another role only when that role may create in the
 * table's schema (`ALTER TABLE … OWNER TO`), and pg_restore grants last, after every owner is
 * set: a table of a role the source granted CREATE on its schema fails with "permission denied
 * for schema". Restored first, in a pg_restore of their own, the grants are in place.
 */
export function schemaGrantsFirst(entries: readonly TocEntry[], ids?: ReadonlySet<number>): ReadonlySet<number> | undefined {
  const chosen = entries.filter((e) => (ids === undefined || ids.has(e.id)) && (e.desc === 'SCHEMA' || (e.desc === 'ACL' && isSchemaAnnotation(e))));
  return chosen.some((e) => e.desc === 'ACL') ? new Set(chosen.map((e) => e.id)) : undefined;
}

/** A `pg_restore --use-list` file holding the selected entries, in archive order. */
export function useList(entries: readonly TocEntry[], ids: ReadonlySet<number>): string {
  return entries.filter((e) => ids.has(e.id)).map((e) => `${e.line}\n`).join('');
}

/**
 * Entries that define the database itself (restored by `--create`): the DATABASE entry and its
 * properties, and the comment, grants and security labels that depend on the DATABASE entry.
 * Their tag names the database as SQL does (`DATABASE "my-app"`, `DATABASE "My Shop"`): the
 * dependency finds them whatever quoting the name needs.
 */
export function databaseEntries(entries: readonly TocEntry[], database: string): TocEntry[] {
  const own = new Set(entries.filter((e) => e.desc === 'DATABASE').map((e) => e.id));
  const names = [`DATABASE ${database} `, `DATABASE "${database.replace(/"/g, '""')}" `];
  return entries.filter(
    (e) =>
      e.desc === 'DATABASE' ||
      e.desc === 'DATABASE PROPERTIES' ||
      ((e.desc === 'COMMENT' || e.desc === 'ACL' || e.desc === 'SECURITY LABEL') &&
        e.schema === '-' &&
        (e.deps.some((d) => own.has(d)) || names.some((n) => e.tagAndOwner.startsWith(n)))),
  );
}
