/**
 * The declarations (engine/settings/settings.ts, infra/config.ts CONTEXT_SETTINGS) are the one
 * place a setting is written down: docs/configuration.md and cdk.json's `//` lines are held to
 * them (every setting documented, nothing documented that is not declared, the defaults the same).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../engine/config.ts';
import { SETTINGS, SETTING_NAMES, type SettingDeclaration } from '../../../engine/settings/settings.ts';
import { CONTEXT_DEPLOYED, CONTEXT_SETTINGS, parseConfig } from '../../../infra/config.ts';
import { contextComment, contextKeys, formatDefault, withContextComment } from '../../../infra/context-doc.ts';
import { REPO_ROOT } from '../../support/layer.ts';

const doc = readFileSync(join(REPO_ROOT, 'docs', 'configuration.md'), 'utf8');

interface Row {
  readonly name: string;
  /** The default column's part for this name ("`2`, `0`" is split between two names). */
  readonly default: string;
}

/** The rows of the `| name | meaning | default |` tables in the sections whose heading matches. */
function documented(heading: RegExp): Row[] {
  const rows: Row[] = [];
  let inSection = false;
  for (const line of doc.split('\n')) {
    if (line.startsWith('## ')) inSection = heading.test(line);
    if (!inSection || !line.startsWith('| `')) continue;
    const cells = line.split(' | ');
    const names = [...cells[0]!.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
    const cell = cells.at(-1)!.replace(/ \|$/, '');
    const parts = cell.split(/,\s+/);
    names.forEach((name, i) => rows.push({ name, default: parts.length === names.length ? parts[i]! : cell }));
  }
  return rows;
}

/** What the default column must say for a declared default: its value as the first code span, or "none" for an empty list. */
function expectDefault(where: string, row: Row, value: unknown): void {
  const shown = formatDefault(value);
  if (shown === 'none') expect(`${where} ${row.name}: ${row.default}`).toBe(`${where} ${row.name}: none`);
  else expect(`${where} ${row.name}: ${/`([^`]*)`/.exec(row.default)?.[1] ?? row.default}`).toBe(`${where} ${row.name}: ${shown}`);
}

describe('docs/configuration.md and the declarations agree', () => {
  it('documents every variable once, and no variable that is not declared', () => {
    const names = documented(/^## Environment variables$/).map((r) => r.name);
    expect([...names].sort()).toEqual([...SETTING_NAMES].sort());
  });

  it('states each variable\'s declared default', () => {
    for (const row of documented(/^## Environment variables$/)) {
      const d = (SETTINGS as Record<string, SettingDeclaration>)[row.name];
      if (d?.default !== undefined) expectDefault('docs/configuration.md', row, d.default);
    }
  });

  it('documents every context key once, and no key that is not declared, with its default', () => {
    // The stack's own keys in the context tables; a deployed engine setting in its variable's row.
    const rows = documented(/^## (CDK context|The drill function \(CDK context\))$/);
    expect(rows.map((r) => r.name).sort()).toEqual(Object.keys(CONTEXT_SETTINGS).sort());
    const byKey = new Map(contextKeys().map((k) => [k.key, k]));
    for (const row of rows) {
      const declared = byKey.get(row.name)!;
      if (declared.default !== undefined) expectDefault('docs/configuration.md', row, declared.default);
    }
  });

  it('names the context key of each deployed variable in its row, and no other', () => {
    const lines = doc.split('\n').filter((l) => l.startsWith('| `'));
    const named: Record<string, string[]> = {};
    for (const line of lines) {
      const [names, meaning] = line.split(' | ');
      const keys = [.../Deployed from context ((?:`[^`]+`(?:, )?)+)/.exec(meaning ?? '')?.[1]?.matchAll(/`([^`]+)`/g) ?? []].map((m) => m[1]!);
      for (const n of [...names!.matchAll(/`([^`]+)`/g)].map((m) => m[1]!)) if (keys.length > 0) named[n] = keys;
    }
    const declared = Object.fromEntries(Object.entries(CONTEXT_DEPLOYED).map(([key, name]) => [name, key]));
    for (const name of SETTING_NAMES) {
      if (declared[name]) expect({ name, keys: named[name] }).toEqual({ name, keys: expect.arrayContaining([declared[name]]) });
      else expect({ name, keys: named[name] }).toEqual({ name, keys: undefined });
    }
    for (const [name, keys] of Object.entries(named)) for (const key of keys) expect({ name, key, declared: CONTEXT_DEPLOYED[key] !== undefined }).toEqual({ name, key, declared: true });
  });

  it('each declared default is what loadConfig and parseConfig apply', () => {
    const c = loadConfig({ DB_SECRET_ID: 's', BACKUP_BUCKET: 'b-1', DATABASES: '*' }) as unknown as Record<string, unknown>;
    for (const name of SETTING_NAMES) {
      const d = SETTINGS[name] as SettingDeclaration;
      if (d.default === undefined || d.config === undefined) continue;
      const [group, field] = d.config.includes('.') ? d.config.split('.') : [undefined, d.config];
      const value = group ? (c[group] as Record<string, unknown>)[field!] : c[field!];
      expect({ name, value }).toEqual({ name, value: d.ms ? (d.default as number) * 1000 : d.default });
    }
    const ctx = parseConfig({ dbSecretArn: 'arn:aws:secretsmanager:eu-west-3:123456789012:secret:prod/db-AbCdEf' }, { now: new Date('2026-01-01T00:00:00Z') });
    // A default deployment writes the pinned settings (their defaults) and nothing else from the context.
    const pinned = SETTING_NAMES.filter((n) => (SETTINGS[n] as SettingDeclaration).context?.pinned);
    const written = (n: string) => !['RETENTION_DAILY', 'RETENTION_WEEKLY', 'RETENTION_MONTHLY', 'RUNNER'].includes(n); // GFS off, no fan-out
    expect(ctx.functionSettings).toEqual(Object.fromEntries(pinned.filter(written).map((n) => [n, (SETTINGS[n] as SettingDeclaration).default])));
    expect(Object.keys(ctx.functionSettings).sort()).toEqual(['BACKUP_PREFIX', 'NOTIFY_ON_SUCCESS', 'RETENTION_COUNT']);
    expect(ctx).toMatchObject({ stackName: CONTEXT_SETTINGS.stackName.default, memorySize: CONTEXT_SETTINGS.memorySize.default, dbPort: CONTEXT_SETTINGS.dbPort.default });
  });

  it('declares each context key once: the stack\'s own and the deployed engine settings never share one', () => {
    const own = new Set(Object.keys(CONTEXT_SETTINGS));
    expect(Object.keys(CONTEXT_DEPLOYED).filter((k) => own.has(k))).toEqual([]);
  });
});

describe('cdk.json\'s "//" lines are written from the declarations', () => {
  const cdkJson = readFileSync(join(REPO_ROOT, 'cdk.json'), 'utf8');

  it('holds one line per context key, with its default, as npm run settings:cdk-json writes them', () => {
    const comment = (JSON.parse(cdkJson) as { context: { '//': string[] } }).context['//'];
    // On failure: npm run settings:cdk-json
    expect(comment).toEqual(contextComment());
    for (const k of contextKeys()) expect(comment.some((l) => l.startsWith(`${k.key} `) || l.startsWith(`${k.key}:`))).toBe(true);
  });

  it('rewrites only the "//" list', () => {
    expect(withContextComment(cdkJson)).toBe(cdkJson);
    const stale = cdkJson.replace('"dbPort (5432): PostgreSQL port."', '"dbPort (5433): PostgreSQL port."');
    expect(stale).not.toBe(cdkJson);
    expect(withContextComment(stale)).toBe(cdkJson);
  });
});
