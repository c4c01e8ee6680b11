/**
 * The lifecycle backstop must never delete the last good backups. The bucket's synthesized
 * lifecycle rules are run through a small model of S3 lifecycle (an object's action is due at the
 * first midnight UTC at or after creation — or becoming noncurrent — plus the rule's days, never
 * before) together with the engine's pruning (keep the newest `retentionCount` complete backups,
 * nothing when the night's backup failed): nightly successes, then backups stop. The newest
 * complete backup must stay listed for at least 90 failed nights, and every pruned or expired
 * version must stay recoverable for the noncurrent period.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { buildApp } from '../../infra/app.ts';
import { DEFAULT_BACKSTOP_EXPIRATION_DAYS, DEFAULT_NONCURRENT_VERSION_DAYS } from '../../infra/config.ts';
import { gfsKeep } from '../../engine/backup/gfs.ts';
import { REPO_ROOT } from '../../layers/pg-dump/paths.ts';

const SECRET = 'arn:aws:secretsmanager:eu-west-3:123456789012:secret:prod/db-AbCdEf';
const FIXTURES = fileURLToPath(new URL('fixtures/', import.meta.url));
const DAY = 86_400_000;
const MINUTE = 60_000;
/** What the issue asks: the newest complete backup survives at least this many failed nights. */
const REQUIRED_FAILED_NIGHTS = 90;

interface CfnRule {
  Id?: string;
  Status: string;
  Prefix?: string;
  ExpirationInDays?: number;
  NoncurrentVersionExpiration?: { NoncurrentDays: number };
  AbortIncompleteMultipartUpload?: { DaysAfterInitiation: number };
  ExpiredObjectDeleteMarker?: boolean;
}

/** Rule fields the model understands; any other (a transition, a date, a filter) fails the test rather than being ignored. */
const MODELLED = new Set(['Id', 'Status', 'Prefix', 'ExpirationInDays', 'NoncurrentVersionExpiration', 'AbortIncompleteMultipartUpload', 'ExpiredObjectDeleteMarker']);

interface SynthRules {
  rules: CfnRule[];
  prefix: string;
  retentionCount: number;
  /** The GFS rules the function is told (all 0 when unset) and their zone. */
  gfs: { daily: number; weekly: number; monthly: number; timeZone: string };
}

function synthRules(context: Record<string, unknown>): SynthRules {
  const { stack } = buildApp({
    context: { dbSecretArn: SECRET, drillSchedule: 'off', ...context },
    layerDir: resolve(FIXTURES, 'layer', 'arm64'),
    entry: 'test/infra/fixtures/handler.ts',
    now: new Date('2026-01-01T00:00:00Z'),
  });
  const template = Template.fromStack(stack);
  const buckets = Object.values(template.findResources('AWS::S3::Bucket')) as { Properties: Record<string, unknown> }[];
  const backup = buckets.find((b) => 'VersioningConfiguration' in b.Properties)!;
  const rules = (backup.Properties.LifecycleConfiguration as { Rules: CfnRule[] }).Rules;
  for (const rule of rules) for (const field of Object.keys(rule)) expect(MODELLED.has(field), `lifecycle rule field ${field} is not modelled`).toBe(true);
  // The pruning side comes from the same template: what the function is told to keep, and where.
  const [fn] = Object.values(template.findResources('AWS::Lambda::Function')) as { Properties: { Environment: { Variables: Record<string, string> } } }[];
  const env = fn!.Properties.Environment.Variables;
  return {
    rules: rules.filter((r) => r.Status === 'Enabled'),
    prefix: env.BACKUP_PREFIX!,
    retentionCount: Number(env.RETENTION_COUNT),
    gfs: { daily: Number(env.RETENTION_DAILY ?? 0), weekly: Number(env.RETENTION_WEEKLY ?? 0), monthly: Number(env.RETENTION_MONTHLY ?? 0), timeZone: env.RETENTION_TIME_ZONE ?? 'UTC' },
  };
}

/** S3 rounds every lifecycle due time up to the next midnight UTC. */
const ceilMidnight = (t: number): number => Math.ceil(t / DAY) * DAY;

interface Version {
  readonly key: string;
  readonly created: number;
  noncurrentSince?: number;
  goneAt?: number;
}

interface Scenario {
  readonly rules: CfnRule[];
  readonly prefix: string;
  readonly retentionCount: number;
  readonly gfs: SynthRules['gfs'];
  /** Successful nights before backups stop. */
  readonly goodNights: number;
  /** Minutes after midnight UTC the nightly run starts. */
  readonly runMinute: number;
  /** A mistaken prune (keep nothing) right after this good night. */
  readonly mistakenPruneAfterNight?: number;
  readonly totalDays: number;
}

