import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { exportContactLists } from '../../src/contacts/export.js';
import { generateContactList } from '../../src/contacts/generate.js';
import { type ImportCheck, importContactLists } from '../../src/contacts/import.js';
import type { PgliteDatabase } from '../../src/store/pglite.js';
import { createStore } from '../../src/store/store.js';
import {
  contactListContents as contents,
  createNumberedUsers,
  fillGeneratedLists,
} from '../support/contact-lists.js';
import { createTestDatabase } from '../support/database.js';

const USERS = 60;
const CONTACTS = 8;
let source: PgliteDatabase;
let target: PgliteDatabase;
let dir: string;
let file: string;
let workDir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'parley-import-batches-'));
  source = await createTestDatabase();
  await createNumberedUsers(source, USERS);
  await fillGeneratedLists(source, USERS, CONTACTS);
  file = join(dir, 'all.xml');
  await exportContactLists(createStore(source), { scope: { kind: 'all' }, out: file });
});

beforeEach(async () => {
  await target?.close();
  target = await createTestDatabase();
  await createNumberedUsers(target, USERS);
  workDir = join(dir, `work-${Date.now()}`);
  mkdirSync(workDir);
});

afterAll(async () => {
  await Promise.all([source?.close(), target?.close()]);
  rmSync(dir, { recursive: true, force: true });
});

describe('contact-list import in batches', () => {
  it('writes every list in batches, equal to the source, and leaves no spool behind', async () => {
    const result = await importContactLists(createStore(target), {
      file,
      mode: 'replace',
      batchSize: 7,
      workDir,
    });
    expect(result).toMatchObject({ status: 'complete', imported: USERS, changed: USERS, failures: [] });
    expect(await contents(target)).toBe(await contents(source));
    expect(readdirSync(workDir)).toEqual([]);
  });

  it('resumes an import that died half way: nothing doubled, the rest written', async () => {
    let batches = 0;
    await expect(
      importContactLists(createStore(target), {
        file,
        mode: 'merge',
        batchSize: 10,
        workDir,
        onProgress: (p) => {
          // The process dies after the third batch committed.
          if (p.phase === 'write' && ++batches === 3) throw new Error('killed');
        },
      }),
    ).rejects.toThrow('killed');
    expect(readdirSync(workDir)).toEqual([]);
    const { rows } = await target.query<{ n: number }>(
      'SELECT count(DISTINCT user_id)::int AS n FROM contacts',
    );
    expect(rows[0].n).toBe(30);

    const again = await importContactLists(createStore(target), { file, mode: 'merge', batchSize: 10 });
    expect(again).toMatchObject({ status: 'complete', imported: USERS, changed: USERS - 30, unchanged: 30 });
    expect(await contents(target)).toBe(await contents(source));
  });

  it('reports a user deleted during the write phase and writes the others', async () => {
    let deleted = false;
    const result = await importContactLists(createStore(target), {
      file,
      mode: 'replace',
      batchSize: 10,
      workDir,
      onProgress: (p) => {
        if (p.phase === 'write' && !deleted) {
          deleted = true;
          // user5 sorts after user49 in the file (byte order), in a later batch.
          void target.query("DELETE FROM users WHERE aor = 'user5@example.com'");
        }
      },
    });
    expect(result.status).toBe('partial');
    expect(result.imported).toBe(USERS - 1);
    expect(result.failures).toEqual([
      {
        user: 'sip:user5@example.com',
        code: 'UNKNOWN_USER',
        reason: 'no user user5@example.com in this store (deleted during the import)',
        line: expect.any(Number),
        column: 3,
      },
    ]);
  });

  it('runs extra checks in the validation phase: a failing check rejects the file, nothing written', async () => {
    const before = await contents(target);
    const seen: string[] = [];
    const atMostFive: ImportCheck = (batch) =>
      batch.flatMap((user) => {
        seen.push(user.owner.aor);
        expect(user.owner.id).toBeGreaterThan(0);
        return user.list.contacts.length > 5
          ? [
              {
                line: user.line,
                column: user.column,
                reason: `${user.list.user} has ${user.list.contacts.length} contacts; the limit is 5`,
              },
            ]
          : [];
      });
    const result = await importContactLists(createStore(target), { file, checks: [atMostFive], workDir });
    expect(result.status).toBe('invalid');
    expect(seen).toHaveLength(USERS);
    const expected = generateContactList(0, CONTACTS, USERS).contacts.length;
    expect(result.errors[0]).toMatchObject({
      line: 3,
      column: 3,
      reason: `sip:user0@example.com has ${expected} contacts; the limit is 5`,
    });
    expect(result.successes).toEqual([]);
    expect(await contents(target)).toBe(before);
    expect(readdirSync(workDir)).toEqual([]);
  });
});
