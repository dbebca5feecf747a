// End-to-end with compression and encryption on: the PITR scenario with zstd + age (the primary holds
// only the public key, recovery the identity file), and one recovery through an archive whose
// segments were written with every codec in turn (the setting changed while the server archived).

import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { installedWalvault, type InstalledWalvault } from '../support/install.js';
import { chownToPostgres, shQuote, usePg, type PgHarness } from '../support/pg.js';
import { corruptStoredFile, type LocalRepo } from './local-repo.js';
import { runPitrScenario } from './pitr.js';

/** Writes an age identity file readable only by postgres; returns it with its public key. */
async function makeKey(pg: PgHarness, name: string): Promise<{ identityFile: string; recipient: string }> {
  const dir = await pg.makeDir(`keys-${name}`, 0o700);
  const identity = await generateX25519Identity();
  const recipient = await identityToRecipient(identity);
  const identityFile = path.join(dir, 'key.txt');
  await fs.writeFile(identityFile, `# public key: ${recipient}\n${identity}\n`, { mode: 0o600 });
  await chownToPostgres(identityFile);
  return { identityFile, recipient };
}

runPitrScenario<LocalRepo>({
  name: 'a local repository with zstd compression and age encryption (settings from WALVAULT_* in the server environment)',
  makeRepo: async ({ pg }) => {
    const dir = await pg.makeDir('repo', 0o700);
    const { identityFile, recipient } = await makeKey(pg, 'pitr');
    return {
      url: dir,
      dir,
      env: { WALVAULT_COMPRESS: 'zstd', WALVAULT_COMPRESS_LEVEL: '6', WALVAULT_ENCRYPT_RECIPIENT: recipient, WALVAULT_DECRYPT_IDENTITY_FILE: identityFile },
    };
  },
  // Tampered ciphertext fails age's authentication before any byte reaches %p.
  corrupt: corruptStoredFile,
  corruptMessage: /^walvault-restore: error: the encrypted stored object fails authentication/m,
});

describe('a mixed-codec archive (none, gzip, lz4, zstd+age, lz4+age) restores in one recovery', () => {
  const pg = usePg({ prefix: 'walvault-mixed' });
  let walvault: InstalledWalvault;

  beforeAll(async () => {
    walvault = await installedWalvault();
  });

  it('archives each phase with the codec of the moment and recovers every row through all of them', async () => {
    const repo = await pg.makeDir('repo', 0o700);
    const { identityFile, recipient } = await makeKey(pg, 'mixed');
    const configDir = await pg.makeDir('config', 0o755);
    const config = path.join(configDir, 'walvault.json');
    // walvault reads the config file on every call: rewriting it changes the codec for the next segment.
    const useSettings = async (settings: Record<string, unknown>): Promise<void> => {
      await fs.writeFile(config, JSON.stringify({ repo, 'decrypt-identity-file': identityFile, ...settings }));
      await chownToPostgres(config);
    };
    await useSettings({ compress: 'none' });
    const primary = await pg.initCluster({
      name: 'primary',
      walSegSizeMb: 1,
      settings: { archive_mode: true, archive_command: `${shQuote(walvault.archive)} --config=${shQuote(config)} %p %f` },
    });
    await primary.start();
    await primary.sql('create table items(id int primary key, phase text not null)');
    const backup = await primary.baseBackup({ label: 'walvault-mixed', targetDir: path.join(await pg.root(), 'base-backup') });

    const phases: Array<{ name: string; settings: Record<string, unknown> }> = [
      { name: 'none', settings: { compress: 'none' } },
      { name: 'gzip', settings: { compress: 'gzip', 'compress-level': 1 } },
      { name: 'lz4', settings: { compress: 'lz4' } },
      { name: 'zstd+age', settings: { compress: 'zstd', 'encrypt-recipient': [recipient] } },
      { name: 'lz4+age', settings: { compress: 'lz4', 'encrypt-recipient': recipient } },
    ];
    const segmentsByPhase = new Map<string, string>();
    let next = 0;
    for (const phase of phases) {
      await useSettings(phase.settings);
      await primary.sql(`insert into items select g, '${phase.name}' from generate_series(${next + 1}, ${next + 2000}) g`);
      next += 2000;
      segmentsByPhase.set(phase.name, await primary.switchWalAndWaitArchived());
    }
    expect((await primary.archiverStats()).failedCount).toBe(0);

    // The repository really holds each format: read the metadata sidecars of the last segment of each phase.
    for (const [phaseName, segment] of segmentsByPhase) {
      const meta = JSON.parse(await fs.readFile(path.join(repo, 'wal', segment.slice(0, 16), `${segment}~meta`), 'utf8')) as { codec: string; encryption: string };
      expect(`${meta.codec}${meta.encryption === 'age' ? '+age' : ''}`, segment).toBe(phaseName);
    }

    const copy = await pg.restoreCluster(backup, {
      name: 'recovery',
      settings: { archive_mode: false, restore_command: `${shQuote(walvault.restore)} --config=${shQuote(config)} %f %p`, recovery_target_timeline: 'latest' },
    });
    await copy.start();
    await copy.waitForRecoveryEnd();
    expect(await copy.count('items')).toBe(next);
    expect(await copy.scalar("select string_agg(phase || ':' || n, ',' order by min_id) from (select phase, count(*) n, min(id) min_id from items group by phase) p")).toBe(
      'none:2000,gzip:2000,lz4:2000,zstd+age:2000,lz4+age:2000',
    );
    const log = await copy.log();
    for (const segment of segmentsByPhase.values()) expect(log).toContain(`restored log file "${segment}" from archive`);
    expect(log).not.toMatch(/^walvault-restore: error:/m);
    await copy.stop();
    await primary.stop();
  });
});
