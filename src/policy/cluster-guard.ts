// Archive-time protection: one repository holds the WAL of one database system, recorded on first use.
import type { Backend, OpContext } from '../backend/types.js';
import { WalvaultError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import { isPlausibleLongHeader, parseLongPageHeader } from '../wal/header.js';
import { classify } from '../wal/names.js';

/** Key of the repository document that records which cluster the repository belongs to. */
export const REPO_DOCUMENT = 'walvault.json';

/** The cluster a repository belongs to, as recorded from the first segment archived into it. */
export interface ClusterRecord {
  /** Database system identifier (decimal, as pg_controldata prints it). */
  systemIdentifier: string;
  /** XLOG_PAGE_MAGIC of the server (tells the major version). */
  pageMagic: number;
  /** Major version for the magic, or null for a magic this walvault does not know. */
  serverVersion: string | null;
  segmentSize: number;
  blockSize: number;
  /** The segment whose header was recorded, and when. */
  recordedFrom: string;
  recordedAt: string;
}

/** The repository document: the current cluster record and, after --force-new-cluster, the ones it replaced. */
export interface RepoDocument {
  version: 1;
  cluster: ClusterRecord;
  previousClusters?: ClusterRecord[];
}

/** Reads the repository document; null when the repository has none yet (nothing archived, or an older walvault). */
export async function readRepoDocument(backend: Backend, ctx: OpContext): Promise<RepoDocument | null> {
  const text = await backend.readText(REPO_DOCUMENT, ctx);
  if (text === null) return null;
  try {
    const parsed = JSON.parse(text) as RepoDocument;
    if (parsed.version !== 1 || typeof parsed.cluster?.systemIdentifier !== 'string') throw new Error('unexpected layout');
    return parsed;
  } catch (error) {
    throw new WalvaultError('corrupt', `repository document "${backend.describe(REPO_DOCUMENT)}" is not valid: ${(error as Error).message}`, {
      hint: 'restore it from a copy, or archive with --force-new-cluster to record the cluster again',
      cause: error,
    });
  }
}

/** Options of guardCluster. */
export interface GuardOptions {
  /** %f of the file being archived; only segments and .partial files carry a header. */
  fileName: string;
  /** The file's first bytes (at least the 40 of the long page header for a check). */
  firstBytes: Uint8Array;
  /** Re-record the repository's cluster from this segment instead of refusing a different one. */
  forceNewCluster?: boolean;
  ctx: OpContext;
  log?: Logger;
}

/** What guardCluster did. */
export type GuardOutcome = 'recorded' | 'match' | 'reinitialised' | 'skipped';

const describeCluster = (record: Pick<ClusterRecord, 'systemIdentifier' | 'serverVersion' | 'pageMagic'>): string =>
  `database system ${record.systemIdentifier} (${record.serverVersion === null ? `unknown WAL magic 0x${record.pageMagic.toString(16)}` : `PostgreSQL ${record.serverVersion}`})`;

/**
 * Refuses a segment from another database system or server version than the repository records
 * (two clusters pointed at one archive), recording the cluster on first use. Files without a WAL
 * header (history, backup history) and segments whose first bytes are not a plausible long page header
 * for their name are let through ('skipped').
 */
export async function guardCluster(backend: Backend, options: GuardOptions): Promise<GuardOutcome> {
  const log = options.log ?? silentLogger;
  const kind = classify(options.fileName);
  if (kind !== 'segment' && kind !== 'partial') return 'skipped';
  const header = parseLongPageHeader(options.firstBytes);
  if (header === null || !isPlausibleLongHeader(options.fileName, header)) {
    // PostgreSQL never hands us such a file; whatever it is, it says nothing about a cluster.
    log.debug(`"${options.fileName}" does not start with a WAL long page header for its name; cluster check skipped`);
    return 'skipped';
  }
  const record: ClusterRecord = {
    systemIdentifier: header.systemIdentifier,
    pageMagic: header.magic,
    serverVersion: header.serverVersion,
    segmentSize: header.segmentSize,
    blockSize: header.blockSize,
    recordedFrom: options.fileName,
    recordedAt: new Date().toISOString(),
  };
  const fresh = (previous?: RepoDocument): string => {
    const previousClusters = previous === undefined ? undefined : [...(previous.previousClusters ?? []), previous.cluster];
    const document: RepoDocument = { version: 1, cluster: record, ...(previousClusters === undefined ? {} : { previousClusters }) };
    return `${JSON.stringify(document, null, 2)}\n`;
  };
  let existing = await readRepoDocument(backend, options.ctx);
  if (existing === null) {
    if (await backend.writeText(REPO_DOCUMENT, fresh(), options.ctx, { ifAbsent: true })) {
      log.info(`recorded ${describeCluster(record)} as the cluster of repository "${backend.describe(REPO_DOCUMENT)}"`);
      return 'recorded';
    }
    existing = await readRepoDocument(backend, options.ctx); // another archiver recorded it first
    if (existing === null) throw new WalvaultError('backend', `repository document "${backend.describe(REPO_DOCUMENT)}" vanished while being created`);
  }
  const recorded = existing.cluster;
  if (recorded.systemIdentifier === record.systemIdentifier && recorded.pageMagic === record.pageMagic) return 'match';
  if (options.forceNewCluster === true) {
    await backend.writeText(REPO_DOCUMENT, fresh(existing), options.ctx);
    log.warn(`--force-new-cluster: repository "${backend.describe(REPO_DOCUMENT)}" now records ${describeCluster(record)} instead of ${describeCluster(recorded)}`);
    return 'reinitialised';
  }
  const what = recorded.systemIdentifier === record.systemIdentifier ? 'server version' : 'database system';
  throw new WalvaultError(
    'cluster-mismatch',
    `refusing to archive "${options.fileName}": it comes from ${describeCluster(record)}, but repository "${backend.describe('')}" holds WAL of ${describeCluster(recorded)} (recorded ${recorded.recordedAt} from "${recorded.recordedFrom}"): different ${what}`,
    {
      hint: 'give each cluster its own repository (check archive_command in postgresql.conf); only if this repository is meant to start over with this cluster, archive once with --force-new-cluster',
    },
  );
}
