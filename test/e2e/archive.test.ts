import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStore, type Store } from '../../src/store/store.js';
import { runCli } from '../support/cli.js';
import { TestClient } from '../support/jssip.js';
import { readMetric, startTestServer, type TestServer } from '../support/server.js';
import { injectionFile, runSipp, SIPP_SCENARIOS, startSippUas } from '../support/sipp.js';

/** Archiving through real clients: JsSIP and SIPp chat, the archive holds what they said and how it went. */
describe('message archiving', () => {
  let t: TestServer;
  let store: Store;
  const ws = () => `ws://127.0.0.1:${t.wsPort}`;
  const cli = (...args: string[]) => runCli([...args, '--data-dir', t.dataDir]);
  const search = (...args: string[]) => cli('archive', 'search', '--domain', t.domain, ...args);

  beforeAll(async () => {
    t = await startTestServer({ archiving: { enabled: true, onFailure: 'block', flushMs: 20 } });
    store = createStore(t.server.db);
    for (const name of ['alice', 'bob', 'carol', 'sippa', 'sippb']) await t.addUser(name, 'secret');
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('archives every MESSAGE with its delivery result, searchable and exportable from the CLI', async () => {
    const alice = await TestClient.signIn(ws(), 'alice', t.domain, 'secret');
    const bob = await TestClient.signIn(ws(), 'bob', t.domain, 'secret');
    try {
      const arrived = bob.nextMessage();
      await alice.sendMessage(`bob@${t.domain}`, 'Quarterly report attached <b>soon</b>');
      await arrived;
      const back = alice.nextMessage();
      await bob.sendMessage(`alice@${t.domain}`, 'thanks, got the report');
      await back;
      // carol is not signed in: the sender got 480, and the archive says so.
      await expect(alice.sendMessage(`carol@${t.domain}`, 'are you there?')).rejects.toThrow(/480/);
    } finally {
      await alice.stop();
      await bob.stop();
    }

    await expect.poll(async () => (await store.archive.search({ limit: 10 })).length).toBe(3);
    const rows = await store.archive.search({ limit: 10 });
    expect(rows.map((r) => [r.sender, r.recipient, r.result])).toEqual([
      [`alice@${t.domain}`, `bob@${t.domain}`, 200],
      [`bob@${t.domain}`, `alice@${t.domain}`, 200],
      [`alice@${t.domain}`, `carol@${t.domain}`, 480],
    ]);
    expect(rows[0]).toMatchObject({ contentType: 'text/plain', size: 37, serverId: 'test' });
    expect(await readMetric(t.server.httpUrl, 'parley_archive_written_total')).toBe(3);

    const found = await search('--user', 'alice', '--with', 'bob', '--text', 'REPORT', '--json');
    expect(found.code, found.output).toBe(0);
    expect((JSON.parse(found.stdout).messages as Array<{ body: string }>).map((m) => m.body)).toEqual([
      'Quarterly report attached <b>soon</b>',
      'thanks, got the report',
    ]);
    const human = await search('--user', 'carol');
    expect(human.stdout).toMatch(/alice@example\.com -> carol@example\.com {2}\[480\] {2}are you there\?/);

    const jsonl = await cli('archive', 'export', '--since', '1h', '--format', 'jsonl');
    expect(jsonl.code, jsonl.output).toBe(0);
    expect(
      jsonl.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).body),
    ).toHaveLength(3);
    expect(jsonl.stderr).toContain('Exported 3 message(s).');
    const file = join(t.dataDir, 'archive.xml');
    const xml = await cli('archive', 'export', '--since', '2000-01-01', '--format', 'xml', '--out', file);
    expect(xml.code, xml.output).toBe(0);
    expect(readFileSync(file, 'utf8')).toContain(
      '>Quarterly report attached &lt;b&gt;soon&lt;/b&gt;</message>',
    );
    const bad = await search('--user', 'alice', '--since', 'yesterday', '--json');
    expect(bad.code).toBe(2);
    expect(JSON.parse(bad.stdout)).toMatchObject({ error: { code: 'INVALID_FLAG' } });
  });

  it('archives a SIPp MESSAGE and, with onFailure: block, refuses messages with 500 while the archive is unwritable', async () => {
    const uasPort = 25_000 + Math.floor(Math.random() * 10_000);
    const uas = startSippUas(join(SIPP_SCENARIOS, 'uas-message.xml'), uasPort);
    try {
      await new Promise((r) => setTimeout(r, 300));
      const sipp = (scenario: string, user: string, extra: string, calls = 1) =>
        runSipp([
          `127.0.0.1:${t.tcpPort}`,
          ...['-sf', join(SIPP_SCENARIOS, scenario), '-t', 't1', '-m', String(calls)],
          ...['-inf', injectionFile([{ user, password: 'secret', domain: t.domain, extra }])],
          ...['-timeout', '15s', '-timeout_error'],
        ]);
      const reg = await sipp('register-contact.xml', 'sippb', `127.0.0.1:${uasPort}`);
      expect(reg.code, reg.stdout + reg.stderr).toBe(0);
      const sent = await sipp('uac-message.xml', 'sippa', 'sippb');
      expect(sent.code, sent.stdout + sent.stderr).toBe(0);
      await expect
        .poll(async () => (await store.archive.search({ user: `sippa@${t.domain}`, limit: 10 })).length)
        .toBe(1);

      // The archive cannot be written: the next message is delivered (its batch fails), then
      // messages are refused until a write succeeds again.
      await t.server.db.exec('ALTER TABLE archive ADD CONSTRAINT archive_read_only CHECK (false) NOT VALID');
      const alice = await TestClient.signIn(ws(), 'alice', t.domain, 'secret');
      const bob = await TestClient.signIn(ws(), 'bob', t.domain, 'secret');
      try {
        await alice.sendMessage(`bob@${t.domain}`, 'written while broken');
        await expect
          .poll(() => readMetric(t.server.httpUrl, 'parley_archive_failures_total'))
          .toBeGreaterThan(0);
        await expect(alice.sendMessage(`bob@${t.domain}`, 'refused')).rejects.toThrow(/500/);
        await t.server.db.exec('ALTER TABLE archive DROP CONSTRAINT archive_read_only');
        await expect
          .poll(
            () =>
              alice.sendMessage(`bob@${t.domain}`, 'after').then(
                () => 'sent',
                (e: Error) => e.message,
              ),
            {
              timeout: 10_000,
            },
          )
          .toBe('sent');
      } finally {
        await alice.stop();
        await bob.stop();
      }
      // The message held during the failure was written once the archive came back; the refused one never went.
      await expect
        .poll(
          async () =>
            (
              await store.archive.search({
                user: `alice@${t.domain}`,
                with: `bob@${t.domain}`,
                words: ['while', 'broken'],
                limit: 10,
              })
            ).length,
        )
        .toBe(1);
      expect(
        await store.archive.search({ user: `alice@${t.domain}`, words: ['refused'], limit: 10 }),
      ).toEqual([]);
    } finally {
      uas.stop();
    }
  });
});
