import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Attribute, Change } from 'ldapts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { parseDirectoryConfig } from '../../src/directory/config.js';
import { prepareCentral } from '../../src/directory/schema.js';
import { computeUserHa1 } from '../../src/registrar/ha1.js';
import { UserRepository } from '../../src/store/users.js';
import { runCli } from '../support/cli.js';
import { pidf, TestClient, type Watch } from '../support/jssip.js';
import { startPool, type TestPool } from '../support/pool.js';
import { PresenceEndpoint } from '../support/presence-endpoint.js';
import type { RawMessage } from '../support/raw-sip.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { type SlapdInstance, startSlapd } from '../support/slapd.js';

/**
 * A user an administrator disables or removes is signed out of a running standard server at
 * once, whichever way the change reaches the store: `parley users disable/remove` or
 * `parley directory replicate` (the central forest says so), both as separate processes on
 * the server's data folder. Real JsSIP clients over WebSocket see it happen.
 */

const DOMAIN = 'example.com';
const CENTRAL_BASE = 'dc=central,dc=example';

interface Health {
  registeredEndpoints: number;
  signedInUsers: number;
  subscriptions: number;
}

async function health(t: TestServer | string): Promise<Health> {
  const url = typeof t === 'string' ? t : `${t.server.httpUrl}/health`;
  return (await fetch(url)).json() as Promise<Health>;
}

type RegisterEvent = { response?: { status_code: number } };

/**
 * The status of the client's next REGISTER that gets an answer. Its connection may just
 * have been closed by the sign-out: JsSIP then reconnects and registers by itself.
 */
function nextRegisterStatus(client: TestClient): Promise<number> {
  return new Promise((resolve) => {
    const done = (status: number) => {
      client.ua.off('registered', onRegistered);
      client.ua.off('registrationFailed', onFailed);
      resolve(status);
    };
    const onRegistered = () => done(200);
    const onFailed = (e: RegisterEvent) => {
      if (e.response) done(e.response.status_code);
    };
    client.ua.on('registered', onRegistered);
    client.ua.on('registrationFailed', onFailed);
    if (client.ua.isConnected()) client.ua.register();
  });
}

/**
 * How long a watcher waits for what a CLI command causes: the wait starts before the command,
 * so it includes starting the CLI (node, oclif, the store), seconds apiece on a loaded machine.
 */
const CLI_WAIT_MS = 30_000;

/** A MESSAGE that must not be delivered: resolves with the failure's status. */
async function messageStatus(from: TestClient, to: string): Promise<number> {
  try {
    await from.sendMessage(to, 'are you there?');
    return 200;
  } catch (err) {
    return Number(/(\d{3})\s*$/.exec((err as Error).message)?.[1] ?? 0);
  }
}

/** A user signed in, watching `watcher`, watched by it, publishing "open". */
async function signedInAndWatched(
  ws: string,
  user: string,
  password: string,
  bob: TestClient,
): Promise<{ client: TestClient; watchesBob: Watch; bobWatches: Watch }> {
  const client = await TestClient.signIn(ws, user, DOMAIN, password);
  const watchesBob = client.watch(bob.aor);
  await watchesBob.until((n) => n.state.startsWith('active'), 10_000);
  expect((await client.publish(pidf(`${user}@${DOMAIN}`, 'open', undefined, 'here'))).status).toBe(200);
  const bobWatches = bob.watch(`${user}@${DOMAIN}`);
  await bobWatches.until(
    (n) => n.state.startsWith('active') && n.body.includes('<basic>open</basic>'),
    10_000,
  );
  return { client, watchesBob, bobWatches };
}

