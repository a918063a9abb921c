import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { createStore } from '../../src/store/store.js';
import { runCli } from '../support/cli.js';
import { fresh, RawSipClient } from '../support/raw-sip.js';
import { startTestServer, type TestServer } from '../support/server.js';

/** `parley config export|import`: one deployment's client rules and federation lists carried to a second, live. */
describe('parley config export and import', () => {
  let a: TestServer;
  let b: TestServer;
  beforeAll(async () => {
    a = await startTestServer();
    b = await startTestServer({ archiving: { enabled: true } });
  });
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
  });

  it('exports the settings as YAML and imports them into another deployment, which applies them at once', async () => {
    const storeA = createStore(a.server.db);
    await storeA.clientPolicies.add({
      product: 'SIPp',
      versions: '<3.7',
      action: 'upgrade',
      upgradeUrl: 'https://u.example/sipp',
      reason: 'old',
    });
    await storeA.clientPolicies.add({ product: 'Evil', versions: '*', action: 'block' });
    await storeA.clientPolicies.setDefault({ action: 'allow', reason: '' });
    await storeA.federation.put({
      domain: 'partner.example',
      action: 'allow',
      edgeFqdn: 'sip.partner.example',
      note: 'ticket 7',
    });
    await storeA.federation.put({ domain: 'spam.example', action: 'block' });

    const file = join(a.dataDir, 'settings.yaml');
    const exported = await runCli(['config', 'export', '--data-dir', a.dataDir, '--out', file]);
    expect(exported.code, exported.output).toBe(0);
    const doc = YAML.parse(readFileSync(file, 'utf8'));
    expect(doc).toMatchObject({
      version: 1,
      clients: {
        default: { action: 'allow' },
        rules: [
          {
            product: 'SIPp',
            versions: '<3.7',
            action: 'upgrade',
            url: 'https://u.example/sipp',
            reason: 'old',
          },
          { product: 'Evil', versions: '*', action: 'block' },
        ],
      },
      federation: {
        allow: [{ domain: 'partner.example', edge: 'sip.partner.example', note: 'ticket 7' }],
        block: [{ domain: 'spam.example' }],
      },
      archiving: { enabled: false },
    });

    // The file says archiving is on where this parley.yaml (none: defaults) has it off.
    writeFileSync(file, YAML.stringify({ ...doc, archiving: { ...doc.archiving, enabled: true } }));
    const dry = await runCli(['config', 'import', file, '--data-dir', b.dataDir, '--dry-run', '--json']);
    expect(dry.code, dry.output).toBe(0);
    const plan = JSON.parse(dry.stdout);
    expect(plan).toMatchObject({ applied: false, notApplied: ['archiving'] });
    expect(plan.changes).toHaveLength(4);
    expect(await createStore(b.server.db).clientPolicies.list()).toEqual([]);

    const refused = await runCli(['config', 'import', file, '--data-dir', b.dataDir]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('without confirmation');

    const applied = await runCli(['config', 'import', file, '--data-dir', b.dataDir, '--yes']);
    expect(applied.code, applied.output).toBe(0);
    expect(applied.stdout).toContain('add clients.rules: SIPp <3.7 -> upgrade https://u.example/sipp (old)');
    expect(applied.stderr).toContain('archiving: differs from this parley.yaml; not applied');
    const storeB = createStore(b.server.db);
    expect((await storeB.clientPolicies.list()).map((r) => r.product)).toEqual(['SIPp', 'Evil']);
    expect((await storeB.federation.list('allow'))[0]).toMatchObject({
      domain: 'partner.example',
      edgeFqdn: 'sip.partner.example',
    });

    // Server B follows at once: the imported rule refuses an old SIPp.
    await expect
      .poll(async () => {
        const c = await RawSipClient.open(b.tcpPort);
        c.send(
          [
            `REGISTER sip:${b.domain} SIP/2.0`,
            `Via: SIP/2.0/TCP 127.0.0.1:${c.localPort};branch=${fresh('z9hG4bK')}`,
            `From: <sip:x@${b.domain}>;tag=${fresh('t')}`,
            `To: <sip:x@${b.domain}>`,
            `Call-ID: ${fresh('c')}`,
            'CSeq: 1 REGISTER',
            `Contact: <sip:x@127.0.0.1:${c.localPort};transport=tcp>`,
            'User-Agent: SIPp/3.6.1',
            'Content-Length: 0',
            '',
            '',
          ].join('\r\n'),
        );
        const r = await c.response();
        c.close();
        return r.status;
      })
      .toBe(403);

    // Importing again changes nothing.
    const again = await runCli(['config', 'import', file, '--data-dir', b.dataDir, '--yes', '--json']);
    expect(JSON.parse(again.stdout)).toMatchObject({ applied: false, changes: [] });
  });

  it('names every mistake of a bad file', async () => {
    const file = join(b.dataDir, 'bad.yaml');
    writeFileSync(
      file,
      YAML.stringify({ version: 2, clients: { rules: [{ product: 'A B', action: 'deny' }] } }),
    );
    const bad = await runCli(['config', 'import', file, '--data-dir', b.dataDir, '--json']);
    expect(bad.code).toBe(2);
    const error = JSON.parse(bad.stdout).error;
    expect(error.code).toBe('SETTINGS_FILE_INVALID');
    expect(error.message).toContain('version: must be 1');
    expect(error.message).toContain('clients.rules[0].product');
    expect(error.message).toContain('clients.rules[0].action: "deny" is not one of allow, block, upgrade');
  });
});
