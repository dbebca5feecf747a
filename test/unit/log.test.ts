// Log lines: one line per event, and stderr written directly (fd 2, writeSync) without losing or
// reordering lines when the reader is slow.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/core/log.js';

const distLog = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../dist/core/log.js');

describe('createLogger', () => {
  it('writes one line per event, prefixed with the program and level, by verbosity', () => {
    const lines: string[] = [];
    const quiet = createLogger('walvault-archive', 'quiet', (line) => lines.push(line));
    quiet.debug('d');
    quiet.info('i');
    quiet.warn('two\nlines');
    quiet.error('e');
    expect(lines).toEqual(['walvault-archive: warning: two lines\n', 'walvault-archive: error: e\n']);
    lines.length = 0;
    const verbose = createLogger('walvault-restore', 'verbose', (line) => lines.push(line));
    verbose.debug('d');
    verbose.info('i');
    expect(lines).toEqual(['walvault-restore: debug: d\n', 'walvault-restore: info: i\n']);
  });

  it('keeps the one format for a background worker, marking its lines with the worker and its pid', () => {
    const lines: string[] = [];
    const worker = createLogger('walvault-archive', 'normal', (line) => lines.push(line), 'pusher 6518');
    worker.info('pushed "000000010000000000000001"');
    worker.error('e');
    expect(lines).toEqual(['walvault-archive [pusher 6518]: info: pushed "000000010000000000000001"\n', 'walvault-archive [pusher 6518]: error: e\n']);
  });
});

describe('writeStderr (the default writer)', () => {
  it.each([
    ['a blocking pipe', ''],
    // Opening fd 2 as a socket makes libuv switch it to non-blocking (the file description is shared):
    // writeSync then meets EAGAIN once the pipe is full, and the lines must go on through process.stderr.
    ['a non-blocking pipe', "new (await import('node:net')).Socket({ fd: 2, readable: false, writable: true }).unref();"],
  ])('delivers every line, in order, through %s to a reader that starts reading only after it filled up', async (_, prelude) => {
    const count = 20_000;
    const script = `import { writeStderr } from ${JSON.stringify(pathToFileURL(distLog).href)};
      ${prelude}
      for (let i = 0; i < ${count}; i++) writeStderr('line ' + i + ' ' + 'x'.repeat(60) + '\\n');`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr.pause();
    // ~1.4 MiB of lines against a pipe of 64 KiB or so: the writer has to wait (or queue) for us.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const chunks: Buffer[] = [];
    child.stderr.on('data', (chunk: Buffer) => chunks.push(chunk));
    child.stderr.resume();
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code).toBe(0);
    const lines = Buffer.concat(chunks).toString('utf8').split('\n').filter((line) => line !== '');
    expect(lines).toHaveLength(count);
    expect(lines.every((line, i) => line.startsWith(`line ${i} `))).toBe(true);
  });
});
