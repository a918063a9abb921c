import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { TestClient } from '../support/jssip.js';
import { readMetric, startTestServer, type TestServer } from '../support/server.js';

/** The usage rollup through real clients: JsSIP users sign in and chat; the report reads the rollup. */
describe('parley report usage', () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
    for (const name of ['alice', 'bob', 'carol']) await t.addUser(name, 'secret');
  });
  afterAll(() => {
    rmSync(t.dataDir, { recursive: true, force: true });
  });

  it('counts active users, the peak signed in, messages and bytes of the day', async () => {
    const ws = `ws://127.0.0.1:${t.wsPort}`;
    const metric = (name: string) => readMetric(t.server.httpUrl, name);
    expect(await metric('parley_store_up')).toBe(1);
    expect(await metric('parley_signed_in_users')).toBe(0);
    const alice = await TestClient.signIn(ws, 'alice', t.domain, 'secret');
    const bob = await TestClient.signIn(ws, 'bob', t.domain, 'secret');
    const arrived = bob.nextMessage();
    await alice.sendMessage(`bob@${t.domain}`, 'hello');
    await arrived;
    const back = alice.nextMessage();
    await bob.sendMessage(`alice@${t.domain}`, 'hi there');
    await back;
    await new Promise((r) => setTimeout(r, 1100)); // one peak sample
    // What a scraper sees changes as they sign in and chat.
    expect(await metric('parley_signed_in_users')).toBe(2);
    expect(await metric('parley_messages_routed_total')).toBe(2);
    expect(await metric('parley_message_bytes_routed_total')).toBe(13);
    await alice.stop();
    await bob.stop();
    // A server adds its counts each minute and when it stops.
    await t.server.close();

    const cli = (...args: string[]) =>
      runCli(['report', 'usage', '--since', '1d', '--data-dir', t.dataDir, '--domain', t.domain, ...args]);
    const json = await cli('--json');
    expect(json.code, json.output).toBe(0);
    const report = JSON.parse(json.stdout);
    expect(report.days).toEqual([
      {
        day: new Date().toISOString().slice(0, 10),
        home: t.domain,
        activeUsers: 2,
        peakSignedIn: 2,
        messages: 2,
        bytes: 13,
      },
    ]);
    expect(report.homes).toEqual([{ home: t.domain, enabledUsers: 3 }]);
    const csv = await cli('--csv');
    expect(csv.stdout.split('\r\n')[0]).toBe(
      'day,home,enabled_users,active_users,peak_signed_in,messages,bytes',
    );
    expect(csv.stdout).toContain(`,${t.domain},3,2,2,2,13`);
  });
});