describe('disabled and removed users are signed out of a running standard server', () => {
  let t: TestServer;
  let ws: string;
  let bob: TestClient;
  let users: UserRepository;
  const clients: TestClient[] = [];

  beforeAll(async () => {
    t = await startTestServer();
    users = new UserRepository(t.server.db);
    ws = `ws://127.0.0.1:${t.wsPort}`;
    for (const name of ['bob', 'alice', 'carol']) await t.addUser(name, `${name}-secret`);
    bob = await TestClient.signIn(ws, 'bob', DOMAIN, 'bob-secret');
    clients.push(bob);
  }, 60_000);

  afterAll(async () => {
    for (const c of clients) await c.stop().catch(() => undefined);
    await t?.stop();
  });

  it('`users disable`: refused at the next REGISTER, bindings gone, subscriptions rejected, watchers see offline', async () => {
    const {
      client: alice,
      watchesBob,
      bobWatches,
    } = await signedInAndWatched(ws, 'alice', 'alice-secret', bob);
    clients.push(alice);
    const before = await health(t);

    const offline = bobWatches.next((n) => n.body.includes('<basic>closed</basic>'), CLI_WAIT_MS);
    const rejected = watchesBob.until((n) => n.final && n.state.includes('reason=rejected'), CLI_WAIT_MS);
    const cli = await runCli([
      'users',
      'disable',
      'alice',
      '--domain',
      DOMAIN,
      '--data-dir',
      t.dataDir,
      '--json',
    ]);
    expect(cli.code, cli.output).toBe(0);

    // RFC 6665 4.1.3 "rejected": authorization withdrawn, the subscriber should not retry.
    await rejected;
    // Her publications are gone: bob's subscription stays, and shows her offline.
    await offline;
    await expect
      .poll(async () => (await health(t)).registeredEndpoints, { timeout: 5_000 })
      .toBe(before.registeredEndpoints - 1);
    expect(await messageStatus(bob, `alice@${DOMAIN}`)).toBeGreaterThanOrEqual(400);
    // Refused as a wrong password is (a new challenge), so a stranger learns nothing of the account.
    expect(await nextRegisterStatus(alice)).toBe(401);
    expect((await health(t)).registeredEndpoints).toBe(before.registeredEndpoints - 1);
    expect(bobWatches.notifications.some((n) => n.final)).toBe(false);
  }, 60_000);

  it('`users remove`: bindings gone, its subscriptions end, watchers are told the resource is gone', async () => {
    const {
      client: carol,
      watchesBob,
      bobWatches,
    } = await signedInAndWatched(ws, 'carol', 'carol-secret', bob);
    clients.push(carol);
    const before = await health(t);

    const gone = bobWatches.until((n) => n.final && n.state.includes('reason=noresource'), CLI_WAIT_MS);
    const rejected = watchesBob.until((n) => n.final && n.state.includes('reason=rejected'), CLI_WAIT_MS);
    const cli = await runCli([
      'users',
      'remove',
      'carol',
      '--yes',
      '--domain',
      DOMAIN,
      '--data-dir',
      t.dataDir,
      '--json',
    ]);
    expect(cli.code, cli.output).toBe(0);

    await rejected;
    await gone;
    await expect
      .poll(async () => (await health(t)).registeredEndpoints, { timeout: 5_000 })
      .toBe(before.registeredEndpoints - 1);
    expect(await messageStatus(bob, `carol@${DOMAIN}`)).toBe(404);
    expect(await nextRegisterStatus(carol)).toBe(401);
    expect((await health(t)).registeredEndpoints).toBe(before.registeredEndpoints - 1);
  }, 60_000);

  describe('`directory replicate` from the central forest', () => {
    let central: SlapdInstance;
    let configFile: string;

    const setCentral = (uid: string, changes: Change[]) =>
      central.adminClient().then(async (c) => {
        try {
          await c.modify(`uid=${uid},ou=people,${CENTRAL_BASE}`, changes);
        } finally {
          await c.unbind();
        }
      });
    const replace = (type: string, values: string[]) =>
      new Change({ operation: 'replace', modification: new Attribute({ type, values }) });

    beforeAll(async () => {
      const people = ['dave', 'erin'].map(
        (uid) =>
          `dn: uid=${uid},ou=people,${CENTRAL_BASE}\nobjectClass: inetOrgPerson\nuid: ${uid}\ncn: ${uid}\nsn: ${uid}\ndisplayName: ${uid}\n`,
      );
      central = await startSlapd({
        baseDn: CENTRAL_BASE,
        ldif: [
          `dn: ou=people,${CENTRAL_BASE}\nobjectClass: organizationalUnit\nou: people\n`,
          ...people,
        ].join('\n'),
      });
      process.env.SIGNOUT_CENTRAL_PW = central.adminPassword;
      process.env.SIGNOUT_CONFIG_PW = central.configPassword;
      const directory = {
        central: {
          url: central.url,
          bindDn: central.adminDn,
          bindPasswordEnv: 'SIGNOUT_CENTRAL_PW',
          baseDn: CENTRAL_BASE,
          contactContainer: `ou=parley-contacts,${CENTRAL_BASE}`,
          sipDomain: DOMAIN,
          schemaAdmin: { bindDn: central.configDn, bindPasswordEnv: 'SIGNOUT_CONFIG_PW' },
        },
        // Replication reads the central forest only; sync would read this one.
        forests: [
          {
            name: 'unused',
            url: 'ldap://127.0.0.1:9',
            bindDn: 'cn=nobody',
            bindPasswordEnv: 'SIGNOUT_CENTRAL_PW',
            baseDn: 'dc=unused',
          },
        ],
      };
      await prepareCentral(parseDirectoryConfig(directory, { file: 'test.yaml' }).central, {
        env: process.env,
      });
      for (const uid of ['dave', 'erin']) {
        await setCentral(uid, [
          new Change({
            operation: 'add',
            modification: new Attribute({ type: 'objectClass', values: ['parleyUser'] }),
          }),
          new Change({
            operation: 'add',
            modification: new Attribute({ type: 'parleySipAddress', values: [`${uid}@${DOMAIN}`] }),
          }),
          new Change({
            operation: 'add',
            modification: new Attribute({ type: 'parleyEnabled', values: ['TRUE'] }),
          }),
        ]);
      }
      configFile = join(t.dataDir, 'parley-directory.yaml');
      writeFileSync(configFile, stringify({ domain: DOMAIN, database: { dataDir: t.dataDir }, directory }));
      const first = await runCli(['directory', 'replicate', '--config', configFile, '--json']);
      expect(first.code, first.output).toBe(0);
      // Directory users get their digest secrets from an administrator (set-password).
      for (const uid of ['dave', 'erin']) {
        const u = await users.getUser(`${uid}@${DOMAIN}`);
        expect(u?.source).toBe('ldap:central');
        await users.setCredentials(u!.id, DOMAIN, computeUserHa1(`${uid}@${DOMAIN}`, `${uid}-secret`));
      }
    }, 120_000);

    afterAll(async () => {
      await central?.stop();
    });

    it('a user disabled in the central forest is signed out at once', async () => {
      const {
        client: dave,
        watchesBob,
        bobWatches,
      } = await signedInAndWatched(ws, 'dave', 'dave-secret', bob);
      clients.push(dave);
      const before = await health(t);

      await setCentral('dave', [replace('parleyEnabled', ['FALSE'])]);
      const offline = bobWatches.next((n) => n.body.includes('<basic>closed</basic>'), CLI_WAIT_MS);
      const rejected = watchesBob.until((n) => n.final && n.state.includes('reason=rejected'), CLI_WAIT_MS);
      const cli = await runCli(['directory', 'replicate', '--config', configFile, '--json']);
      expect(cli.code, cli.output).toBe(0);
      expect(JSON.parse(cli.output)).toMatchObject({ updated: 1 });

      await rejected;
      await offline;
      await expect
        .poll(async () => (await health(t)).registeredEndpoints, { timeout: 5_000 })
        .toBe(before.registeredEndpoints - 1);
      // Refused as a wrong password is (a new challenge), so a stranger learns nothing of the account.
      expect(await nextRegisterStatus(dave)).toBe(401);
      expect((await health(t)).registeredEndpoints).toBe(before.registeredEndpoints - 1);
    }, 60_000);

    it('a user that vanished from the central forest is deleted with --prune and signed out', async () => {
      const {
        client: erin,
        watchesBob,
        bobWatches,
      } = await signedInAndWatched(ws, 'erin', 'erin-secret', bob);
      clients.push(erin);
      const before = await health(t);

      await setCentral('erin', [
        new Change({
          operation: 'delete',
          modification: new Attribute({ type: 'parleySipAddress', values: [] }),
        }),
      ]);
      const gone = bobWatches.until((n) => n.final && n.state.includes('reason=noresource'), CLI_WAIT_MS);
      const rejected = watchesBob.until((n) => n.final && n.state.includes('reason=rejected'), CLI_WAIT_MS);
      const cli = await runCli(['directory', 'replicate', '--prune', '--config', configFile, '--json']);
      expect(cli.code, cli.output).toBe(0);
      expect(JSON.parse(cli.output)).toMatchObject({ deleted: 1 });

      await rejected;
      await gone;
      await expect
        .poll(async () => (await health(t)).registeredEndpoints, { timeout: 5_000 })
        .toBe(before.registeredEndpoints - 1);
      expect(await users.getUser(`erin@${DOMAIN}`)).toBeUndefined();
    }, 60_000);
  });
});

