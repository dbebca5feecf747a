// The renderings of a status report: text for people, the Prometheus text exposition format for
// node_exporter's textfile collector (metric names and meanings in src/policy/status.md).
import type { EventView, RecordView, StatusReport } from './status.js';
import { formatBytes } from './verify-text.js';

/** An age for people: seconds, minutes or hours. */
function formatAge(seconds: number): string {
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/** One recorded event on one line. */
function eventLine(event: EventView | null): string {
  if (event === null) return 'none recorded';
  return `"${event.file}" ${formatAge(event.ageSeconds)} ago (${event.time}), exit ${event.exitCode}: ${event.message}`;
}

/** The record lines of one program. */
function recordLines(name: string, record: RecordView): string[] {
  const counters = record.counters;
  const extra = name === 'archive' ? `, ${counters.skipped} skipped (switch file missing)` : `, ${counters.missing} not found`;
  return [
    `  ${name} last success:  ${eventLine(record.lastSuccess)}`,
    `  ${name} last failure:  ${eventLine(record.lastFailure)}`,
    `  ${name} counters:      ${counters.successes} succeeded, ${counters.failures} failed${extra}`,
  ];
}

/** The report as text for people (stdout of `walvault status`). */
export function formatStatusText(report: StatusReport): string {
  const lines: string[] = [`walvault status at ${report.time}`];
  const archive = report.archive;
  if (archive !== null) {
    const ready = archive.ready;
    lines.push('', `archive side (data directory "${archive.pgdata}", spool "${archive.spool}"):`);
    lines.push(
      ready.files === 0
        ? '  waiting:      nothing (no .ready file)'
        : `  waiting:      ${ready.files} file${ready.files === 1 ? '' : 's'}, ${formatBytes(ready.bytes)}; oldest "${ready.oldestFile}" waiting for ${formatAge(ready.lagSeconds)}`,
    );
    lines.push(`  last .done:   ${archive.lastDone === null ? 'none in pg_wal' : `"${archive.lastDone.file}" at ${archive.lastDone.time}`}`);
    const pusher = archive.pusher;
    lines.push(`  pusher:       ${pusher.running ? `${pusher.state} (pid ${pusher.pid})` : 'not running'}; ${pusher.claims.length} claim${pusher.claims.length === 1 ? '' : 's'}${pusher.claims.length > 0 ? ` (${pusher.claims.map((name) => `"${name}"`).join(', ')})` : ''}, ${pusher.markers} marker${pusher.markers === 1 ? '' : 's'} waiting`);
    if (archive.switchOffSince !== null) lines.push(`  switch:       off (switch file missing) since ${archive.switchOffSince}: WAL is not being archived`);
    lines.push(`  record since: ${archive.recordSince ?? 'nothing recorded yet'}`);
    lines.push(...recordLines('archive', archive.archive), ...recordLines('restore', archive.restore));
  }
  const repository = report.repository;
  if (repository !== null) {
    lines.push('', `repository "${repository.repository}":`);
    if (repository.timelines.length === 0) lines.push('  no segment archived yet');
    for (const timeline of repository.timelines) {
      lines.push(`  timeline ${timeline.timeline}: newest "${timeline.newestFile}" stored ${formatAge(timeline.ageSeconds)} ago (${timeline.storedAt}); ${timeline.segments} segment${timeline.segments === 1 ? '' : 's'}`);
    }
    if (repository.newestBackup !== undefined) lines.push(repository.newestBackup === null ? '  newest base backup: none taken with walvault backup' : `  newest base backup: ${repository.newestBackup.id}, completed ${repository.newestBackup.completedAt} (${repository.newestBackup.ageSeconds} s ago), WAL up to ${repository.newestBackup.stopWal}`);
    if (repository.backups !== null) {
      if (repository.backups.length === 0) lines.push('  backups: none in the repository');
      for (const backup of repository.backups) {
        const windows = backup.windows.map((window) => `timeline ${window.timeline} until ${window.untilLsn} ("${window.lastSegment}")${window.latest ? ' (latest)' : ''}`);
        lines.push(`  backup "${backup.label}" (${backup.file}): ${backup.restorable ? `restorable, ${windows.join('; ')}` : 'NOT restorable (WAL missing or damaged: run walvault verify --backup)'}`);
      }
    }
  }
  const server = report.server;
  if (server !== null) {
    lines.push('', `server (pg_stat_archiver${server.inRecovery ? ', in recovery' : ''}):`);
    lines.push(`  archived: ${server.archivedCount}, last "${server.lastArchivedWal ?? '-'}" at ${server.lastArchivedTime ?? '-'}`);
    lines.push(`  failed:   ${server.failedCount}, last "${server.lastFailedWal ?? '-'}" at ${server.lastFailedTime ?? '-'}`);
  }
  if (report.errors.length > 0) lines.push('', ...report.errors.map((error) => `ERROR  ${error}`));
  if (report.alerts.length > 0) lines.push('', ...report.alerts.map((alert) => `ALERT  ${alert.threshold}: ${alert.message}`));
  lines.push('', `result: ${report.ok ? 'OK' : !report.up ? 'ERROR, a part could not be read' : 'ALERT, a threshold is crossed'}`);
  return `${lines.join('\n')}\n`;
}

/** A label value escaped as the exposition format wants (backslash, double quote, newline). */
const labelValue = (value: string): string => value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

/** Seconds since the epoch of an ISO time. */
const epoch = (time: string): number => new Date(time).getTime() / 1000;

/** The report in the Prometheus text exposition format (version 0.0.4), one HELP and TYPE per metric. */
export function formatStatusPrometheus(report: StatusReport): string {
  const out: string[] = [];
  const metric = (name: string, type: 'gauge' | 'counter', help: string, samples: Array<{ labels?: Record<string, string>; value: number }>): void => {
    if (samples.length === 0) return;
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const sample of samples) {
      const labels = Object.entries(sample.labels ?? {});
      const text = labels.length === 0 ? '' : `{${labels.map(([key, value]) => `${key}="${labelValue(value)}"`).join(',')}}`;
      out.push(`${name}${text} ${Number.isFinite(sample.value) ? sample.value : sample.value > 0 ? '+Inf' : 'NaN'}`);
    }
  };
  const one = (value: number | null | undefined): Array<{ value: number }> => (value === null || value === undefined ? [] : [{ value }]);
  metric('walvault_up', 'gauge', 'whether walvault status could read every part it was asked for (1) or not (0)', [{ value: report.up ? 1 : 0 }]);
  metric('walvault_status_ok', 'gauge', 'whether every part was read and no threshold given to walvault status is crossed (1) or not (0)', [{ value: report.ok ? 1 : 0 }]);
  const archive = report.archive;
  if (archive !== null) {
    metric('walvault_archive_ready_files', 'gauge', 'WAL files waiting to be archived (.ready in pg_wal/archive_status)', [{ value: archive.ready.files }]);
    metric('walvault_archive_ready_bytes', 'gauge', 'bytes of the WAL files waiting to be archived', [{ value: archive.ready.bytes }]);
    metric('walvault_archive_lag_seconds', 'gauge', 'how long the oldest WAL file waiting to be archived has waited (0 when none waits)', [{ value: archive.ready.lagSeconds }]);
    metric('walvault_archive_last_done_timestamp_seconds', 'gauge', 'when PostgreSQL marked the newest .done file still in pg_wal', one(archive.lastDone === null ? null : epoch(archive.lastDone.time)));
    metric('walvault_archive_pusher_running', 'gauge', 'whether the background pusher runs (1) or not (0; it exits when idle)', [{ value: archive.pusher.running ? 1 : 0 }]);
    metric('walvault_archive_pusher_claims', 'gauge', 'files a live walvault process is storing right now', [{ value: archive.pusher.claims.length }]);
    metric('walvault_archive_markers_waiting', 'gauge', 'push-ahead markers in the spool not yet swept', [{ value: archive.pusher.markers }]);
    metric('walvault_archive_switch_off', 'gauge', 'whether --only-if-exists found its switch file missing at the last archive call (1: WAL is not archived)', [{ value: archive.switchOffSince === null ? 0 : 1 }]);
    metric('walvault_record_start_timestamp_seconds', 'gauge', 'when walvault began recording in this spool (the counters count from here)', one(archive.recordSince === null ? null : epoch(archive.recordSince)));
    for (const [side, record] of [['archive', archive.archive], ['restore', archive.restore]] as const) {
      metric(`walvault_${side}_last_success_timestamp_seconds`, 'gauge', `when walvault-${side} last succeeded, as walvault recorded it`, one(record.lastSuccess === null ? null : epoch(record.lastSuccess.time)));
      metric(`walvault_${side}_last_failure_timestamp_seconds`, 'gauge', `when walvault-${side} last failed, as walvault recorded it`, one(record.lastFailure === null ? null : epoch(record.lastFailure.time)));
      metric(`walvault_${side}_last_failure_exit_code`, 'gauge', `exit code of walvault-${side}'s last recorded failure`, one(record.lastFailure?.exitCode));
      metric(`walvault_${side}_successes_total`, 'counter', side === 'archive' ? 'files stored durably (or found stored, identical) by walvault-archive or its pusher since the record began' : 'files walvault-restore delivered since the record began', [{ value: record.counters.successes }]);
      metric(`walvault_${side}_failures_total`, 'counter', `failed walvault-${side} calls since the record began`, [{ value: record.counters.failures }]);
    }
    metric('walvault_archive_skipped_total', 'counter', 'archive calls answered 0 without storing because the --only-if-exists switch file was missing', [{ value: archive.archive.counters.skipped }]);
    metric('walvault_restore_missing_total', 'counter', 'restore calls answered "not found" (normal at the end of recovery)', [{ value: archive.restore.counters.missing }]);
  }
  const repository = report.repository;
  if (repository !== null) {
    metric('walvault_repository_newest_segment_timestamp_seconds', 'gauge', 'when the newest segment of each timeline was stored in the repository', repository.timelines.map((timeline) => ({ labels: { timeline: String(timeline.timeline) }, value: epoch(timeline.storedAt) })));
    metric('walvault_repository_newest_segment_age_seconds', 'gauge', 'age of the newest segment of each timeline in the repository', repository.timelines.map((timeline) => ({ labels: { timeline: String(timeline.timeline) }, value: timeline.ageSeconds })));
    metric('walvault_repository_segments', 'gauge', 'segments of each timeline in the repository', repository.timelines.map((timeline) => ({ labels: { timeline: String(timeline.timeline) }, value: timeline.segments })));
    if (repository.newestBackup != null) {
      metric('walvault_base_backup_newest_age_seconds', 'gauge', 'age of the newest complete base backup taken with walvault backup', [{ labels: { id: repository.newestBackup.id }, value: repository.newestBackup.ageSeconds }]);
    }
    if (repository.backups !== null) {
      metric('walvault_backup_restorable', 'gauge', 'whether each of the newest backups has all the WAL it needs (1) or not (0)', repository.backups.map((backup) => ({ labels: { label: backup.label, file: backup.file }, value: backup.restorable ? 1 : 0 })));
    }
  }
  const server = report.server;
  if (server !== null) {
    metric('walvault_server_archived_total', 'counter', 'pg_stat_archiver.archived_count', [{ value: server.archivedCount }]);
    metric('walvault_server_failed_total', 'counter', 'pg_stat_archiver.failed_count', [{ value: server.failedCount }]);
    metric('walvault_server_last_archived_timestamp_seconds', 'gauge', 'pg_stat_archiver.last_archived_time', one(server.lastArchivedTime === null ? null : epoch(server.lastArchivedTime)));
    metric('walvault_server_last_failed_timestamp_seconds', 'gauge', 'pg_stat_archiver.last_failed_time', one(server.lastFailedTime === null ? null : epoch(server.lastFailedTime)));
    metric('walvault_server_in_recovery', 'gauge', 'whether the server is in recovery (a standby) (1) or not (0)', [{ value: server.inRecovery ? 1 : 0 }]);
  }
  metric('walvault_threshold_crossed', 'gauge', 'thresholds given to walvault status that are crossed (one sample per crossed threshold)', report.alerts.map((alert) => ({ labels: { threshold: alert.threshold }, value: 1 })));
  return `${out.join('\n')}\n`;
}
