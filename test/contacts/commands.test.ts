import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import ContactsExport from '../../commands/contacts/export.js';
import ContactsImport from '../../commands/contacts/import.js';
import ContactsRestore from '../../commands/contacts/restore.js';
import DbBackup from '../../commands/db/backup.js';
import DbRestore from '../../commands/db/restore.js';
import { generateContactList } from '../../src/contacts/generate.js';
import { replaceContactList } from '../../src/contacts/lists.js';
import { ContactListRepository } from '../../src/store/contact-lists.js';
import { openDatabase } from '../../src/store/open.js';
import { migratedDataFolder } from '../support/database.js';

const root = resolve(import.meta.dirname, '../..');
let dir: string;
let source: string;
let target: string;

async function withStore(
  dataDir: string,
  fn: (db: Awaited<ReturnType<typeof openDatabase>>) => Promise<void>,
) {
  const db = await openDatabase({ dataDir });
  try {
    await fn(db);
  } finally {
    await db.close();
  }
}

async function failure(
  p: Promise<unknown>,
): Promise<{ message: string; code?: string; oclif?: { exit?: number } }> {
  try {
    await p;
  } catch (err) {
    return err as { message: string; code?: string; oclif?: { exit?: number } };
  }
  throw new Error('expected the command to fail');
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'parley-contacts-cmd-'));
  source = join(dir, 'source');
  target = join(dir, 'target');
  await withStore(migratedDataFolder(source), async (db) => {
    const { rows } = await db.query<{ id: number }>(
      "INSERT INTO users (aor) SELECT 'user' || g || '@example.com' FROM generate_series(0, 19) g RETURNING id",
    );
    for (let i = 0; i < 20; i++)
      await replaceContactList(
        new ContactListRepository(db),
        Number(rows[i].id),
        generateContactList(i, 5, 20),
      );
  });
  await withStore(migratedDataFolder(target), async (db) => {
    await db.query(
      "INSERT INTO users (aor) SELECT 'user' || g || '@example.com' FROM generate_series(0, 18) g",
    );
  });
}, 300_000);

afterEach(() => {
  vi.restoreAllMocks();
  process.exitCode = undefined;
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('parley contacts and parley db commands', () => {
  it('export --all, import with a partial-success exit status, restore one user', async () => {
    vi.spyOn(console, 'log').mockImplementation(() => {});
    const out = join(dir, 'all.xml');
    const exported = await ContactsExport.run(['--all', '--out', out, '--data-dir', source], root);
    expect(exported).toMatchObject({ users: 20, files: 1, layout: 'file' });

    const imported = await ContactsImport.run([out, '--mode', 'replace', '--data-dir', target], root);
    expect(imported).toMatchObject({ status: 'partial', imported: 19 });
    expect(imported.failures.map((f) => f.user)).toEqual(['sip:user19@example.com']);
    expect(process.exitCode).toBe(6);
    process.exitCode = undefined;

    const restored = await ContactsRestore.run(
      ['--user', 'sip:user3@example.com', '--from', out, '--data-dir', target],
      root,
    );
    expect(restored).toMatchObject({ status: 'complete', imported: 1, changed: 0, checksumVerified: true });
  }, 300_000);

  it('import rejects an invalid file with exit status 2 and the problem in the report', async () => {
    vi.spyOn(console, 'log').mockImplementation(() => {});
    vi.spyOn(console, 'error').mockImplementation(() => {});
    const bad = join(dir, 'bad.xml');
    writeFileSync(bad, '<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY a "b">]>\n<contact-lists/>\n');
    const result = await ContactsImport.run([bad, '--data-dir', target], root);
    expect(result.status).toBe('invalid');
    expect(result.errors[0]).toMatchObject({ line: 2, column: 1 });
    expect(process.exitCode).toBe(2);
    const missing = await failure(
      ContactsRestore.run(
        ['--user', 'user1@example.com', '--from', join(dir, 'nowhere'), '--data-dir', target],
        root,
      ),
    );
    expect(missing.code).toBe('BACKUP_NOT_FOUND');
    expect(missing.oclif?.exit).toBe(3);
  }, 300_000);

  it('db backup and db restore into an empty data folder', async () => {
    vi.spyOn(console, 'log').mockImplementation(() => {});
    const backup = join(dir, 'backup');
    const made = await DbBackup.run(['--out', backup, '--data-dir', source, '--json'], root);
    expect(made.tables.find((t) => t.name === 'contacts')?.rows).toBeGreaterThan(0);
    const fresh = join(dir, 'fresh');
    const restored = await DbRestore.run([backup, '--data-dir', fresh], root);
    expect(restored.rows).toBe(made.rows);
    const again = await failure(DbRestore.run([backup, '--data-dir', fresh], root));
    expect(again.code).toBe('STORE_NOT_EMPTY');
    expect(JSON.parse(readFileSync(join(backup, 'manifest.json'), 'utf8')).format).toBe(
      'parley-store-backup',
    );
  }, 300_000);
});
