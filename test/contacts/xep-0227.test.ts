import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { XMLParser } from 'fast-xml-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportContactLists } from '../../src/contacts/export.js';
import { replaceContactList } from '../../src/contacts/lists.js';
import type { Contact, ContactList } from '../../src/contacts/model.js';
import { jidFromSipUri } from '../../src/contacts/xep-0227.js';
import type { PgliteDatabase } from '../../src/store/pglite.js';
import { createStore } from '../../src/store/store.js';
import { createTestDatabase } from '../support/database.js';
import { ensureDebianCommand } from '../support/debian.js';

const root = resolve(import.meta.dirname, '../..');
// XEP-0227's schema with RFC 6121's roster schema beside it (fixtures/xmpp/).
const xsd = join(root, 'fixtures/xmpp/xep-0227-roster.xsd');
let xmllint: string;
let db: PgliteDatabase;
let dir: string;

function validate(file: string): { ok: boolean; output: string } {
  const run = spawnSync(xmllint, ['--noout', '--nonet', '--schema', xsd, file], { encoding: 'utf8' });
  return { ok: run.status === 0, output: run.stderr };
}

const contact = (uri: string, subscribed: boolean, displayName = '', groups: string[] = []): Contact => ({
  uri,
  displayName,
  subscribed,
  groups,
});

const list = (contacts: Contact[], extra: Partial<ContactList> = {}): ContactList => ({
  user: '',
  version: 0,
  groups: [],
  contacts,
  accessRules: [],
  ...extra,
});

beforeAll(async () => {
  xmllint = ensureDebianCommand('xmllint', 'libxml2-utils');
  dir = mkdtempSync(join(tmpdir(), 'parley-xep-0227-'));
  db = await createTestDatabase();
  const aors = ['alice@example.com', 'bob@example.com', 'carol@example.com', 'o/brien@example.com'];
  const { rows } = await db.query<{ id: number; aor: string }>(
    'INSERT INTO users (aor) SELECT unnest($1::text[]) RETURNING id, aor',
    [[...aors, 'dave@partner.net', 'erin@example.com']],
  );
  const id = new Map(rows.map((r) => [r.aor, Number(r.id)]));
  const lists = createStore(db).contactLists;
  await replaceContactList(
    lists,
    id.get('alice@example.com')!,
    list(
      [
        contact('sip:bob@example.com', true, 'Bob "B" Smith', ['Team', '<VIP>']),
        contact('sip:carol@example.com', true, 'Carol'),
        contact('sip:dave@partner.net', true),
        contact('sip:o/brien@example.com', false, 'Pat & Co', ['Friends & family']),
      ],
      {
        groups: [{ name: 'Team' }, { name: 'Friends & family' }, { name: '<VIP>' }],
        accessRules: [{ pattern: 'sip:carol@example.com', action: 'block' }],
      },
    ),
  );
  for (const aor of ['bob@example.com', 'carol@example.com', 'dave@partner.net', 'o/brien@example.com']) {
    await replaceContactList(lists, id.get(aor)!, list([contact('sip:alice@example.com', true)]));
  }
}, 900_000);

