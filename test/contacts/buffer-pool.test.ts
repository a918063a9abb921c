import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from '@oclif/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runWithStore } from '../../src/cli/store-command.js';
import { BULK_JOB_SHARED_BUFFERS, openDatabase } from '../../src/store/open.js';
import type { Store } from '../../src/store/store.js';

/**
 * `contacts import` and `contacts export` open an embedded data folder with a smaller buffer
 * pool than PostgreSQL's default (PGlite's pool is memory of the command's own process):
 * the store frame hands the size to the engine, and only when asked.
 */
describe('buffer pool of the contacts commands on a data folder', () => {
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'parley-contacts-pool-'));
    await (await openDatabase({ dataDir: dir })).close();
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const pool = async (store: Store) =>
    (await store.db.query<{ shared_buffers: string }>('SHOW shared_buffers')).rows[0].shared_buffers;
  // runWithStore does not use the command itself.
  const command = {} as Command;

  it('is BULK_JOB_SHARED_BUFFERS when the command asks for it', async () => {
    const size = await runWithStore(command, { 'data-dir': dir }, pool, {
      sharedBuffers: BULK_JOB_SHARED_BUFFERS,
    });
    expect(size).toBe('32MB');
  });

  it("is the engine's default otherwise", async () => {
    expect(await runWithStore(command, { 'data-dir': dir }, pool)).toBe('128MB');
  });
});