const terminated = (reason: string) => (m: RawMessage) =>
  (m.header('subscription-state') ?? '').startsWith(`terminated;reason=${reason}`);
const showsClosed = (m: RawMessage) =>
  (m.header('subscription-state') ?? '').startsWith('active') && m.body.includes('<basic>closed</basic>');
const showsOpen = (m: RawMessage) => m.body.includes('<basic>open</basic>');

describe('disabled and removed users are signed out of every front-end of a pool', () => {
  let pool: TestPool;
  let ben: PresenceEndpoint;
  const endpoints: PresenceEndpoint[] = [];
  const fe = (i: number) => pool.frontends[i];
  const frontendsOf = async (aor: string) =>
    new Set((await pool.store.registrations.listBindings(aor)).map((b) => b.serverId));
  const open = async (i: number, user: string) => {
    const e = await PresenceEndpoint.open(fe(i).tcpPort, user, DOMAIN, `${user}-secret`);
    endpoints.push(e);
    return e;
  };

  beforeAll(async () => {
    pool = await startPool({ frontends: 2, domain: DOMAIN });
    for (const name of ['ben', 'ann', 'cid']) await pool.addUser(name, `${name}-secret`);
    ben = await open(1, 'ben');
    expect(await ben.register()).toBe(200);
  }, 120_000);

  afterAll(async () => {
    for (const e of endpoints) e.close();
    await pool?.stop();
  });

  it('`users disable` on the pool store: each front-end drops her endpoint and connection, her subscription ends, watchers elsewhere see her offline', async () => {
    // Her desk on the first front-end, her phone on the second; ben (second) watches her.
    const desk = await open(0, 'ann');
    const phone = await open(1, 'ann');
    expect(await desk.register()).toBe(200);
    expect(await phone.register()).toBe(200);
    await expect.poll(() => frontendsOf(desk.aor), { timeout: 5_000 }).toEqual(new Set([fe(0).id, fe(1).id]));
    expect((await desk.subscribe(ben.aor)).status).toBe(200);
    await desk.notify(ben.aor, (m) => (m.header('subscription-state') ?? '').startsWith('active'));
    expect((await desk.publish(pidf(desk.aor, 'open', undefined, 'here'))).status).toBe(200);
    expect((await ben.subscribe(desk.aor)).status).toBe(200);
    await ben.notify(desk.aor, showsOpen);
    const seen = ben.notifies.length;

    const cli = await runCli([
      'users',
      'disable',
      'ann',
      '--domain',
      DOMAIN,
      '--database',
      pool.url,
      '--json',
    ]);
    expect(cli.code, cli.output).toBe(0);

    // RFC 6665 4.1.3 "rejected": authorization withdrawn, the subscriber should not retry.
    await desk.notify(ben.aor, terminated('rejected'));
    await ben.notify(
      desk.aor,
      (m) => ben.notifies.findIndex((n) => n.message === m) >= seen && showsClosed(m),
    );
    await expect.poll(() => frontendsOf(desk.aor), { timeout: 5_000 }).toEqual(new Set());
    // Both devices' connections are closed by the front-end that held them.
    await expect.poll(() => [desk.closed, phone.closed], { timeout: 5_000 }).toEqual([true, true]);
    const again = await open(0, 'ann');
    // Refused as a wrong password is (a new challenge), so a stranger learns nothing of the account.
    expect(await again.register()).toBe(401);
    expect(await frontendsOf(desk.aor)).toEqual(new Set());
    expect(ben.closed).toBe(false);
  }, 60_000);

  it('`users remove` on the pool store: her watchers on another front-end are told the resource is gone', async () => {
    const cid = await open(0, 'cid');
    expect(await cid.register()).toBe(200);
    expect((await cid.subscribe(ben.aor)).status).toBe(200);
    expect((await ben.subscribe(cid.aor)).status).toBe(200);
    await ben.notify(cid.aor, (m) => (m.header('subscription-state') ?? '').startsWith('active'));

    const cli = await runCli([
      'users',
      'remove',
      'cid',
      '--yes',
      '--domain',
      DOMAIN,
      '--database',
      pool.url,
      '--json',
    ]);
    expect(cli.code, cli.output).toBe(0);

    await cid.notify(ben.aor, terminated('rejected'));
    await ben.notify(cid.aor, terminated('noresource'));
    await expect.poll(() => frontendsOf(cid.aor), { timeout: 5_000 }).toEqual(new Set());
    await expect.poll(() => cid.closed, { timeout: 5_000 }).toBe(true);
  }, 60_000);
});
