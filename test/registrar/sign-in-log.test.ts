import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/ops/log.js';
import { type Binding, LocationTable } from '../../src/registrar/location.js';
import { SignInLog } from '../../src/registrar/sign-in-log.js';

function binding(over: Partial<Binding>): Binding {
  return {
    aor: 'alice@example.com',
    contact: 'sip:alice@192.0.2.1:5060',
    callId: 'c1',
    cseq: 1,
    expiresAt: 10_000,
    q: 1,
    userAgent: 'Desk/2',
    serverId: 's1',
    path: [],
    flowOnly: false,
    source: { transport: 'udp', address: '192.0.2.1:5060' },
    ...over,
  };
}

function logged(level: 'info' | 'debug') {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line));
      done();
    },
  });
  return { lines, log: createLogger({ log: { level, format: 'json' } }, { destination }) };
}

const flush = () => new Promise((r) => setImmediate(r));

describe('sign-in log', () => {
  it('gives every way out its reason; a replaced contact is no sign-out', async () => {
    let now = 0;
    const table = new LocationTable(() => now, { connectionGraceMs: 0 });
    const { lines, log } = logged('info');
    new SignInLog(log).watch(table);
    table.upsert(binding({ contact: 'sip:a@desk' }));
    table.remove('alice@example.com', 'sip:a@desk');
    table.upsert(binding({ contact: 'sip:a@phone', expiresAt: 5_000 }));
    now = 6_000;
    table.expire();
    table.upsert(binding({ contact: 'sip:a@laptop', connectionId: 'c9' }));
    table.flowClosed('c9');
    table.upsert(binding({ contact: 'sip:a@tablet', instanceId: 'i1', regId: 1 }));
    // The same instance registering a new contact replaces the old one: it did not leave.
    table.upsert(binding({ contact: 'sip:a@tablet2', instanceId: 'i1', regId: 1 }));
    table.signOut('alice@example.com');
    await flush();
    expect(lines.map((l) => [l.event, l.contact, l.reason])).toEqual([
      ['sign_out', 'sip:a@desk', 'unregistered'],
      ['sign_out', 'sip:a@phone', 'expired'],
      ['sign_out', 'sip:a@laptop', 'connection_lost'],
      ['sign_out', 'sip:a@tablet2', 'signed_out_by_admin'],
    ]);
    expect(lines[0]).toMatchObject({
      level: 'info',
      user: 'alice@example.com',
      transport: 'udp',
      address: '192.0.2.1:5060',
      userAgent: 'Desk/2',
    });
  });

  it('logs a new endpoint at info and a refresh only at debug', async () => {
    const info = logged('info');
    const debug = logged('debug');
    const b = binding({ expiresAt: 3_600_000 });
    for (const { log } of [info, debug]) {
      new SignInLog(log).registered(b, true, 0);
      new SignInLog(log).registered(b, false, 1_000);
    }
    await flush();
    expect(info.lines.map((l) => l.event)).toEqual(['sign_in']);
    expect(info.lines[0]).toMatchObject({ msg: 'signed in', expires: 3600, userAgent: 'Desk/2' });
    expect(debug.lines.map((l) => [l.event, l.expires])).toEqual([
      ['sign_in', 3600],
      ['refresh', 3599],
    ]);
  });
});
