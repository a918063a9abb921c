import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateContactList } from '../../src/contacts/generate.js';
import { replaceContactList } from '../../src/contacts/lists.js';
import { backupStore, restoreStore } from '../../src/store/backup.js';
import { ContactListRepository } from '../../src/store/contact-lists.js';
import { migrate } from '../../src/store/migrate.js';
import { createPostgresDatabase } from '../../src/store/postgres.js';
import type { Database } from '../../src/store/sql.js';
import { createTestDatabase } from '../support/database.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';

// Backup and restore of the whole store (src/store/backup.ts), on both engines.
let dir: string;
let postgres: TestPostgres;

async function seed(db: Database): Promise<void> {
  await db.query(
    "INSERT INTO homes (name, kind, address) VALUES ('pool1', 'pool', 'sip:pool1.example.com;transport=tcp')",
  );
  const { rows } = await db.query<{ id: number }>(
    "INSERT INTO users (aor, display_name, home) SELECT 'user' || g || '@example.com', 'Ünïcode ' || g, 'pool1' FROM generate_series(0, 2999) g RETURNING id",
  );
  await db.query(
    "INSERT INTO credentials (user_id, realm, ha1_md5, ha1_sha256) SELECT id, 'example.com', md5(aor), md5(aor) || md5(aor) FROM users",
  );
  for (let i = 0; i < 40; i++)
    await replaceContactList(
      new ContactListRepository(db),
      Number(rows[i].id),
      generateContactList(i, 30, 3000),
    );
  await db.query(
    `INSERT INTO registrations (aor, contact, call_id, cseq, expires_at, q, user_agent, server_id, flow_id)
     VALUES ('user1@example.com', 'sip:user1@10.0.0.1:5060;transport=tcp', 'abc', 7, '2026-11-26T10:00:00.123456Z', 0.7, 'Jitsi "x"', 'fe1', 'f1')`,
  );
  await db.query(
    `INSERT INTO subscriptions (id, event, presentity, watcher, call_id, local_tag, remote_tag, remote_target, route_set, expires_at, server_id, flow_id)
     VALUES ('s1', 'presence', 'user1@example.com', 'user2@example.com', 'c', 'l', 'r', 'sip:x', '{"<sip:a;lr>","<sip:b;lr>"}', now(), 'fe1', 'f1')`,
  );
  await db.query(
    "INSERT INTO archive (sender, recipient, content_type, body) VALUES ('a', 'b', 'text/plain', E'line1\\nline2 \\u00e9 😀')",
  );
  await db.query(
    "INSERT INTO archive (sender, recipient, content_type, body) VALUES ('b', 'a', 'text/plain', 'second')",
  );
}

async function dump(db: Database): Promise<string> {
  const out: string[] = [];
  for (const table of [
    'homes',
    'users',
    'credentials',
    'contacts',
    'contact_groups',
    'access_rules',
    'contact_list_versions',
    'registrations',
    'subscriptions',
    'archive',
  ]) {
    const { rows } = await db.query<{ j: string }>(
      `SELECT row_to_json(t)::text AS j FROM ${table} t ORDER BY row_to_json(t)::text COLLATE "C"`,
    );
    out.push(...rows.map((r) => r.j));
  }
  return out.join('\n');
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'parley-backup-'));
  postgres = await startTestPostgres();
});
afterAll(async () => {
  await postgres?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('store backup and restore', () => {
  it('backs up PGlite, restores into an empty PGlite and into PostgreSQL, verified', async () => {
    const source = await createTestDatabase();
    const target = await createTestDatabase();
    const pg = await createPostgresDatabase(await postgres.createDatabase());
    try {
      await migrate(pg);
      await seed(source);
      const out = join(dir, 'b1');
      const backup = await backupStore(source, { out });
      expect(backup.engine).toBe('pglite');
      expect(backup.tables.find((t) => t.name === 'users')?.rows).toBe(3000);
      const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'));
      expect(manifest.tables.map((t: { name: string }) => t.name).indexOf('homes')).toBeLessThan(
        manifest.tables.map((t: { name: string }) => t.name).indexOf('users'),
      );
      const expected = await dump(source);

      const restored = await restoreStore(target, { from: out });
      expect(restored.tables.every((t) => t.verified)).toBe(true);
      expect(await dump(target)).toBe(expected);
      // sequences continue after the restored ids
      const { rows } = await target.query<{ id: number }>(
        "INSERT INTO users (aor) VALUES ('new@example.com') RETURNING id",
      );
      expect(Number(rows[0].id)).toBeGreaterThan(3000);

      const intoPg = await restoreStore(pg, { from: out });
      expect(intoPg.engine).toBe('postgres');
      expect(await dump(pg)).toBe(expected);

      // and the other way: a PostgreSQL backup is byte-identical to the PGlite one it came from
      const fromPg = join(dir, 'b2');
      await backupStore(pg, { out: fromPg });
      for (const t of manifest.tables) {
        expect(readFileSync(join(fromPg, t.file)).equals(readFileSync(join(out, t.file)))).toBe(true);
      }
    } finally {
      await Promise.all([source.close(), target.close(), pg.close()]);
    }
  }, 300_000);

  it('refuses a non-empty target without force, and a damaged backup, leaving the store as it was', async () => {
    const source = await createTestDatabase();
    const target = await createTestDatabase();
    try {
      await seed(source);
      const out = join(dir, 'b3');
      await backupStore(source, { out });
      await target.query("INSERT INTO users (aor) VALUES ('mine@example.com')");
      await expect(restoreStore(target, { from: out })).rejects.toMatchObject({ code: 'STORE_NOT_EMPTY' });
      const file = join(out, 'users.jsonl');
      const text = readFileSync(file, 'utf8');
      writeFileSync(file, text.replace('user17@', 'user71@'));
      await expect(restoreStore(target, { from: out, force: true })).rejects.toMatchObject({
        code: 'STORE_BACKUP_INVALID',
      });
      writeFileSync(file, text);
      const before = await dump(target);
      expect(before).toContain('mine@example.com');
      await restoreStore(target, { from: out, force: true });
      expect(await dump(target)).toBe(await dump(source));
    } finally {
      await Promise.all([source.close(), target.close()]);
    }
  }, 300_000);

  it('refuses a target whose schema differs', async () => {
    const source = await createTestDatabase();
    const target = await createTestDatabase();
    try {
      const out = join(dir, 'b4');
      await backupStore(source, { out });
      await target.query('ALTER TABLE users ADD COLUMN nickname text');
      await expect(restoreStore(target, { from: out })).rejects.toMatchObject({
        code: 'STORE_SCHEMA_MISMATCH',
      });
    } finally {
      await Promise.all([source.close(), target.close()]);
    }
  }, 300_000);
});
