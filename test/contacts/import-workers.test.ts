import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { importContactLists as ImportFn } from '../../src/contacts/import.js';
import type { PgliteDatabase } from '../../src/store/pglite.js';
import { createStore } from '../../src/store/store.js';
import { createTestDatabase } from '../support/database.js';

/**
 * The import's elements parsed in worker threads (parseWorkers, as the CLI does) give the
 * report the inline parse gives: the same problems in file order across several batches
 * of elements, the same lists written. Workers load the built module beside import.js, so
 * this runs the build (dist), as the CLI does.
 */
const built = join(import.meta.dirname, '../../dist/src/contacts/import.js');
const USERS = 900;

function userElement(i: number, broken?: string): string {
  const contacts = [0, 1, 2]
    .map((c) => `      <contact uri="sip:c${c}.u${i}@example.org" display-name="C ${c}" subscribed="true"/>`)
    .join('\n');
  return `  <user uri="sip:user${i}@example.com" version="2">
    <groups>
      <group name="Team"/>
    </groups>
    <contacts>
${broken ?? contacts}
    </contacts>
  </user>
`;
}

function document(users: string[]): string {
  return `<?xml version="1.0" encoding="UTF-8"?>
<contact-lists xmlns="urn:parley:contact-list:1" format-version="1">
${users.join('')}</contact-lists>
`;
}

describe.skipIf(!existsSync(built))('contact-list import parsed in worker threads', () => {
  let dir: string;
  let importContactLists: typeof ImportFn;
  const stores: PgliteDatabase[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'parley-import-workers-'));
    ({ importContactLists } = (await import(built)) as { importContactLists: typeof ImportFn });
  });

  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
    rmSync(dir, { recursive: true, force: true });
  });

  async function freshStore(): Promise<PgliteDatabase> {
    const db = await createTestDatabase();
    stores.push(db);
    await db.query(
      `INSERT INTO users (aor) SELECT 'user' || g || '@example.com' FROM generate_series(0, $1::int - 1) g`,
      [USERS],
    );
    return db;
  }

  it('rejects a file with problems in several batches exactly as the inline parse does', async () => {
    const users = Array.from({ length: USERS }, (_, i) => userElement(i));
    users[7] = userElement(7, '      <contact uri="not a sip address"/>');
    users[450] = userElement(
      450,
      '      <contact uri="sip:a@example.org"><member-of group="Nope"/></contact>',
    );
    users[899] = userElement(899, '      <friend uri="sip:a@example.org"/>');
    users.push(userElement(3)); // user3 a second time, in the last batch
    const file = join(dir, 'broken.xml');
    writeFileSync(file, document(users));
    const db = await freshStore();
    const inline = await importContactLists(createStore(db), { file, workDir: dir });
    const threaded = await importContactLists(createStore(db), { file, workDir: dir, parseWorkers: 2 });
    expect(inline.status).toBe('invalid');
    expect(inline.errors.map((e) => e.reason)).toEqual([
      expect.stringMatching(/not a SIP address/),
      expect.stringMatching(/Nope/),
      expect.stringMatching(/friend/),
      'user sip:user3@example.com appears twice in the file',
    ]);
    expect(threaded.errors).toEqual(inline.errors);
    expect(threaded.usersInFile).toBe(inline.usersInFile);
    const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM contacts');
    expect(rows[0].n).toBe(0);
  });

  it('writes the lists the inline parse writes, and reports them in file order', async () => {
    const users = Array.from({ length: USERS }, (_, i) => userElement(i));
    users.push(userElement(USERS + 5)); // no such user: a failure, not a rejection
    const file = join(dir, 'good.xml');
    writeFileSync(file, document(users));
    const [a, b] = [await freshStore(), await freshStore()];
    const inline = await importContactLists(createStore(a), { file, workDir: dir, mode: 'replace' });
    const threaded = await importContactLists(createStore(b), {
      file,
      workDir: dir,
      mode: 'replace',
      parseWorkers: 2,
    });
    expect(threaded.status).toBe('partial');
    expect(threaded.imported).toBe(USERS);
    const { phases: _a, ...inlineReport } = inline;
    const { phases: _b, ...threadedReport } = threaded;
    expect(threadedReport).toEqual(inlineReport);
    const rows = (db: PgliteDatabase) =>
      db.query(
        `SELECT u.aor, c.uri, c.display_name, c.groups, c.position
           FROM contacts c JOIN users u ON u.id = c.user_id ORDER BY 1, 5`,
      );
    expect((await rows(b)).rows).toEqual((await rows(a)).rows);
    expect((await rows(b)).rows).toHaveLength(USERS * 3);
  });
});
