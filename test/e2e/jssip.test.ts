import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { pidf, TestClient } from '../support/jssip.js';
import { startTestServer, type TestServer } from '../support/server.js';

describe('JsSIP clients over WebSocket on a standard server', () => {
  let t: TestServer;
  let ws: string;
  const clients: TestClient[] = [];
  beforeAll(async () => {
    t = await startTestServer();
    await t.addUser('alice', 'alice-secret');
    await t.addUser('bob', 'bob-secret');
    ws = `ws://127.0.0.1:${t.wsPort}`;
  });
  afterAll(async () => {
    for (const c of clients) await c.stop();
    await t?.stop();
  });

  it('refuses a wrong password', async () => {
    await expect(TestClient.signIn(ws, 'alice', t.domain, 'wrong')).rejects.toThrow(/registration failed/);
    await expect(TestClient.signIn(ws, 'mallory', t.domain, 'whatever')).rejects.toThrow(
      /registration failed/,
    );
  });

  it('alice and bob sign in, bob watches alice go away, they chat, alice signs out', async () => {
    const alice = await TestClient.signIn(ws, 'alice', t.domain, 'alice-secret');
    const bob = await TestClient.signIn(ws, 'bob', t.domain, 'bob-secret');
    clients.push(alice, bob);

    const watch = bob.watch(`alice@${t.domain}`);
    // Nothing published yet: alice shows closed.
    await watch.until((n) => n.state.startsWith('active') && n.body.includes('<basic>closed</basic>'));

    const first = await alice.publish(pidf(`alice@${t.domain}`, 'open', undefined, 'Available'));
    expect(first.status).toBe(200);
    expect(first.etag).toBeTruthy();
    await watch.until((n) => n.body.includes('<basic>open</basic>'));

    const away = await alice.publish(pidf(`alice@${t.domain}`, 'open', 'away', 'Back soon'), {
      etag: first.etag,
    });
    expect(away.status).toBe(200);
    const seen = await watch.until((n) => /away/.test(n.body));
    expect(seen.body).toContain('Back soon');

    const incoming = bob.nextMessage();
    await alice.sendMessage(`bob@${t.domain}`, 'Hello Bob');
    expect(await incoming).toEqual({ from: 'alice', body: 'Hello Bob' });
    const reply = alice.nextMessage();
    await bob.sendMessage(`alice@${t.domain}`, 'Hi Alice, ça va?');
    expect(await reply).toEqual({ from: 'bob', body: 'Hi Alice, ça va?' });

    // Alice signs out: her presence goes offline for bob.
    const offline = watch.next((n) => n.body.includes('<basic>closed</basic>'));
    await alice.stop();
    clients.splice(clients.indexOf(alice), 1);
    await offline;
  });

  it('forks a MESSAGE to every device of the recipient', async () => {
    const alice = await TestClient.signIn(ws, 'alice', t.domain, 'alice-secret');
    const desk = await TestClient.signIn(ws, 'bob', t.domain, 'bob-secret');
    const phone = await TestClient.signIn(ws, 'bob', t.domain, 'bob-secret');
    clients.push(alice, desk, phone);
    const onDesk = desk.nextMessage();
    const onPhone = phone.nextMessage();
    await alice.sendMessage(`bob@${t.domain}`, 'ring both');
    expect((await onDesk).body).toBe('ring both');
    expect((await onPhone).body).toBe('ring both');
    for (const c of [alice, desk, phone]) {
      await c.stop();
      clients.splice(clients.indexOf(c), 1);
    }
  });

  it('answers 480 for a known user who is offline and 404 for an unknown one', async () => {
    const bob = await TestClient.signIn(ws, 'bob', t.domain, 'bob-secret');
    clients.push(bob);
    await expect(bob.sendMessage(`alice@${t.domain}`, 'are you there?')).rejects.toThrow(/480/);
    await expect(bob.sendMessage(`nobody@${t.domain}`, 'hello?')).rejects.toThrow(/404/);
  });

  it('keeps the contact list on the server: one device edits it, another sees it, an import reaches both', async () => {
    const type = 'application/vnd.parley.contact-list+xml';
    const desk = await TestClient.signIn(ws, 'bob', t.domain, 'bob-secret');
    const phone = await TestClient.signIn(ws, 'bob', t.domain, 'bob-secret');
    clients.push(desk, phone);
    const deskList = desk.watch(`bob@${t.domain}`, 'parley-contacts', type);
    const phoneList = phone.watch(`bob@${t.domain}`, 'parley-contacts', type);
    await deskList.until((n) => n.state.startsWith('active') && n.body.includes('<user'));
    await phoneList.until((n) => n.state.startsWith('active'));

    const edited = [
      '<?xml version="1.0" encoding="UTF-8"?>',
      '<contact-lists xmlns="urn:parley:contact-list:1" format-version="1">',
      `<user uri="sip:bob@${t.domain}" version="0">`,
      '<groups><group name="Friends"/></groups>',
      `<contacts><contact uri="sip:alice@${t.domain}" display-name="Alice" subscribed="true"><member-of group="Friends"/></contact></contacts>`,
      '</user>',
      '</contact-lists>',
    ].join('\n');
    await phoneList.until((n) => n.state.startsWith('active'));
    const saved = phone.publish(edited, { event: 'parley-contacts', contentType: type, expires: 0 });
    const seenOnDesk = deskList.next((n) => n.body.includes(`sip:alice@${t.domain}`));
    expect((await saved).status).toBe(200);
    expect((await seenOnDesk).body).toContain('Friends');

    // A malformed list is refused with its line and the stored one is kept.
    const bad = await phone.publish('<contact-lists><user>', {
      event: 'parley-contacts',
      contentType: type,
      expires: 0,
    });
    expect(bad.status).toBe(400);

    // An administrator imports a list into the running server's store with the CLI: both
    // devices get it at once (the store's change feed reaches the server through the socket).
    const file = join(t.dataDir, 'bob-import.xml');
    writeFileSync(
      file,
      edited.replace(
        '</contacts>',
        `<contact uri="sip:carol@${t.domain}" display-name="Carol" subscribed="true"/></contacts>`,
      ),
    );
    const deskSeesImport = deskList.next((n) => n.body.includes(`sip:carol@${t.domain}`), 15_000);
    const phoneSeesImport = phoneList.next((n) => n.body.includes(`sip:carol@${t.domain}`), 15_000);
    // Asynchronously: the server lives in this process and must keep answering the CLI.
    const cli = await runCli([
      'contacts',
      'import',
      file,
      '--data-dir',
      t.dataDir,
      '--mode',
      'merge',
      '--json',
    ]);
    expect(cli.code, cli.output).toBe(0);
    expect((await deskSeesImport).body).toContain(`sip:alice@${t.domain}`);
    await phoneSeesImport;
  }, 60_000);
});
