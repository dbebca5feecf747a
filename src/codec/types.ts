// What every compression codec module provides, so the registry in index.ts can treat them alike.
import type { Duplex } from 'node:stream';
import type { StreamGroup } from './pool.js';

/** Accepted `--compress-level` values of one codec. */
export interface LevelRange {
  min: number;
  max: number;
  /** Level used when none is given. */
  default: number;
}

/** One compression codec writing its standard frame format (readable by the codec's own CLI tool). */
export interface Codec {
  /** Name as in `--compress` and in stored metadata. */
  readonly name: string;
  readonly levels: LevelRange;
  /** A fresh stream that compresses at `level` (already validated against `levels`); `group`: its pipeline's codec streams. */
  compressor(level: number, group?: StreamGroup): Promise<Duplex>;
  /** A fresh stream that decompresses; errors on malformed input. */
  decompressor(group?: StreamGroup): Promise<Duplex>;
}
