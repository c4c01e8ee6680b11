/**
 * cdk.json's `//` lines, written from the declarations (infra/config.ts `CONTEXT_SETTINGS`, and the
 * engine settings deployed from a context key): one line per key, its default and its one-line
 * doc. `npm run settings:cdk-json` rewrites them; test/engine/settings/settings.test.ts fails
 * while they differ.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SETTINGS, type SettingDeclaration } from '../engine/settings/settings.ts';
import { REPO_ROOT } from '../layers/pg-dump/paths.ts';
import { CONTEXT_DEPLOYED, CONTEXT_SETTINGS, type ContextDeclaration } from './config.ts';

const HEADER = [
  'pg-s3-backup deployment settings (an example: replace the values with yours; docs/configuration.md, "CDK context", explains each).',
  'Keys starting with // are comments. Override any key on the command line: npx cdk deploy -c timeZone=UTC -c scheduleHour=2',
  'One line per key, "key (default): what it does"; written from the declarations by npm run settings:cdk-json.',
];

/** How a default reads in the docs and in cdk.json: lists comma-separated, an empty list as none. */
export function formatDefault(value: unknown): string {
  if (Array.isArray(value)) return value.length === 0 ? 'none' : value.join(',');
  return String(value);
}

/** Every context key with its declaration: the stack's own, then the deployed engine settings (with their variable). */
export function contextKeys(): { key: string; default: unknown; required: boolean; doc: string; variable?: string }[] {
  const own = Object.entries(CONTEXT_SETTINGS).map(([key, d]: [string, ContextDeclaration]) => ({ key, default: d.default, required: d.required === true, doc: d.doc }));
  const engine = Object.entries(CONTEXT_DEPLOYED).map(([key, variable]) => {
    const d = SETTINGS[variable] as SettingDeclaration;
    return { key, default: d.default, required: false, doc: d.doc, variable };
  });
  return [...own, ...engine];
}

/** The `//` value cdk.json should hold. */
export function contextComment(): string[] {
  return [
    ...HEADER,
    ...contextKeys().map((k) => {
      const when = k.required ? ' (required)' : k.default !== undefined ? ` (${formatDefault(k.default)})` : '';
      return `${k.key}${when}: ${k.doc}${k.variable ? ` (${k.variable})` : ''}.`;
    }),
  ];
}

/** cdk.json with its `//` lines rewritten, everything else as it is (cdk.json's own two-space layout, lists on one line). */
export function withContextComment(cdkJson: string): string {
  const start = cdkJson.indexOf('    "//": [');
  const end = cdkJson.indexOf('\n    ],', start);
  if (start < 0 || end < 0) throw new Error('cdk.json: no "//" list in "context" to rewrite');
  const lines = contextComment().map((l) => `      ${JSON.stringify(l)}`).join(',\n');
  return `${cdkJson.slice(0, start)}    "//": [\n${lines}${cdkJson.slice(end)}`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const path = join(REPO_ROOT, 'cdk.json');
  writeFileSync(path, withContextComment(readFileSync(path, 'utf8')));
}
