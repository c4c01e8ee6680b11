/**
 * The database's own definition, as the archive holds it (pure functions). `pg_restore --create`
 * creates the database from it (template0, the source's encoding, locale and locale provider),
 * then applies its owner, comment, grants, `ALTER DATABASE … SET`, connection limit and
 * `ALTER ROLE … IN DATABASE … SET`. It can only do so under the source's name; a restore here
 * goes to the name the operator chose, so the statements pg_restore renders for those entries
 * (`pg_restore --create --use-list <database entries> -f -`) are split, sorted by kind and
 * renamed to the target database.
 */

/** A quoted SQL identifier. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export type DefinitionKind = 'create' | 'owner' | 'comment' | 'acl' | 'property' | 'role-setting' | 'security-label';

export interface DefinitionStatement {
  readonly kind: DefinitionKind;
  /** The statement, naming the target database. */
  readonly sql: string;
}

/** Splits SQL text into statements at `;` outside quotes, identifiers and comments. */
export function splitStatements(sql: string): string[] {
  const out: string[] = [];
  let start = 0;
  let i = 0;
  while (i < sql.length) {
    const c = sql[i]!;
    if (c === "'" || c === '"') {
      const end = sql.indexOf(c, i + 1);
      // A doubled quote inside is two adjacent quoted runs: the loop continues after each.
      i = end < 0 ? sql.length : end + 1;
      continue;
    }
    if (c === '-' && sql[i + 1] === '-') {
      const nl = sql.indexOf('\n', i);
      i = nl < 0 ? sql.length : nl + 1;
      continue;
    }
    if (c === ';') {
      out.push(sql.slice(start, i + 1));
      start = i + 1;
    }
    i++;
  }
  if (sql.slice(start).trim()) out.push(sql.slice(start));
  return out;
}

/** Drops `--` comment lines and psql meta-commands (`\connect`, `\restrict`) from a pg_restore script. */
function stripScriptNoise(sql: string): string {
  return sql
    .split('\n')
    .filter((l) => !l.startsWith('--') && !l.startsWith('\\'))
    .join('\n');
}

/** How pg_dump writes a name: bare when lower-case letters, digits and underscores, else double-quoted. */
function identForms(name: string): string[] {
  return [`"${name.replace(/"/g, '""')}"`, ...(/^[a-z_][a-z0-9_$]*$/.test(name) ? [name] : [])];
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * The database-level statements of a pg_restore script for `source`, renamed to `target` and
 * sorted by kind. Session settings the script opens with (SET, set_config) are left out.
 */
export function parseDefinition(script: string, source: string, target: string): DefinitionStatement[] {
  const name = new RegExp(`(?<=(?:^|\\s)DATABASE )(?:${identForms(source).map(escapeRegExp).join('|')})(?=[\\s;]|$)`);
  const out: DefinitionStatement[] = [];
  for (const raw of splitStatements(stripScriptNoise(script))) {
    const stmt = raw.trim();
    if (!stmt || /^SET\s/i.test(stmt) || /^SELECT pg_catalog\.set_config\(/i.test(stmt)) continue;
    const sql = stmt.replace(name, quoteIdent(target));
    out.push({ kind: kindOf(sql), sql });
  }
  return out;
}

function kindOf(sql: string): DefinitionKind {
  if (/^CREATE DATABASE /i.test(sql)) return 'create';
  if (/^ALTER DATABASE \S+ OWNER TO /i.test(sql) || /^ALTER DATABASE "(?:[^"]|"")*" OWNER TO /i.test(sql)) return 'owner';
  if (/^COMMENT ON DATABASE /i.test(sql)) return 'comment';
  if (/^(GRANT|REVOKE) /i.test(sql)) return 'acl';
  if (/^ALTER ROLE .* IN DATABASE /is.test(sql)) return 'role-setting';
  if (/^SECURITY LABEL /i.test(sql)) return 'security-label';
  return 'property';
}

/** The locale part of a CREATE DATABASE statement (ENCODING … onwards), for messages. */
export function describeCreate(sql: string): string {
  const i = sql.search(/\bENCODING\b/i);
  return i < 0 ? sql : sql.slice(i).replace(/;$/, '');
}