interface Outcome {
  /** Failed nights after which the newest complete backup was still listed (checked just before the next night). */
  readonly failedNightsSurvived: number;
  /** Current versions the lifecycle expired while pruning was running normally (must be none). */
  readonly expiredBeforePrune: string[];
  /** Days between a version becoming noncurrent and its permanent removal, the shortest seen. */
  readonly shortestNoncurrentDays: number;
  /** Days from the last success until the last backup's data was gone for good. */
  readonly lastBackupGoneAfterDays: number;
}

/**
 * One database, one backup a night: the dump at the run time, its manifest 10 minutes later,
 * then pruning. Lifecycle is applied at every midnight (the only times anything is due).
 */
function simulate(s: Scenario): Outcome {
  const versions: Version[] = [];
  const start = Date.UTC(2027, 0, 1);
  const runAt = (night: number): number => start + night * DAY + s.runMinute * MINUTE;
  const lastGood = runAt(s.goodNights - 1);
  const expiredBeforePrune: string[] = [];
  const current = (t: number) => versions.filter((v) => v.created <= t && v.noncurrentSince === undefined && v.goneAt === undefined);
  const completeBackups = (t: number): string[] => {
    const keys = new Set(current(t).map((v) => v.key));
    return [...keys].filter((k) => k.endsWith('.dump') && keys.has(`${k}.json`)).sort();
  };
  const applies = (rule: CfnRule, key: string) => key.startsWith(rule.Prefix ?? '');
  const lifecycleAt = (t: number) => {
    for (const v of versions) {
      if (v.goneAt !== undefined || v.created > t) continue;
      for (const rule of s.rules) {
        if (!applies(rule, v.key)) continue;
        if (v.noncurrentSince === undefined && rule.ExpirationInDays !== undefined && t >= ceilMidnight(v.created + rule.ExpirationInDays * DAY)) {
          v.noncurrentSince = t;
          if (t <= lastGood + DAY) expiredBeforePrune.push(v.key);
        }
        if (v.noncurrentSince !== undefined && rule.NoncurrentVersionExpiration && t >= ceilMidnight(v.noncurrentSince + rule.NoncurrentVersionExpiration.NoncurrentDays * DAY)) {
          v.goneAt = t;
        }
      }
    }
  };
  // The engine's own choice (engine/backup/gfs.ts), ordered by the manifest's S3 time as pruning does.
  const prune = (t: number, keep: number) => {
    const complete = completeBackups(t);
    const kept = keep === 0 ? new Set<string>() : gfsKeep(complete.map((key) => ({ key, at: new Date(versions.find((v) => v.key === `${key}.json`)!.created) })), { ...s.gfs, count: keep });
    for (const dump of complete.filter((k) => !kept.has(k))) {
      for (const v of versions) if ((v.key === dump || v.key === `${dump}.json`) && v.noncurrentSince === undefined) v.noncurrentSince = t;
    }
  };

  let lastKey = '';
  for (let day = 0; day < s.totalDays; day++) {
    lifecycleAt(start + day * DAY);
    const t = runAt(day);
    if (day < s.goodNights) {
      const stamp = new Date(t).toISOString().replace(/[-:.]/g, '');
      lastKey = `${s.prefix}app/app-${stamp}.dump`;
      versions.push({ key: lastKey, created: t }, { key: `${lastKey}.json`, created: t + 10 * MINUTE });
      prune(t + 20 * MINUTE, s.mistakenPruneAfterNight === day ? 0 : s.retentionCount);
    }
  }
  const lastVersions = versions.filter((v) => v.key === lastKey || v.key === `${lastKey}.json`);
  const gone = Math.max(...lastVersions.map((v) => v.goneAt ?? Number.POSITIVE_INFINITY));
  const noncurrentSpans = versions.filter((v) => v.goneAt !== undefined && v.noncurrentSince !== undefined).map((v) => (v.goneAt! - v.noncurrentSince!) / DAY);
  return {
    failedNightsSurvived: countSurvivedNights(s, versions, lastKey),
    expiredBeforePrune,
    shortestNoncurrentDays: Math.min(...noncurrentSpans),
    lastBackupGoneAfterDays: (gone - lastGood) / DAY,
  };
}

/** Failed nights n = 1, 2, … after each of which (up to just before night n + 1) the last backup is still complete and listed. */
function countSurvivedNights(s: Scenario, versions: Version[], lastKey: string): number {
  const start = Date.UTC(2027, 0, 1);
  const listedAt = (t: number) =>
    [lastKey, `${lastKey}.json`].every((key) => versions.some((v) => v.key === key && v.created <= t && (v.noncurrentSince === undefined || v.noncurrentSince > t)));
  let n = 0;
  while (s.goodNights + n + 1 < s.totalDays && listedAt(start + (s.goodNights + n + 1) * DAY + s.runMinute * MINUTE - MINUTE)) n++;
  return n;
}

