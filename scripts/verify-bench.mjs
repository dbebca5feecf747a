#!/usr/bin/env node
// Measures `walvault verify` on a generated local repository of N segments (default 2,000 of 1 MiB):
// contiguous timeline-1 segments with real long page headers and recorded hashes, plus a backup
// history file. Usage: npm run build && node scripts/verify-bench.mjs [--segments N] [--segment-mib M] [--parallel P] [--keep]
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { hashBuffer } from '../dist/core/hash.js';
import { createLocalBackend } from '../dist/backend/local.js';
import { verifyArchive } from '../dist/policy/verify.js';
import { objectKey, segmentFileName } from '../dist/wal/names.js';

const { values } = parseArgs({ options: { segments: { type: 'string', default: '2000' }, 'segment-mib': { type: 'string', default: '1' }, parallel: { type: 'string', default: '6' }, keep: { type: 'boolean', default: false } } });
const count = Number(values.segments);
const segmentSize = Number(values['segment-mib']) * 1024 * 1024;
const root = await mkdtemp(path.join(tmpdir(), 'walvault-verify-bench-'));
const sysid = 7000000000000000042n;

const started = Date.now();
const body = Buffer.alloc(segmentSize);
for (let index = 0; index < count; index += 1) {
  const segno = BigInt(index + 1);
  const name = segmentFileName(1, segno, segmentSize);
  body.fill(0, 0, 64);
  body.writeUInt16LE(0xd110, 0);
  body.writeUInt16LE(0x2, 2);
  body.writeUInt32LE(1, 4);
  body.writeBigUInt64LE(segno * BigInt(segmentSize), 8);
  body.writeBigUInt64LE(sysid, 24);
  body.writeUInt32LE(segmentSize, 32);
  body.writeUInt32LE(8192, 36);
  body.writeUInt32LE(index, 48); // differs per segment, like real WAL
  const file = path.join(root, ...objectKey(name).split('/'));
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, body);
  const meta = { version: 1, contentHash: await hashBuffer(body), contentSize: segmentSize, codec: 'none', encryption: 'none' };
  await writeFile(`${file}~meta`, `${JSON.stringify(meta)}\n`);
}
const startName = segmentFileName(1, 1n, segmentSize);
const backup = Buffer.from(`START WAL LOCATION: 0/${segmentSize.toString(16).toUpperCase()}028 (file ${startName})\nSTOP WAL LOCATION: 0/${segmentSize.toString(16).toUpperCase()}100 (file ${startName})\nLABEL: bench\nSTART TIMELINE: 1\n`.replace(/0\/(\w+)028/, `0/${(segmentSize + 0x28).toString(16).toUpperCase()}`).replace(/0\/(\w+)100/, `0/${(segmentSize + 0x100).toString(16).toUpperCase()}`));
const backupFile = path.join(root, ...objectKey(`${startName}.00000028.backup`).split('/'));
await writeFile(backupFile, backup);
await writeFile(`${backupFile}~meta`, `${JSON.stringify({ version: 1, contentHash: await hashBuffer(backup), contentSize: backup.length, codec: 'none', encryption: 'none' })}\n`);
console.log(`generated ${count} segments of ${segmentSize} bytes in ${((Date.now() - started) / 1000).toFixed(1)} s at ${root}`);

const backend = createLocalBackend({ root });
for (const quick of [true, false]) {
  const t0 = Date.now();
  const report = await verifyArchive(backend, { quick, concurrency: Number(values.parallel) });
  const seconds = (Date.now() - t0) / 1000;
  const mib = (report.objects.bytesRead / 1048576).toFixed(0);
  console.log(`${quick ? 'quick' : 'full '} verify: ${report.objects.checked} objects, ${mib} MiB read, ${seconds.toFixed(1)} s (${(report.objects.checked / seconds).toFixed(0)} objects/s), ok=${report.ok}, findings=${report.findings.length}, backup window until ${report.backups[0]?.windows[0]?.untilLsn}`);
}
if (!values.keep) await rm(root, { recursive: true, force: true });
