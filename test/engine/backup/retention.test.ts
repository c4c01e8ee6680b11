import { describe, expect, it } from 'vitest';
import { buildDumpKey, manifestKeyFor, verifyReportKeyFor } from '../../../engine/store/backup-key.ts';
import { PruneError } from '../../../engine/errors.ts';
import { planRetention } from '../../../engine/backup/retention.ts';
import type { DatabaseListing, StoredBackup } from '../../../engine/store/s3-store.ts';

const now = new Date('2026-03-10T03:00:00Z');
const backup = (day: number): StoredBackup => {
  const at = new Date(Date.UTC(2026, 2, day, 2));
  const key = buildDumpKey('p/', 'app', at);
  return { database: 'app', key, manifestKey: manifestKeyFor(key), startedAt: at, bytes: 1, lastModified: at, storedAt: at };
};

describe('planRetention (pure)', () => {
  const complete = [9, 8, 7, 6, 5, 4, 3, 2, 1].map(backup);
  const oldOrphan = { key: buildDumpKey('p/', 'app', new Date('2026-03-08T02:00:00Z')), size: 1, lastModified: new Date('2026-03-08T02:10:00Z') };
  const youngOrphan = { key: buildDumpKey('p/', 'app', new Date('2026-03-10T02:00:00Z')), size: 1, lastModified: new Date('2026-03-10T02:30:00Z') };
  const stray = { key: manifestKeyFor(buildDumpKey('p/', 'app', new Date('2026-03-01T00:00:00Z'))), size: 1, lastModified: new Date('2026-03-01T00:00:00Z') };
  const listing: DatabaseListing = { database: 'app', complete, orphans: [youngOrphan, oldOrphan], strayManifests: [stray], serverTime: undefined };

  it('keeps the newest N complete backups and deletes older ones with their manifests, old orphans and stray manifests', () => {
    const plan = planRetention(listing, { retentionCount: 7, now });
    expect(plan.kept).toEqual(complete.slice(0, 7).map((b) => b.key));
    expect(plan.delete).toEqual([complete[7]!.key, complete[7]!.manifestKey, complete[8]!.key, complete[8]!.manifestKey, oldOrphan.key, stray.key]);
  });

  it('deletes an expired backup with its drill report (.verify.json), keeps a kept backup\'s, and removes an old stray report', () => {
    const withReport = (b: StoredBackup): StoredBackup => ({ ...b, drillReport: { key: verifyReportKeyFor(b.key), size: 1, lastModified: b.storedAt } });
    const drilled = complete.map(withReport);
    const strayReport = { key: verifyReportKeyFor(buildDumpKey('p/', 'app', new Date('2026-02-01T02:00:00Z'))), size: 1, lastModified: new Date('2026-02-01T03:00:00Z') };
    const youngStrayReport = { key: verifyReportKeyFor(buildDumpKey('p/', 'app', new Date('2026-03-10T02:00:00Z'))), size: 1, lastModified: new Date('2026-03-10T02:40:00Z') };
    const plan = planRetention({ ...listing, complete: drilled, orphans: [], strayManifests: [], strayReports: [youngStrayReport, strayReport] }, { retentionCount: 7, now });
    expect(plan.delete).toEqual([
      complete[7]!.key, complete[7]!.manifestKey, verifyReportKeyFor(complete[7]!.key),
      complete[8]!.key, complete[8]!.manifestKey, verifyReportKeyFor(complete[8]!.key),
      strayReport.key,
    ]);
  });

  it('deletes nothing complete when there are fewer than N', () => {
    expect(planRetention({ ...listing, orphans: [], strayManifests: [] }, { retentionCount: 30, now }).delete).toEqual([]);
  });

  it('refuses a retention count under 1', () => {
    expect(() => planRetention(listing, { retentionCount: 0, now })).toThrow(PruneError);
  });

  it('never counts a backup whose manifest is unreadable, and never deletes one newer than the oldest kept', () => {
    // Newest (9) and 7 unreadable: the 3 readable kept are 8, 6, 5; 9 and 7 stay, 4…1 go.
    const plan = planRetention({ ...listing, orphans: [], strayManifests: [] }, { retentionCount: 3, now, unreadable: new Set([complete[0]!.key, complete[2]!.key]) });
    expect(plan.kept).toEqual([complete[1]!.key, complete[3]!.key, complete[4]!.key]);
    expect(plan.unreadable).toEqual([complete[0]!.key, complete[2]!.key]);
    expect(plan.delete).toEqual(complete.slice(5).flatMap((b) => [b.key, b.manifestKey]));
  });

  it('never deletes a protected key (the backup this run wrote), whatever its rank', () => {
    const plan = planRetention({ ...listing, orphans: [], strayManifests: [] }, { retentionCount: 2, now, protect: new Set([complete[8]!.key]) });
    expect(plan.kept).toEqual([complete[0]!.key, complete[1]!.key, complete[8]!.key]);
    expect(plan.delete).not.toContain(complete[8]!.key);
    expect(plan.delete).toHaveLength(6 * 2);
  });

  it("ages orphans by S3's clock (the listing's serverTime), not the host's", () => {
    // The host's clock is 400 days ahead: by it every orphan is old; by S3's, the young one is not.
    const hostNow = new Date(now.getTime() + 400 * 86_400_000);
    const plan = planRetention({ ...listing, serverTime: now }, { retentionCount: 7, now: hostNow });
    expect(plan.delete).toContain(oldOrphan.key);
    expect(plan.delete).not.toContain(youngOrphan.key);
    expect(planRetention(listing, { retentionCount: 7, now: hostNow }).delete).toContain(youngOrphan.key);
  });
});
