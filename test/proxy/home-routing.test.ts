import { describe, expect, it } from 'vitest';
import { UserHomes } from '../../src/proxy/home-routing.js';
import { parseMessage } from '../../src/sip/parser.js';

const POOL = 'sip:127.0.0.1:5070;transport=tcp';
const DIRECTOR = 'sip:127.0.0.1:5080;transport=tcp';

function homesWith(rows: Record<string, { home: string | null; address?: string }>, director?: string) {
  const asked: string[] = [];
  let now = 0;
  const homes = new UserHomes({
    home: 'legacy1',
    director,
    localEvents: ['parley-contacts'],
    now: () => now,
    find: async (aor) => {
      asked.push(aor);
      return rows[aor];
    },
  });
  return { homes, asked, rows, later: (ms: number) => (now += ms) };
}

function request(method: string, extra: string[] = []) {
  const text = [
    `${method} sip:bob@example.com SIP/2.0`,
    'Via: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKx',
    'From: <sip:alice@example.com>;tag=a',
    'To: <sip:bob@example.com>',
    'Call-ID: c1',
    `CSeq: 1 ${method}`,
    ...extra,
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
  const parsed = parseMessage(Buffer.from(text));
  if (!parsed.ok) throw new Error('bad test message');
  return parsed.message;
}

describe('UserHomes: routing between homes', () => {
  it('serves its own users here, sends moved ones to their home and unknown ones to the director', async () => {
    const { homes } = homesWith(
      {
        'carol@example.com': { home: null },
        'erin@example.com': { home: 'legacy1', address: 'sip:127.0.0.1:5060;transport=tcp' },
        'alice@example.com': { home: 'pool1', address: POOL },
      },
      DIRECTOR,
    );
    expect(await homes.nextHop('carol@example.com', false)).toBeNull();
    expect(await homes.nextHop('erin@example.com', false)).toBeNull();
    expect(await homes.nextHop('alice@example.com', false)).toBe(POOL);
    expect(await homes.nextHop('dave@example.com', false)).toBe(DIRECTOR);
    // A trusted peer already routed it by placement: never back to the director.
    expect(await homes.nextHop('dave@example.com', true)).toBeNull();
    // ... but a user placed elsewhere still goes there (edge -> pool -> legacy).
    expect(await homes.nextHop('alice@example.com', true)).toBe(POOL);
  });

  it('sends an arriving user to the home it leaves until the wave signs it out there', async () => {
    const legacy = 'sip:127.0.0.1:5060;transport=tcp';
    const homes = new UserHomes({
      home: 'pool1',
      localEvents: [],
      find: async () => ({
        home: 'pool1',
        address: POOL,
        arrivingFrom: { home: 'legacy1', address: legacy },
      }),
    });
    expect(await homes.nextHop('bob@example.com', false)).toBe(legacy);
    // From the director (the edge's requests) too.
    expect(await homes.nextHop('bob@example.com', true)).toBe(legacy);
    // Back from the legacy server, which has signed bob out already: served here.
    expect(await homes.nextHop('bob@example.com', true, true)).toBeNull();
    // Not remembered: asked again until the arrival is over.
    expect(homes.nextHop('bob@example.com', false)).toBeInstanceOf(Promise);
  });

  it('without a director, unknown users are answered here', async () => {
    const { homes } = homesWith({});
    expect(await homes.nextHop('dave@example.com', false)).toBeNull();
  });

  it('remembers a residence until the store announces a change of the user, or a minute passes', async () => {
    const { homes, asked, rows, later } = homesWith({ 'alice@example.com': { home: null } });
    expect(await homes.nextHop('Alice@example.com', false)).toBeNull();
    expect(homes.nextHop('alice@example.com', false)).toBeNull();
    expect(asked).toEqual(['alice@example.com']);
    rows['alice@example.com'] = { home: 'pool1', address: POOL };
    homes.changed('alice@example.com');
    expect(await homes.nextHop('alice@example.com', false)).toBe(POOL);
    expect(asked).toHaveLength(2);
    later(61_000);
    expect(await homes.nextHop('alice@example.com', false)).toBe(POOL);
    expect(asked).toHaveLength(3);
  });

  it('does not remember a lookup that raced a change notice', async () => {
    const { homes, asked } = homesWith({ 'alice@example.com': { home: null } });
    const pending = homes.nextHop('alice@example.com', false);
    homes.changed('alice@example.com');
    await pending;
    await homes.nextHop('alice@example.com', false);
    expect(asked).toHaveLength(2);
  });

  it('PUBLISH and the contact list stay with the sender; other requests follow the recipient', () => {
    const { homes } = homesWith({});
    expect(homes.follows(request('PUBLISH', ['Event: presence']))).toBe(false);
    expect(homes.follows(request('SUBSCRIBE', ['Event: parley-contacts']))).toBe(false);
    expect(homes.follows(request('SUBSCRIBE', ['Event: presence;id=1']))).toBe(true);
    expect(homes.follows(request('MESSAGE'))).toBe(true);
    expect(homes.follows(request('INVITE'))).toBe(true);
  });
});
