import { describe, expect, it } from 'vitest';
import { buildDumpKey, databasePrefix, encodeDatabaseName, manifestKeyFor, parseKey } from '../../../engine/store/backup-key.ts';

const at = new Date('2026-03-09T02:00:01.234Z');

describe('backup keys', () => {
  it('follows the documented layout', () => {
    expect(buildDumpKey('pg-s3-backup/', 'app', at)).toBe('pg-s3-backup/app/2026/03/09/app-20260309T020001234Z.dump');
    expect(manifestKeyFor('a.dump')).toBe('a.dump.json');
  });

  it.each(['app', 'my db', `it's "quoted"`, 'données', 'a/b', '..', '%41', 'Ünïcødé 数据库'])('round-trips the name %j', (name) => {
    const key = buildDumpKey('p/', name, at);
    expect(key.startsWith(databasePrefix('p/', name))).toBe(true);
    expect(encodeDatabaseName(name)).toMatch(/^[A-Za-z0-9_.%-]+$/);
    expect(parseKey('p/', key)).toEqual({ database: name, startedAt: at, kind: 'dump', dumpKey: key });
    expect(parseKey('p/', manifestKeyFor(key))).toEqual({ database: name, startedAt: at, kind: 'manifest', dumpKey: key });
  });

  it('ignores keys it did not write', () => {
    expect(parseKey('p/', 'other/app/2026/03/09/app-20260309T020001234Z.dump')).toBeUndefined();
    expect(parseKey('p/', 'p/app/2026/03/09/other-20260309T020001234Z.dump')).toBeUndefined();
    expect(parseKey('p/', 'p/app/2026/03/10/app-20260309T020001234Z.dump')).toBeUndefined();
    expect(parseKey('p/', 'p/app/2026/03/09/app-20260309T020001234Z.dump.tmp')).toBeUndefined();
    expect(parseKey('p/', 'p/app/notes.txt')).toBeUndefined();
  });

  it('keeps one database out of another whose name is a prefix of it', () => {
    expect(databasePrefix('p/', 'app')).toBe('p/app/');
    expect(databasePrefix('p/', 'app2').startsWith(databasePrefix('p/', 'app'))).toBe(false);
  });
});
