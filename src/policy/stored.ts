// Opening a stored object as its ORIGINAL bytes: decode by recorded metadata, or by sniffing the format when none was recorded.
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Backend, ObjectMeta, OpContext, StoredObject } from '../backend/types.js';
import { createDecoder, detectStoredFormat, type DecodeOptions } from '../codec/index.js';
import { STREAM_CHUNK } from '../core/hash.js';

/** A stored object opened for reading its original content. */
export interface DecodedObject {
  /** Original bytes (decompressed, decrypted). */
  content: Readable;
  /** Format the object was decoded with (recorded or detected). */
  format: { codec: string; encryption: string };
  /** Recorded metadata, or null when the object was written by another tool. */
  meta: ObjectMeta | null;
  storedSize: number;
  /** Resolves when the decode pipeline has finished; rejects with the decode error (wrong key, tampering). */
  finished: Promise<void>;
}

/** Reads the first chunk of a stream and puts it back, to sniff a format. */
async function peekFirstChunk(body: Readable): Promise<Buffer> {
  for (;;) {
    const chunk = body.read() as Buffer | null;
    if (chunk !== null) {
      body.unshift(chunk);
      return chunk;
    }
    if (body.readableEnded) return Buffer.alloc(0);
    await new Promise<void>((resolve, reject) => {
      const done = (): void => {
        body.off('readable', done);
        body.off('end', done);
        body.off('error', fail);
        resolve();
      };
      const fail = (error: Error): void => {
        body.off('readable', done);
        body.off('end', done);
        reject(error);
      };
      body.once('readable', done);
      body.once('end', done);
      body.once('error', fail);
    });
  }
}

/** Wraps an opened object so that reading it yields the original bytes. */
export async function decodeStored(object: StoredObject, decode: DecodeOptions): Promise<DecodedObject> {
  const format = object.meta ?? detectStoredFormat(await peekFirstChunk(object.body));
  const transforms = await createDecoder({ codec: format.codec, encryption: format.encryption }, decode);
  if (transforms.length === 0) {
    return { content: object.body, format, meta: object.meta, storedSize: object.storedSize, finished: Promise.resolve() };
  }
  const content = new PassThrough({ highWaterMark: STREAM_CHUNK });
  const finished = pipeline([object.body, ...transforms, content]);
  finished.catch(() => undefined);
  return { content, format: { codec: format.codec, encryption: format.encryption }, meta: object.meta, storedSize: object.storedSize, finished };
}

/** Opens a key as original bytes; null when missing. */
export async function openDecoded(backend: Backend, key: string, decode: DecodeOptions, ctx: OpContext): Promise<DecodedObject | null> {
  const object = await backend.read(key, ctx);
  return object === null ? null : decodeStored(object, decode);
}
