/**
 * The field schemas settings are written with. Values arrive as strings from the environment
 * (blank means unset); each field's message is the expected form ("a whole number from 1 to
 * 1000"), and the caller names the variable or the context key around it.
 */
import { z } from 'zod';
import { recipientProblem } from './values.ts';

/** Environment values arrive as strings; blank means unset. */
export const text = z.preprocess((v) => (typeof v === 'string' && v.trim() === '' ? undefined : typeof v === 'string' ? v.trim() : v), z.string().optional());

export const wholeNumber = (min: number, max: number) => {
  const expected = `a whole number from ${min} to ${max}`;
  return z.preprocess(
    (v) => (typeof v === 'string' ? (v.trim() === '' ? undefined : /^\d+$/.test(v.trim()) ? Number(v.trim()) : v) : v),
    z.number({ error: expected }).int(expected).min(min, expected).max(max, expected).optional(),
  );
};

export const flag = z.preprocess((v) => {
  if (typeof v !== 'string') return v;
  const t = v.trim().toLowerCase();
  return t === '' ? undefined : t === 'true' || t === '1' ? true : t === 'false' || t === '0' ? false : v;
}, z.boolean({ error: '"true" or "false"' }).optional());

export const matching = (re: RegExp, expected: string) => text.pipe(z.string().regex(re, expected).optional());

export const oneOf = <const T extends readonly [string, ...string[]]>(values: T, expected = `one of ${values.join(', ')}`) =>
  text.pipe(z.enum(values, { error: expected }).optional());

/** A comma-separated value as its entries (spaces around commas trimmed); blank means unset. */
const commaSeparated = (v: unknown) => (typeof v === 'string' ? (v.trim() === '' ? undefined : v.split(',').map((d) => d.trim())) : v);

/** pg_dump's `--compress` forms: a level, or `method[:detail]` (e.g. `zstd:1`, `gzip:level=6`, `zstd:long`). */
export const COMPRESSION = /^(?:\d|(?:none|gzip|lz4|zstd)(?::[A-Za-z0-9=,_]+)?)$/;

/** Characters S3 documents as safe in keys, segments ending with `/`: no spaces, no `//`. */
export const keyPrefix = z.preprocess(
  (v) => (typeof v === 'string' ? v.trim() : v),
  z.string().regex(/^(?:[A-Za-z0-9!_.*'()-]+\/)*$/, 'empty or a key prefix ending with "/" (not starting with "/"), of letters, digits and !_.*\'()- , e.g. "pg-s3-backup/"').optional(),
);

/** Glob patterns (`*`, `?`) over database names, comma-separated. */
export const patternList = z.preprocess(
  commaSeparated,
  z.array(z.string().regex(/^[^,\s]+$/), { error: 'a comma-separated list of database name patterns (* and ? wildcards)' }).optional(),
);

export const databaseList = z.preprocess(
  commaSeparated,
  z
    .array(z.string(), { error: 'a comma-separated list of database names' })
    .refine((l) => l.every((d) => d !== '' && !d.includes(',')), 'a comma-separated list of database names without empty entries')
    .optional(),
);

/** age recipients, comma-separated: each one checked (shape and bech32 checksum), the entry named by its position. */
export const recipientList = z.preprocess(
  commaSeparated,
  z
    .array(z.string(), { error: 'a comma-separated list of age recipients (age1…)' })
    .superRefine((list, ctx) => {
      list.forEach((r, i) => {
        const problem = r === '' ? 'is empty' : recipientProblem(r);
        // A recipient is public and may be quoted; anything else (an identity pasted by mistake) is not.
        const shown = /^age1[a-z0-9]*$/.test(r) ? ` (${r})` : '';
        if (problem) ctx.addIssue({ code: 'custom', message: `a comma-separated list of age X25519 recipients (age1…, from age-keygen): entry ${i + 1}${shown} ${problem}` });
      });
    })
    .optional(),
);
