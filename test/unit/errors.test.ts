import { describe, expect, it } from 'vitest';
import { EXIT_CODES, EXIT_CODE_MEANINGS, exitCodeOf, fromSystemError, WalvaultError } from '../../src/core/errors.js';
import { parseRepoUrl } from '../../src/backend/registry.js';

describe('error catalogue', () => {
  it('keeps every code within 1..125 except the deliberate recovery abort', () => {
    for (const [kind, code] of Object.entries(EXIT_CODES)) {
      if (kind === 'abort-recovery') expect(code).toBeGreaterThan(125);
      else expect(code).toBeGreaterThanOrEqual(1), expect(code).toBeLessThanOrEqual(125);
    }
    expect(new Set(Object.values(EXIT_CODES)).size).toBe(Object.keys(EXIT_CODES).length);
    expect(Object.keys(EXIT_CODE_MEANINGS).sort()).toEqual(Object.keys(EXIT_CODES).sort());
  });

  it('maps anything unexpected to the internal code, never above 125', () => {
    expect(exitCodeOf(new TypeError('boom'))).toBe(70);
    expect(exitCodeOf('string')).toBe(70);
    expect(exitCodeOf(new WalvaultError('mismatch', 'x'))).toBe(4);
  });

  it('maps system errors to kinds with the path in quotes and a hint', () => {
    const full = fromSystemError(Object.assign(new Error('x'), { code: 'ENOSPC' }), 'write', '/repo/f');
    expect(full.kind).toBe('no-space');
    expect(full.oneLine()).toBe('could not write "/repo/f": no space left on device; HINT: free space in the repository or grow its filesystem; PostgreSQL keeps the WAL and retries');
    expect(fromSystemError(Object.assign(new Error('x'), { code: 'EACCES' }), 'write', '/r').kind).toBe('backend');
    expect(fromSystemError(Object.assign(new Error('x'), { code: 'ESTALE' }), 'write', '/r').transient).toBe(true);
    expect(fromSystemError(Object.assign(new Error('x'), { code: 'EACCES' }), 'write', '/r').transient).toBe(false);
  });
});

describe('repository URLs', () => {
  it('understands every documented form', () => {
    expect(parseRepoUrl('/var/lib/walvault')).toEqual({ scheme: 'local', target: '/var/lib/walvault' });
    expect(parseRepoUrl('file:///var/lib/walvault/')).toEqual({ scheme: 'local', target: '/var/lib/walvault' });
    expect(parseRepoUrl('nfs:///mnt/archive')).toEqual({ scheme: 'nfs', target: '/mnt/archive' });
    expect(parseRepoUrl('s3://my-bucket/pg/main')).toEqual({ scheme: 's3', target: 'my-bucket/pg/main' });
  });

  it.each(['relative/dir', 'file://host/dir', 'ftp://x/y', 's3://', ''])('refuses %j with a usage error', (url) => {
    expect(() => parseRepoUrl(url)).toThrow(WalvaultError);
  });
});
