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
  /** The statement, naming the target database (for messages, and what is run unless `run` is set). */
  readonly sql: string;
  /**
   * What to run instead of `sql`, in the new database, when the statement holds bytes that text
   * would change: non-ASCII bytes of a script in another encoding than UTF-8 (a LATIN1 or
   * SQL_ASCII database's comment). The bytes travel hex-encoded and are converted on the server
   * from the script's encoding into the database's, as `pg_restore --create` would have them.
   */
  readonly run?: string;
}

/** A script's text, one character per byte (latin1): the SQL syntax is ASCII, whatever the encoding of the literals. */
type Bytes = string;

/** One statement of a script, comments and psql meta-commands left out. */
interface LexedStatement {
  readonly text: Bytes;
  /** Where the name following the first `DATABASE` keyword is, when that name is `source`'s. */
  readonly name?: { readonly start: number; readonly end: number };
}

const IDENT_CHAR = /[A-Za-z0-9_$\x80-\xff]/;
const DOLLAR_TAG = /^\$(?:[A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*)?\$/;

/**
 * Splits a psql script (as pg_restore writes one) into statements with a lexer of SQL's quoting:
 * '…' (with '' inside), E'…' (backslash escapes), "…" identifiers, $tag$…$tag$, `--` and nested
 * block comments, and psql meta-commands (a backslash outside quotes, to the end of its line).
 * Comments and meta-commands are left out; text inside quotes is never touched, whatever lines
 * it spans or starts (a comment line `-- second` inside a database comment is text).
 * `names`: forms of a database name to find after the statement's first `DATABASE` keyword.
 */
function lexScript(script: Bytes, names: readonly Bytes[] = []): LexedStatement[] {
  const out: LexedStatement[] = [];
  let text = '';
  let name: { start: number; end: number } | undefined;
  let afterDatabase = false;
  let i = 0;
  const n = script.length;
  const flush = () => {
    // ASCII white space only: 0xA0 is a byte of some character here, not a space.
    const trimmed = text.replace(/^[ \t\r\n\f\v]+|[ \t\r\n\f\v]+$/g, '');
    if (trimmed) out.push({ text: trimmed, ...(name ? { name: shift(name, text) } : {}) });
    text = '';
    name = undefined;
    afterDatabase = false;
  };
  // `name` positions are into the untrimmed text: move them with the trim.
  const shift = (at: { start: number; end: number }, t: string) => {
    const lead = t.length - t.replace(/^[ \t\r\n\f\v]+/, '').length;
    return { start: at.start - lead, end: at.end - lead };
  };
  const endOfQuote = (from: number, quote: string, backslashes: boolean): number => {
    let j = from;
    while (j < n) {
      const c = script[j]!;
      if (backslashes && c === '\\') j += 2;
      else if (c === quote) {
        if (script[j + 1] === quote) j += 2;
        else return j + 1;
      } else j++;
    }
    return n;
  };
  while (i < n) {
    const c = script[i]!;
    const prev = i > 0 ? script[i - 1]! : '';
    let j: number;
    if (c === "'") {
      const escaped = (prev === 'E' || prev === 'e') && !(i > 1 && IDENT_CHAR.test(script[i - 2]!));
      j = endOfQuote(i + 1, "'", escaped);
    } else if (c === '"') {
      j = endOfQuote(i + 1, '"', false);
    } else if (c === '$' && !IDENT_CHAR.test(prev) && DOLLAR_TAG.test(script.slice(i, i + 64))) {
      const tag = DOLLAR_TAG.exec(script.slice(i, i + 64))![0];
      const close = script.indexOf(tag, i + tag.length);
      j = close < 0 ? n : close + tag.length;
    } else if (c === '-' && script[i + 1] === '-') {
      const nl = script.indexOf('\n', i);
      i = nl < 0 ? n : nl;
      continue;
    } else if (c === '/' && script[i + 1] === '*') {
      // Block comments nest in SQL.
      let depth = 0;
      j = i;
      while (j < n) {
        if (script.startsWith('/*', j)) {
          depth++;
          j += 2;
        } else if (script.startsWith('*/', j)) {
          j += 2;
          if (--depth === 0) break;
        } else j++;
      }
      i = j;
      text += ' ';
      continue;
    } else if (c === '\\') {
      // A psql meta-command (\connect, \restrict): it ends the statement text before it, as in psql.
      const nl = script.indexOf('\n', i);
      i = nl < 0 ? n : nl + 1;
      continue;
    } else if (c === ';') {
      text += c;
      flush();
      i++;
      continue;
    } else if (IDENT_CHAR.test(c) && !IDENT_CHAR.test(prev)) {
      const m = /^[A-Za-z0-9_$\x80-\xff]+/.exec(script.slice(i, i + 256))!;
      j = i + m[0].length;
    } else {
      j = i + 1;
    }
    const token = script.slice(i, j);
    if (name === undefined && afterDatabase && !/^\s+$/.test(token)) {
      if (names.includes(token)) name = { start: text.length, end: text.length + token.length };
      afterDatabase = false;
    }
    if (name === undefined && /^DATABASE$/i.test(token)) afterDatabase = true;
    text += token;
    i = j;
  }
  flush();
  return out;
}

/** Splits SQL text into statements at `;` outside quotes, identifiers, comments and dollar quotes (comments and psql meta-commands left out). */
export function splitStatements(sql: string): string[] {
  return lexScript(sql).map((s) => s.text);
}

/** How pg_dump writes a name: bare when lower-case letters, digits and underscores, else double-quoted. */
function identForms(name: string): string[] {
  return [`"${name.replace(/"/g, '""')}"`, ...(/^[a-z_][a-z0-9_$]*$/.test(name) ? [name] : [])];
}

/** A string as bytes of UTF-8, one character per byte. */
function utf8Bytes(s: string): Bytes {
  return Buffer.from(s, 'utf8').toString('latin1');
}

/** A SQL string literal (standard_conforming_strings: only quotes are doubled). */
function literal(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

/** `DO` running the statement's bytes, converted from the script's encoding into the database's on the server. */
function runAsBytes(before: Bytes, target: string, after: Bytes, encoding: string): string {
  const bytes = (b: Bytes) => `convert_from(decode('${Buffer.from(b, 'latin1').toString('hex')}', 'hex'), ${literal(encoding)})`;
  const body = `BEGIN EXECUTE ${[bytes(before), ...(target ? [literal(target)] : []), bytes(after)].join(' || ')}; END`;
  let tag = '$pgs3b$';
  for (let k = 0; body.includes(tag); k++) tag = `$pgs3b${k}$`;
  return `DO ${tag}${body}${tag}`;
}

/**
 * The database-level statements of a pg_restore script for `source`, renamed to `target` and
 * sorted by kind. Session settings the script opens with (SET, set_config) are left out; its
 * `SET client_encoding` says what its bytes are. `script` as pg_restore wrote it (bytes), or as text.
 */
export function parseDefinition(script: Buffer | string, source: string, target: string): DefinitionStatement[] {
  const bytes: Bytes = typeof script === 'string' ? utf8Bytes(script) : script.toString('latin1');
  const forms = identForms(source).flatMap((f) => [utf8Bytes(f), ...([...f].every((ch) => ch.charCodeAt(0) <= 0xff) ? [f] : [])]);
  let encoding = 'UTF8';
  const out: DefinitionStatement[] = [];
  for (const stmt of lexScript(bytes, forms)) {
    const setEncoding = /^SET\s+client_encoding\s*=\s*'([^']*)'/i.exec(stmt.text);
    if (setEncoding) encoding = setEncoding[1]!;
    if (/^SET\s/i.test(stmt.text) || /^SELECT pg_catalog\.set_config\(/i.test(stmt.text)) continue;
    const [before, after] = stmt.name ? [stmt.text.slice(0, stmt.name.start), stmt.text.slice(stmt.name.end)] : [stmt.text, ''];
    const targetIdent = stmt.name ? quoteIdent(target) : '';
    // As text: UTF-8 bytes read as UTF-8; another encoding's bytes shown as latin1 (LATIN1 exactly).
    const asText = (b: Bytes) => {
      const buf = Buffer.from(b, 'latin1');
      const utf8 = buf.toString('utf8');
      return /^(UTF8|UTF-8|UNICODE)$/i.test(encoding) || Buffer.from(utf8, 'utf8').equals(buf) ? utf8 : b;
    };
    const sql = asText(before) + targetIdent + asText(after);
    const plain = /^(UTF8|UTF-8|UNICODE)$/i.test(encoding) || !/[^\x20-\x7e\t\r\n]/.test(before + after);
    out.push({ kind: kindOf(sql), sql, ...(plain ? {} : { run: runAsBytes(before, targetIdent, after, encoding) }) });
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