afterAll(async () => {
  await db?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('SIP addresses as JIDs', () => {
  it('drops the scheme, %-decodes the user part and escapes what a localpart cannot hold (XEP-0106)', () => {
    expect(jidFromSipUri('sip:alice@example.com')).toBe('alice@example.com');
    expect(jidFromSipUri('sips:alice@example.com')).toBe('alice@example.com');
    expect(jidFromSipUri('sip:a/b%20c@example.com')).toBe('a\\2fb\\20c@example.com');
    expect(jidFromSipUri('sip:x:y\\z@example.com')).toBe('x\\3ay\\5cz@example.com');
    expect(jidFromSipUri('sip:%e9t%C3%A9@example.com')).toBe('%e9t%C3%A9@example.com');
    expect(jidFromSipUri('sip:%C3%A9t%C3%A9@example.com')).toBe('été@example.com');
  });
});

describe('contacts export --format xep-0227', () => {
  it('writes a document valid against the XEP-0227 and roster schemas, one host per domain', async () => {
    const out = join(dir, 'pie.xml');
    const result = await exportContactLists(createStore(db), {
      scope: { kind: 'all' },
      out,
      format: 'xep-0227',
      pageSize: 2,
    });
    expect(result).toMatchObject({ format: 'xep-0227', users: 6, contacts: 8, files: 1 });
    expect(validate(out)).toEqual({ ok: true, output: `${out} validates\n` });
    const manifest = JSON.parse(readFileSync(`${out}.manifest.json`, 'utf8'));
    expect(manifest).toMatchObject({ document: 'xep-0227', totals: { users: 6 } });

    const doc = new XMLParser({
      ignoreAttributes: false,
      attributeNamePrefix: '',
      isArray: (name) => ['host', 'user', 'item', 'group'].includes(name),
    }).parse(readFileSync(out, 'utf8'));
    const hosts = doc['server-data'].host;
    expect(doc['server-data'].xmlns).toBe('urn:xmpp:pie:0');
    expect(hosts.map((h: { jid: string }) => h.jid)).toEqual(['example.com', 'partner.net']);
    const users = (h: number) => hosts[h].user.map((u: { name: string }) => u.name);
    expect(users(0)).toEqual(['alice', 'bob', 'carol', 'erin', 'o\\2fbrien']);
    expect(users(1)).toEqual(['dave']);
    const roster = (h: number, name: string) => {
      const user = hosts[h].user.find((u: { name: string }) => u.name === name);
      expect(user.query.xmlns).toBe('jabber:iq:roster');
      return user.query.item ?? [];
    };
    expect(roster(0, 'alice')).toEqual([
      // Both subscribe to each other, and alice lets her domain watch her.
      { jid: 'bob@example.com', name: 'Bob "B" Smith', subscription: 'both', group: ['Team', '<VIP>'] },
      // carol subscribes to alice, but alice blocks her.
      { jid: 'carol@example.com', name: 'Carol', subscription: 'to' },
      // dave subscribes to alice from another organisation, and no rule allows him.
      { jid: 'dave@partner.net', subscription: 'to' },
      { jid: 'o\\2fbrien@example.com', name: 'Pat & Co', subscription: 'from', group: ['Friends & family'] },
    ]);
    expect(roster(0, 'bob')).toEqual([{ jid: 'alice@example.com', subscription: 'both' }]);
    expect(roster(1, 'dave')).toEqual([{ jid: 'alice@example.com', subscription: 'to' }]);
    expect(roster(0, 'erin')).toEqual([]);
  });

  it('the schema check fails on what XEP-0227 or RFC 6121 forbid', () => {
    const good = readFileSync(join(dir, 'pie.xml'), 'utf8');
    const cases: [string, string][] = [
      ['bad-subscription.xml', good.replace('subscription="both"', 'subscription="sometimes"')],
      ['no-jid.xml', good.replace('<item jid="carol@example.com"', '<item')],
      ['no-user-name.xml', good.replace('<user name="bob">', '<user>')],
      ['unknown-child.xml', good.replace('<query xmlns="jabber:iq:roster">', '<roster xmlns="urn:example">')],
    ];
    for (const [name, text] of cases) {
      expect(text).not.toBe(good);
      const file = join(dir, name);
      writeFileSync(file, text);
      expect(validate(file).ok, name).toBe(false);
    }
  });

  it('exports one home, refuses a folder and an export with no users', async () => {
    await expect(
      exportContactLists(createStore(db), {
        scope: { kind: 'all' },
        out: join(dir, 'folder'),
        format: 'xep-0227',
      }),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(
      exportContactLists(createStore(db), {
        scope: { kind: 'home', home: 'nowhere' },
        out: join(dir, 'none.xml'),
        format: 'xep-0227',
      }),
    ).rejects.toMatchObject({ code: 'HOME_EMPTY' });
    const one = join(dir, 'one.xml');
    await exportContactLists(createStore(db), {
      scope: { kind: 'user', aor: 'dave@partner.net' },
      out: one,
      format: 'xep-0227',
    });
    expect(validate(one).ok).toBe(true);
    expect(readFileSync(one, 'utf8')).toContain('<host jid="partner.net">\n    <user name="dave">');
  });
});
