/** A backup run's result as text: `run`'s summary, and `invoke`'s for the function's answer (no engine code loads for it). */
import type { RunResult } from '../engine/backup/backup.ts';
import type { BackupPlan } from '../engine/backup/plan.ts';
import { formatBytes, formatDuration } from './output.ts';

export function describeRun(r: RunResult): string {
  const lines = [`backup ${r.status}`];
  for (const b of r.backups) lines.push(`  ${b.database}: ${formatBytes(b.bytes)} in ${formatDuration(b.durationMs)}, sha256 ${b.sha256}\n    ${b.key}`);
  for (const f of r.failures) lines.push(`  FAILED ${f.database} (${f.stage}): ${f.message}${f.hint ? `\n    what to do: ${f.hint}` : ''}`);
  if (r.pruned.length > 0) lines.push(`  ${r.dryRun ? 'would prune' : 'pruned'} ${r.pruned.length} object(s):`, ...r.pruned.map((k) => `    ${k}`));
  return lines.join('\n');
}

/** `backup --dry-run`'s plan as text. */
export function describePlan(p: BackupPlan): string {
  const lines = [`dry run: nothing was written${p.status === 'ready' ? '' : '; the backup would FAIL'}${p.pgDumpVersion ? ` (pg_dump ${p.pgDumpVersion})` : ''}`];
  for (const b of p.backups) {
    lines.push(`  ${b.database}: server ${b.serverVersion}${b.databaseBytes === null ? '' : `, ${formatBytes(b.databaseBytes)} on disk`}\n    would write ${b.key}`);
    if (p.prune) lines.push(b.wouldPrune.length === 0 ? '    pruning would delete nothing' : `    pruning would delete ${b.wouldPrune.length} object(s):`, ...b.wouldPrune.map((k) => `      ${k}`));
    for (const l of b.locked) lines.push(`    left in place, under Object Lock: ${l.key}`);
  }
  if (p.globals) lines.push(`  globals: would write ${p.globals.key}`, ...(p.prune && p.globals.wouldPrune.length > 0 ? [`    pruning would delete ${p.globals.wouldPrune.length} object(s):`, ...p.globals.wouldPrune.map((k) => `      ${k}`)] : []));
  if (p.staleUploads.length > 0) lines.push(`  would abort ${p.staleUploads.length} stale multipart upload(s):`, ...p.staleUploads.map((k) => `    ${k}`));
  if (!p.prune) lines.push('  --no-prune: no prune step (the lifecycle rule still expires old backups)');
  for (const f of p.failures) lines.push(`  FAILED ${f.database} (${f.stage}): ${f.message}${f.hint ? `\n    what to do: ${f.hint}` : ''}`);
  return lines.join('\n');
}