describe('the lifecycle backstop never deletes the last good backups', () => {
  const defaults = synthRules({});
  // Midnight UTC exactly is the worst case (creation + N days is then already a midnight).
  const runMinutes = [0, 2 * 60, 23 * 60 + 45];
  const worstCase = () => Math.min(...runMinutes.map((runMinute) => simulate({ ...defaults, goodNights: 20, runMinute, totalDays: 20 + 200 }).failedNightsSurvived));

  it(`keeps the newest complete backup listed through at least ${REQUIRED_FAILED_NIGHTS} failed nights with the default rules, whatever the run time`, () => {
    for (const runMinute of runMinutes) {
      const out = simulate({ ...defaults, goodNights: 20, runMinute, totalDays: 20 + 200 });
      expect(out.failedNightsSurvived, `run at minute ${runMinute}`).toBeGreaterThanOrEqual(REQUIRED_FAILED_NIGHTS);
      expect(out.failedNightsSurvived, `run at minute ${runMinute}`).toBeGreaterThanOrEqual(DEFAULT_BACKSTOP_EXPIRATION_DAYS - 1);
      // Then its versions stay recoverable for the noncurrent period.
      expect(out.lastBackupGoneAfterDays).toBeGreaterThanOrEqual(DEFAULT_BACKSTOP_EXPIRATION_DAYS + DEFAULT_NONCURRENT_VERSION_DAYS);
      expect(out.expiredBeforePrune, 'the lifecycle acted before pruning').toEqual([]);
    }
  });

  it('holds for the smallest and a large retentionCount, and for a configured backstop', () => {
    for (const context of [{ retentionCount: 1 }, { retentionCount: 150 }, { retentionCount: 3, backstopExpirationDays: 180, noncurrentVersionDays: 14 }]) {
      const rules = synthRules(context);
      const out = simulate({ ...rules, goodNights: rules.retentionCount + 20, runMinute: 23 * 60 + 45, totalDays: rules.retentionCount + 20 + 400 });
      expect(out.failedNightsSurvived, JSON.stringify(context)).toBeGreaterThanOrEqual(REQUIRED_FAILED_NIGHTS);
      expect(out.expiredBeforePrune, JSON.stringify(context)).toEqual([]);
    }
  });

  it('never expires a backup the GFS rules keep: the default backstop follows the longest keep (monthly × 31 days)', () => {
    for (const context of [
      { retentionCount: 7, retentionDaily: 14, retentionWeekly: 8, retentionMonthly: 12, timeZone: 'Pacific/Auckland', scheduleHour: 3 },
      { retentionCount: 3, retentionWeekly: 20 },
      { retentionCount: 2, retentionMonthly: 3, backstopExpirationDays: 95 },
    ]) {
      const rules = synthRules(context);
      expect(rules.gfs.daily + rules.gfs.weekly + rules.gfs.monthly, JSON.stringify(context)).toBeGreaterThan(0);
      // Long enough for the oldest monthly backup to reach its age before it is pruned.
      const goodNights = 420;
      const out = simulate({ ...rules, goodNights, runMinute: 23 * 60 + 45, totalDays: goodNights + 400 });
      expect(out.expiredBeforePrune, JSON.stringify(context)).toEqual([]);
      expect(out.failedNightsSurvived, JSON.stringify(context)).toBeGreaterThanOrEqual(REQUIRED_FAILED_NIGHTS);
    }
  });

  it('keeps every pruned version recoverable for the noncurrent period, a mistaken prune included', () => {
    const out = simulate({ ...defaults, goodNights: 30, runMinute: 2 * 60, mistakenPruneAfterNight: 25, totalDays: 30 + 200 });
    expect(out.shortestNoncurrentDays).toBeGreaterThanOrEqual(DEFAULT_NONCURRENT_VERSION_DAYS);
    expect(DEFAULT_NONCURRENT_VERSION_DAYS).toBeGreaterThanOrEqual(30);
  });

  it('still aborts incomplete multipart uploads after a day and removes expired delete markers', () => {
    expect(defaults.rules).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 } }),
        expect.objectContaining({ ExpiredObjectDeleteMarker: true }),
      ]),
    );
  });

  it('the README states the worst case the model computes', () => {
    const readme = readFileSync(resolve(REPO_ROOT, 'README.md'), 'utf8');
    expect(readme).toContain(`**${worstCase()} failed nights**`);
    expect(readme).toContain(`**${DEFAULT_BACKSTOP_EXPIRATION_DAYS + DEFAULT_NONCURRENT_VERSION_DAYS} days**`);
  });
});
