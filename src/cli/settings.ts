// Turns parsed options into what the backends and codecs take, so entry points stay a few lines long.
import type { BackendSettings } from '../backend/registry.js';
import type { DecodeOptions, EncodeOptions } from '../codec/index.js';
import type { Logger } from '../core/log.js';
import type { CommonOptions } from './options.js';

/** Backend settings from the common options; `log` receives backend warnings (e.g. S3 conditional-write fallback). */
export function backendSettings(options: CommonOptions, log?: Logger): BackendSettings {
  return { fileMode: options.fileMode, dirMode: options.dirMode, nfsFsTypes: options.nfsFsTypes, extra: options.raw, ...(log === undefined ? {} : { s3: { logger: log } }) };
}

/** How archive encodes stored bytes. */
export function encodeOptions(_options: CommonOptions): EncodeOptions {
  return { compress: 'none' };
}

/** How restore and verify decode stored bytes. */
export async function decodeOptions(_options: CommonOptions): Promise<DecodeOptions> {
  return {};
}
