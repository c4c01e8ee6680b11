/**
 * The archive's table of contents, read from `pg_restore --list --verbose` (pure functions):
 * which entries it holds, what each depends on (the `;	depends on:` lines), and the selection
 * `restore --table` restores: the named tables with what they need and what belongs to them.
 */
import { UsageError } from '../errors.ts';

export interface TocEntry {
  readonly id: number;
  /** pg_dump's object type: TABLE, TABLE DATA, SEQUENCE SET, FK CONSTRAINT, … */
  readonly desc: string;
  /** `-` when the object has none. */
  readonly schema: string;
  /** The rest of the line: the object's name (tag), then its owner. */
  readonly tagAndOwner: string;
  readonly deps: readonly number[];
  /** The `--list` line itself, for a `--use-list` file. */
  readonly line: string;
}

/**
 * Object types pg_dump writes, longest first so that `TABLE DATA` is not read as `TABLE`. A line
 * is `<id>; <catalog oid> <oid> <type> <schema> <tag> <owner>`, and both type and tag may hold spaces.
 */
const DESCS = [
  'MATERIALIZED VIEW DATA', 'DATABASE PROPERTIES', 'SEQUENCE OWNED BY', 'TEXT SEARCH CONFIGURATION', 'TEXT SEARCH DICTIONARY', 'TEXT SEARCH PARSER',
  'TEXT SEARCH TEMPLATE', 'FOREIGN DATA WRAPPER', 'PUBLICATION TABLES IN SCHEMA', 'PUBLICATION TABLE', 'MATERIALIZED VIEW', 'CONSTRAINT TRIGGER',
  'DEFAULT ACL', 'FK CONSTRAINT', 'FOREIGN TABLE', 'SEQUENCE SET', 'SECURITY LABEL', 'BLOB METADATA', 'TABLE ATTACH', 'INDEX ATTACH', 'EVENT TRIGGER',
  'USER MAPPING', 'ACCESS METHOD', 'OPERATOR CLASS', 'OPERATOR FAMILY', 'LARGE OBJECT', 'TABLE DATA', 'SHELL TYPE', 'STATISTICS DATA',
].sort((a, b) => b.length - a.length);

const LINE = /^(\d+); (\d+) (\d+) (.*)$/;

export function parseToc(list: string): TocEntry[] {
  const entries: { id: number; desc: string; schema: string; tagAndOwner: string; deps: number[]; line: string }[] = [];
  for (const line of list.split('\n')) {
    const dep = /^;\s*depends on:(.*)$/.exec(line);
    if (dep && entries.length > 0) {
      entries[entries.length - 1]!.deps.push(...dep[1]!.trim().split(/\s+/).filter(Boolean).map(Number));
      continue;
    }
    const m = LINE.exec(line);
    if (!m) continue;
    const rest = m[4]!;
    const desc = DESCS.find((d) => rest.startsWith(`${d} `)) ?? rest.split(' ')[0]!;
    const afterDesc = rest.slice(desc.length + 1);
    const space = afterDesc.indexOf(' ');
    entries.push({
      id: Number(m[1]),
      desc,
      schema: space < 0 ? afterDesc : afterDesc.slice(0, space),
      tagAndOwner: space < 0 ? '' : afterDesc.slice(space + 1),
      deps: [],
      line,
    });
  }
  return entries;
}

/** The object's name: the tag without the trailing owner (tags of tables, sequences and views hold no space unless quoted in the name). */
function objectName(e: TocEntry): string {
  const i = e.tagAndOwner.lastIndexOf(' ');
  return i < 0 ? e.tagAndOwner : e.tagAndOwner.slice(0, i);
}

/** Table-like entries `--table` may name (as `pg_restore --table` matches them). */
const RELATIONS = new Set(['TABLE', 'VIEW', 'MATERIALIZED VIEW', 'FOREIGN TABLE', 'SEQUENCE']);
/** Data entries, restored with the relation they fill. */
const DATA = new Set(['TABLE DATA', 'MATERIALIZED VIEW DATA', 'SEQUENCE SET']);

/** `schema.table` of every table whose data the archive holds. */
export function tablesWithData(entries: readonly TocEntry[]): string[] {
  return entries.filter((e) => e.desc === 'TABLE DATA').map((e) => `${e.schema}.${objectName(e)}`);
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
    const dot = name.indexOf('.');
    const [schema, table] = dot > 0 ? [name.slice(0, dot), name.slice(dot + 1)] : [undefined, name];
    const found = relations.filter((e) => objectName(e) === table && (schema === undefined || e.schema === schema));
    if (found.length === 0) {
      throw new UsageError(`no table "${name}" in the backup`, { hint: 'Name it as in the source database, optionally schema-qualified (--table schema.table); `pg_restore --list` of the dump shows every table.' });
    }
    if (found.length > 1) {
      throw new UsageError(`--table ${name} matches ${found.map((e) => `${e.schema}.${objectName(e)}`).join(', ')}`, { hint: 'Qualify it with its schema: --table schema.table.' });
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
      const child = tables.find((t) => t.schema === attach.schema && objectName(t) === objectName(attach));
      const parent = tables.find((t) => t !== child);
      if (!child || !parent || !ids.has(parent.id) || ids.has(child.id)) continue;
      addWithDeps(child.id);
      changed = true;
    }
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
  // A foreign key of a selected table to a table that is not: its tag is "<table> <constraint>".
  const namedTables = new Set(named.map((n) => `${n.schema}.${objectName(n)}`));
  for (const e of entries) {
    if (ids.has(e.id) || e.desc !== 'FK CONSTRAINT') continue;
    if (namedTables.has(`${e.schema}.${e.tagAndOwner.split(' ')[0]}`)) leftOut.push(`${e.desc} ${e.schema}.${objectName(e)}`);
  }
  // The tables restored besides the named ones (partitions; the tables a view or materialized view reads), so the result says so.
  const namedIds = new Set(named.map((e) => e.id));
  const alsoRestored = entries.filter((e) => ids.has(e.id) && !namedIds.has(e.id) && (e.desc === 'TABLE' || e.desc === 'MATERIALIZED VIEW'));
  return { ids, tables: [...named, ...alsoRestored].map((e) => `${e.schema}.${objectName(e)}`), leftOut };
}

/** A `pg_restore --use-list` file holding the selected entries, in archive order. */
export function useList(entries: readonly TocEntry[], ids: ReadonlySet<number>): string {
  return entries.filter((e) => ids.has(e.id)).map((e) => `${e.line}\n`).join('');
}

/** Entries that define the database itself (restored by `--create`). */
export function isDatabaseEntry(e: TocEntry, database: string): boolean {
  if (e.desc === 'DATABASE' || e.desc === 'DATABASE PROPERTIES') return true;
  return (e.desc === 'COMMENT' || e.desc === 'ACL' || e.desc === 'SECURITY LABEL') && e.schema === '-' && e.tagAndOwner.startsWith(`DATABASE ${database} `);
}
