// The people-readable rendering of a verify report: timelines as ranges, gaps, backups with their restorable windows.
import type { RangeReport, VerifyReport } from './verify.js';

const plural = (count: number, word: string): string => `${count} ${word}${count === 1 ? '' : 's'}`;

/** Formats a byte count in binary units for summaries (exact counts are in --json). */
export function formatBytes(bytes: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} bytes` : `${value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`;
}

const range = (entry: RangeReport): string => (entry.count === 1 ? entry.first : `${entry.first} .. ${entry.last}`);

/** Renders a verify report as the text `walvault verify` prints. */
export function formatVerifyReport(report: VerifyReport): string {
  const lines: string[] = [];
  const scope = [
    report.scope.backup === null ? null : `backup "${report.scope.backup}"`,
    report.scope.from === null ? null : `from ${report.scope.from}`,
    report.scope.to === null ? null : `to ${report.scope.to}`,
  ].filter((part) => part !== null);
  lines.push(`repository: ${report.repository}`);
  lines.push(
    `check: ${report.mode === 'quick' ? 'quick (names, sizes, recorded hashes; no content read)' : 'full (every object read and hashed)'}${scope.length > 0 ? `, ${scope.join(', ')}` : ''}`,
  );
  const objects = report.objects;
  const kinds = [
    plural(objects.segments, 'segment'),
    objects.partials > 0 ? plural(objects.partials, 'partial segment') : null,
    plural(objects.histories, 'timeline history file'),
    plural(objects.backups, 'backup history file'),
    objects.other > 0 ? plural(objects.other, 'other file') : null,
    objects.temp > 0 ? plural(objects.temp, 'temporary file') : null,
  ].filter((part) => part !== null);
  lines.push(`objects: ${objects.total} (${kinds.join(', ')}${objects.documents > 0 ? ', walvault.json' : ''}); ${objects.checked} checked${report.mode === 'full' ? `, ${formatBytes(objects.bytesRead)} read` : ''} in ${(report.durationMs / 1000).toFixed(1)} s`);
  for (const cluster of report.clusters) {
    lines.push(
      `cluster: database system ${cluster.systemIdentifier}, PostgreSQL ${cluster.serverVersions.join('/')}, ${formatBytes(cluster.segmentSize)} segments, ${plural(cluster.segments, 'segment')}${report.clusters.length > 1 && cluster.recorded ? ' (the repository\'s own)' : ''}`,
    );
  }
  if (report.clusters.length === 0 && report.segmentSize !== null) lines.push(`segment size: ${formatBytes(report.segmentSize)}`);

  lines.push('', 'timelines:');
  if (report.timelines.length === 0) lines.push('  (none: no WAL segments in scope)');
  for (const timeline of report.timelines) {
    const origin = timeline.parent === null ? '' : `  (from timeline ${timeline.parent} at ${timeline.switchPoint})`;
    const none = report.scope.backup === null && report.scope.from === null && report.scope.to === null ? 'no segments archived yet' : 'no segments in scope';
    const ranges = timeline.ranges.length === 0 ? none : timeline.ranges.map((entry) => `${range(entry)} (${plural(entry.count, 'segment')})`).join(', ');
    lines.push(`  ${timeline.timeline}: ${ranges}${origin}`);
    for (const gap of timeline.gaps) lines.push(`     MISSING ${range(gap)} (${plural(gap.count, 'segment')})`);
    for (const name of timeline.damaged) lines.push(`     DAMAGED ${name} (see problems)`);
    for (const partial of timeline.partials) lines.push(`     partial: ${partial}`);
  }

  lines.push('', 'backups:');
  if (report.backups.length === 0) lines.push('  (none: no backup history files in scope)');
  for (const backup of report.backups) {
    lines.push(`  "${backup.label}" (${backup.file})`);
    lines.push(`     WAL ${backup.startLsn} .. ${backup.stopLsn} on timeline ${backup.timeline}${backup.stopTime === null ? '' : `, consistent from ${backup.stopTime}`}`);
    if (!backup.restorable) {
      const missing = [...backup.missing.map((entry) => `${range(entry)} missing`), ...backup.damaged.map((name) => `${name} damaged`)];
      lines.push(`     NOT RESTORABLE: ${missing.join(', ')}`);
      continue;
    }
    const first = backup.windows[0];
    if (first === undefined) {
      lines.push('     restorable, but no timeline to follow (see problems)');
      continue;
    }
    backup.windows.forEach((window, at) => {
      const archived = window.lastSegmentArchivedAt === null ? '' : `, archived ${window.lastSegmentArchivedAt}`;
      const latest = window.latest ? "  <- recovery_target_timeline = 'latest'" : '';
      lines.push(`     ${at === 0 ? 'restorable up to' : '             or'} ${window.untilLsn} on timeline ${window.timeline} (last segment ${window.lastSegment}${archived})${latest}`);
    });
  }

  if (report.baseBackups.length > 0) {
    lines.push('', 'base backups (walvault backup):');
    for (const backup of report.baseBackups) {
      const state = !backup.complete ? 'INCOMPLETE (no completion marker; never restored)' : backup.restorable ? 'complete, restorable' : 'complete but NOT RESTORABLE (see problems)';
      const range = backup.startWal === null ? '' : `, WAL ${backup.startWal} .. ${backup.stopWal}`;
      lines.push(`  ${backup.id}: ${state}${range}, ${plural(backup.objects, 'object')}, ${formatBytes(backup.storedSize)} stored`);
    }
  }

  if (report.findings.length > 0) {
    lines.push('', 'problems:');
    for (const finding of report.findings) {
      lines.push(`  ${finding.severity === 'error' ? 'ERROR' : 'WARNING'} [${finding.code}] ${finding.message}`);
      if (finding.hint !== undefined) lines.push(`     HINT: ${finding.hint}`);
    }
  }
  lines.push('');
  if (report.ok) {
    lines.push(report.warnings === 0 ? 'result: OK, nothing wrong' : `result: OK with ${plural(report.warnings, 'warning')} (nothing that stops a restore)`);
  } else {
    lines.push(`result: FAILED, ${plural(report.errors, 'error')}${report.warnings > 0 ? `, ${plural(report.warnings, 'warning')}` : ''}`);
  }
  return `${lines.join('\n')}\n`;
}
