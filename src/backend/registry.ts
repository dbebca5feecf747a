// Maps a --repo URL to a backend; adding a backend is one file plus one entry here.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WalvaultError } from '../core/errors.js';
import type { S3BackendOptions } from './s3.js';
import type { Backend } from './types.js';

/** Every option a backend may read; each backend takes only its own. */
export interface BackendSettings {
  /** Mode of archived files (POSIX backends). */
  fileMode?: number;
  /** Mode of created directories (POSIX backends). */
  dirMode?: number;
  /** Filesystem types the NFS backend accepts. */
  nfsFsTypes?: readonly string[];
  /** Backend-specific options keyed by option name (e.g. the S3 options), passed through untouched. */
  extra?: Record<string, unknown>;
  /** S3 settings that are not command-line options (logger, part size), for the CLI and tests. */
  s3?: Partial<Omit<S3BackendOptions, 'bucket' | 'prefix'>>;
}

/** A parsed --repo URL: which backend and where. */
export interface RepoLocation {
  scheme: 'local' | 'nfs' | 's3';
  /** Absolute directory for local/nfs; `bucket/prefix` for s3. */
  target: string;
}

const usageHint = 'use --repo=/abs/dir, file:///abs/dir, nfs:///abs/dir or s3://bucket/prefix';

/** Parses a --repo value, refusing relative paths (PostgreSQL runs us from the data directory). */
export function parseRepoUrl(url: string): RepoLocation {
  const bad = (why: string): never => {
    throw new WalvaultError('usage', `invalid repository "${url}": ${why}`, { hint: usageHint });
  };
  if (url === '') bad('empty');
  if (url.startsWith('/')) return { scheme: 'local', target: path.normalize(url) };
  const match = /^([a-z0-9]+):\/\/(.*)$/.exec(url);
  if (!match) return bad('not an absolute path or a URL');
  const [, scheme, rest = ''] = match;
  if (scheme === 'file' || scheme === 'nfs') {
    if (!rest.startsWith('/')) bad('the path must be absolute (three slashes: file:///dir)');
    const directory = scheme === 'file' ? fileURLToPath(url) : path.normalize(decodeURIComponent(rest));
    return { scheme: scheme === 'file' ? 'local' : 'nfs', target: directory.replace(/(.)\/$/, '$1') };
  }
  if (scheme === 's3') {
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/.*)?$/.test(rest)) bad('expected s3://bucket or s3://bucket/prefix');
    return { scheme: 's3', target: rest.replace(/\/+$/, '') };
  }
  return bad(`unknown scheme "${scheme}"`);
}

/** Opens the backend a --repo URL names. The S3 backend (and the AWS SDK) is loaded only when used. */
export async function openBackend(url: string, settings: BackendSettings = {}): Promise<Backend> {
  const location = parseRepoUrl(url);
  switch (location.scheme) {
    case 'local': {
      const { createLocalBackend } = await import('./local.js');
      return createLocalBackend({ root: location.target, fileMode: settings.fileMode, dirMode: settings.dirMode });
    }
    case 'nfs': {
      const { createNfsBackend } = await import('./nfs.js');
      return createNfsBackend({ root: location.target, fileMode: settings.fileMode, dirMode: settings.dirMode, fsTypes: settings.nfsFsTypes });
    }
    case 's3': {
      const { createS3Backend, s3OptionsFromSettings } = await import('./s3.js');
      return createS3Backend({ ...s3OptionsFromSettings(location.target, settings.extra), ...settings.s3 });
    }
  }
}
