/**
 * verify's versionNote: a restore on another major than the backup's server (a PostgreSQL 13
 * backup on --local's throwaway 18) says so, and what it did not try; the same major (any minor)
 * says nothing. A failed drill's alert carries it: the errors it lists may be the layer's 18's alone.
 */
import { describe, expect, it } from 'vitest';
import { formatDrillAlert, type DrillDatabaseReport } from '../../../engine/restore/drill.ts';
import { versionNote, type VerifyReport } from '../../../engine/restore/verify.ts';

describe('versionNote', () => {
  it('names both servers and the restore it did not try when the majors differ', () => {
    expect(versionNote('13.23', '18.1')).toBe(
      'the backup is of PostgreSQL 13.23 and was restored on PostgreSQL 18.1: this tried a restore into PostgreSQL 18, not into 13 (verify --scratch-url on a PostgreSQL 13 server tries that)',
    );
    // An 18 backup checked on an older scratch server (verify --scratch-url): the other way round.
    expect(versionNote('18.1', '15.18')).toMatch(/this tried a restore into PostgreSQL 15, not into 18 /);
  });

  it('says nothing for the same major, whatever the minors, nor when a version is unknown or unreadable', () => {
    expect(versionNote('17.2', '17.7')).toBeUndefined();
    expect(versionNote('18.1', '18.6')).toBeUndefined();
    expect(versionNote(undefined, '18.6')).toBeUndefined();
    expect(versionNote('13.23', undefined)).toBeUndefined();
    expect(versionNote('devel', '18.6')).toBeUndefined();
  });
});

describe('a failed drill alert', () => {
  const failed = (verify: Partial<VerifyReport>): DrillDatabaseReport => ({
    kind: 'pg-s3-backup restore drill',
    status: 'failed',
    database: 'ops',
    key: 'pg-s3-backup/ops/2026/12/06/ops-20261206T000000000Z.dump',
    drilledAt: '2026-12-06T01:00:00.000Z',
    rowCounts: 'exact',
    tables: [],
    failingTables: [],
    problems: [{ stage: 'restore', message: 'pg_restore reported 1 error' }],
    warnings: [],
    requiredTempBytes: undefined,
    availableTempBytes: undefined,
    verify: verify as VerifyReport,
    whatToDo: 'Do not count on this backup.',
  });

  it('says the backup was restored on another major than its own, when it was', () => {
    const note = versionNote('13.23', '18.1')!;
    expect(formatDrillAlert(failed({ versionNote: note })).body).toContain(`\nNote: ${note}.\n`);
    expect(formatDrillAlert(failed({})).body).not.toMatch(/Note:/);
  });
});
