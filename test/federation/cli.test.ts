import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { startTestServer, type TestServer } from '../support/server.js';

/**
 * `parley federation ...` through the built CLI, against a running server's store (the
 * commands reach it through the server's socket): what an administrator types, the exit
 * statuses and --json results a script reads.
 */
describe('parley federation (built CLI)', { timeout: 180_000 }, () => {
  let t: TestServer;
  let store: string[];
  const json = async (args: string[]) => {
    const { code, output } = await runCli([...args, ...store, '--json']);
    return { code, body: JSON.parse(output.slice(output.indexOf('{'), output.lastIndexOf('}') + 1)) };
  };

  beforeAll(async () => {
    t = await startTestServer();
    store = ['--data-dir', t.dataDir, '--domain', t.domain];
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('allows, blocks and lists partners; one domain is on one list', async () => {
    const added = await json([
      'federation',
      'allow',
      'add',
      'Partner.Example.',
      '--edge',
      'sip.partner.example',
    ]);
    expect(added).toMatchObject({
      code: 0,
      body: {
        domain: 'partner.example',
        action: 'allow',
        edge: 'sip.partner.example',
        previous: null,
        changed: true,
      },
    });
    const blocked = await json(['federation', 'block', 'add', 'partner.example', '--note', 'abuse']);
    expect(blocked.body).toMatchObject({ action: 'block', previous: 'allow', changed: true, edge: null });
    await json(['federation', 'clearinghouse', 'set', 'ch.example']);
    await json(['federation', 'allow', 'add', 'friend.example']);
    const shown = await json(['federation', 'show']);
    expect(shown.body).toEqual({
      domain: 'example.com',
      default: 'closed',
      allowed: [{ domain: 'friend.example', edge: 'SRV _sipfederationtls._tcp', note: '' }],
      blocked: [{ domain: 'partner.example', note: 'abuse' }],
      clearinghouse: 'ch.example',
    });
    const human = await runCli(['federation', 'allow', 'list', ...store]);
    expect(human.code).toBe(0);
    expect(human.output).toMatch(/friend\.example\s+SRV/);
  });

  it('says what is wrong, with a catalogued code and exit status', async () => {
    const missing = await json(['federation', 'allow', 'remove', 'nobody.example']);
    expect(missing.code).toBe(3);
    expect(missing.body.error?.code ?? missing.body.code).toBe('FEDERATION_NOT_LISTED');
    const invalid = await json(['federation', 'allow', 'add', 'not_a_domain']);
    expect(invalid.code).toBe(2);
    expect(JSON.stringify(invalid.body)).toMatch(/not a valid domain name/);
    const own = await json(['federation', 'allow', 'add', 'example.com']);
    expect(own.code).toBe(2);
    const conflict = await json(['federation', 'allow', 'add', 'ch.example']);
    expect(conflict.code).toBe(4);
    expect(conflict.body.error?.code ?? conflict.body.code).toBe('FEDERATION_CONFLICT');
  });
});
