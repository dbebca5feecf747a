// Turns parsed options into what the backends and codecs take, so entry points stay a few lines long.
import type { BackendSettings } from '../backend/registry.js';
import type { DecodeOptions, EncodeOptions } from '../codec/index.js';
import type { CommonOptions } from './options.js';

/** Backend settings from the common options. */
export function backendSettings(options: CommonOptions): BackendSettings {
  return { fileMode: options.fileMode, dirMode: options.dirMode, nfsFsTypes: options.nfsFsTypes, extra: options.raw };
}

/** How archive encodes stored bytes. */
export function encodeOptions(_options: CommonOptions): EncodeOptions {
  return { compress: 'none' };
}

/** How restore and verify decode stored bytes. */
export async function decodeOptions(_options: CommonOptions): Promise<DecodeOptions> {
  return {};
}
