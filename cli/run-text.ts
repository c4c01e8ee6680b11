/** A backup run's result as text: `run`'s summary, and `invoke`'s for the function's answer (no engine code loads for it). */
import type { RunResult } from '../engine/backup/backup.ts';
import { formatBytes, formatDuration } from './output.ts';

export function describeRun(r: RunResult): string {
  const lines = [`backup ${r.status}`];
  for (const b of r.backups) lines.push(`  ${b.database}: ${formatBytes(b.bytes)} in ${formatDuration(b.durationMs)}, sha256 ${b.sha256}\n    ${b.key}`);
  for (const f of r.failures) lines.push(`  FAILED ${f.database} (${f.stage}): ${f.message}${f.hint ? `\n    what to do: ${f.hint}` : ''}`);
  if (r.pruned.length > 0) lines.push(`  ${r.dryRun ? 'would prune' : 'pruned'} ${r.pruned.length} object(s):`, ...r.pruned.map((k) => `    ${k}`));
  return lines.join('\n');
}
