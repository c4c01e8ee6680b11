/**
 * The scratch database of a drill or `verify` when the server cannot honour the backup's locale:
 * a database created `de_DE.UTF-8` (or with an ICU locale's libc part the server lacks) must not
 * make the drill restore nothing. Its rows do not depend on the collation, so the scratch database
 * is created with the closest locale the server surely has (the builtin C.UTF-8 provider, else
 * libc C.UTF-8, else C; an ICU database keeps its ICU locale), the encoding kept, and the
 * difference is reported as a warning naming both. `restore --create` into a real database never
 * does this: there the definition is honoured or refused (admin.ts createDatabase).
 */
import { RestoreError } from '../errors.ts';
import type { PgConnection } from '../pg/connection.ts';
import { createDatabase, type DefinitionOutcome } from './admin.ts';
import { describeCreate, type DefinitionStatement } from './database-definition.ts';

/** CREATE DATABASE options that choose a locale (pg_dump 13-18 write these). */
const LOCALE_OPTION = /\s+(?:LOCALE_PROVIDER|LOCALE|LC_COLLATE|LC_CTYPE|ICU_LOCALE|ICU_RULES|BUILTIN_LOCALE|COLLATION_VERSION)\s*=\s*(?:'(?:[^']|'')*'|[A-Za-z_][A-Za-z0-9_]*)/gi;

/** True for the server's refusals of a locale, a collation or a locale provider (not of a privilege or a name). */
export function isLocaleRefusal(err: unknown): boolean {
  const e = err as { code?: string; message?: string } | undefined;
  if (!e?.message || e.code === '42501' || e.code === '42P04') return false;
  return /locale|collat|provider|\bicu\b|ctype/i.test(e.message);
}

/** The value of one option in a CREATE DATABASE statement (`LOCALE = 'x'`), unquoted. */
function optionValue(sql: string, name: string): string | undefined {
  const m = new RegExp(`\\b${name}\\s*=\\s*(?:'((?:[^']|'')*)'|([A-Za-z_][A-Za-z0-9_]*))`, 'i').exec(sql);
  return m ? (m[1]?.replace(/''/g, "'") ?? m[2]) : undefined;
}

export interface LocaleFallback {
  /** The locale options appended instead of the backup's (for the warning). */
  readonly options: string;
  readonly sql: string;
}

/**
 * The CREATE DATABASE statements to try, in order, when `create` was refused for its locale: the
 * backup's statement with its locale options replaced (encoding, template and everything else kept).
 * - ICU: the ICU locale (and rules) kept, the libc part C (ICU does the collating);
 * - UTF8: the builtin provider's C.UTF-8 (PostgreSQL 17+, needs no locale data), then libc C.UTF-8;
 * - last, any encoding: C.
 */
export function localeFallbacks(create: string): LocaleFallback[] {
  // Options only: the database's name (a quoted one may hold anything) is kept as it is.
  const name = /^CREATE DATABASE\s+(?:"(?:[^"]|"")*"|\S+)/i.exec(create)?.[0] ?? '';
  const opts = create.slice(name.length).replace(/;\s*$/, '');
  const stripped = name + opts.replace(LOCALE_OPTION, '');
  const provider = optionValue(opts, 'LOCALE_PROVIDER')?.toLowerCase();
  const encoding = optionValue(opts, 'ENCODING')?.toUpperCase();
  const candidates: string[] = [];
  if (provider === 'icu') {
    const icu = optionValue(opts, 'ICU_LOCALE') ?? optionValue(opts, 'LOCALE');
    const rules = optionValue(opts, 'ICU_RULES');
    if (icu) candidates.push(`LOCALE_PROVIDER = icu ICU_LOCALE = ${quote(icu)}${rules ? ` ICU_RULES = ${quote(rules)}` : ''} LC_COLLATE = 'C' LC_CTYPE = 'C'`);
  }
  if (encoding === 'UTF8' || encoding === 'UTF-8') {
    candidates.push("LOCALE_PROVIDER = builtin BUILTIN_LOCALE = 'C.UTF-8' LC_COLLATE = 'C' LC_CTYPE = 'C'", "LOCALE_PROVIDER = libc LOCALE = 'C.UTF-8'");
  }
  // No provider named: PostgreSQL 13 and 14 know none (LC_COLLATE and LC_CTYPE they know).
  candidates.push("LC_COLLATE = 'C' LC_CTYPE = 'C'");
  return candidates.map((options) => ({ options, sql: `${stripped} ${options};` }));
}

function quote(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

export interface ScratchOutcome extends DefinitionOutcome {
  /** Set when the backup's locale could not be honoured: what was asked, why not, what was used. */
  readonly warning?: string;
}

/**
 * createDatabase for a scratch copy: as the backup defines it, else (the locale refused) with the
 * first fallback the server accepts, and a warning. Anything else refused throws as createDatabase does.
 */
export async function createScratchDatabase(
  target: PgConnection,
  database: string,
  definition: readonly DefinitionStatement[],
  options: { readonly noOwner?: boolean | undefined; readonly noAcl?: boolean | undefined } = {},
): Promise<ScratchOutcome> {
  try {
    return await createDatabase(target, database, definition, options);
  } catch (err) {
    const create = definition.find((s) => s.kind === 'create')?.sql;
    if (!create || !(err instanceof RestoreError) || !isLocaleRefusal(err.cause)) throw err;
    const rest = definition.filter((s) => s.kind !== 'create');
    for (const fallback of localeFallbacks(create)) {
      try {
        const outcome = await createDatabase(target, database, [{ kind: 'create', sql: fallback.sql }, ...rest], options);
        return {
          ...outcome,
          warning:
            `the backup's database locale is not available on this server (${describeCreate(create)}: ${(err.cause as Error).message}): ` +
            `the scratch database was created with ${fallback.options} instead, encoding kept. Row counts do not depend on the locale; ` +
            'text order, case rules and text indexes of this copy differ from the source. To drill it as defined: add the locale to the pg-server ' +
            'layer (PG_LAYER_LOCALES, layers/pg-server/README.md) or install it on the scratch server.',
        };
      } catch (again) {
        if (!(again instanceof RestoreError) || !isLocaleRefusal(again.cause)) throw again;
      }
    }
    throw err;
  }
}
