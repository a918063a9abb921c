import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  buildPidf,
  closedPresence,
  escapeXml,
  type PresenceDocument,
  parsePidf,
  presenceEntityUri,
} from '../../src/presence/pidf.js';

function fixture(name: string): string {
  return readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');
}

function parseOk(xml: string): PresenceDocument {
  const result = parsePidf(xml);
  if (!result.ok) throw new Error(result.reason);
  return result.doc;
}

describe('parsePidf on real-world publications', () => {
  it('RFC 3863 example with im:im status, prefixes and translated notes', () => {
    const doc = parseOk(fixture('rfc3863-im.xml'));
    expect(doc.entity).toBe('pres:someone@example.com');
    expect(doc.tuples).toEqual([
      {
        id: 'bs35r9',
        basic: 'open',
        contact: 'im:someone@mobilecarrier.net',
        priority: 0.8,
        note: "Don't Disturb Please!",
        timestamp: '2001-10-27T16:49:29Z',
      },
      { id: 'eg92n8', basic: 'closed', contact: 'mailto:someone@example.com', priority: 1 },
    ]);
    expect(doc.notes).toEqual(["I'll be in Tokyo next week"]);
    expect(doc.activities).toEqual(['busy']);
    expect(doc.person).toBeUndefined();
    expect(doc.raw).toBe(fixture('rfc3863-im.xml'));
  });

  it('RFC 4480 example: person activities, rpid:note skipped, other as text, devices ignored', () => {
    const doc = parseOk(fixture('rfc4480-person.xml'));
    expect(doc.person).toEqual({ id: 'p1', activities: ['away', 'gone fishing'], note: 'Scoring 120' });
    expect(doc.activities).toEqual(['away', 'gone fishing']);
    expect(doc.tuples.map((t) => [t.id, t.basic, t.contact])).toEqual([
      ['bs35r9', 'open', 'im:someone@mobilecarrier.net'],
      ['ty4658', 'open', 'mailto:secretary@example.com'],
    ]);
    expect(doc.notes).toEqual(['Out to lunch']);
  });

  it('Linphone: on-the-phone, vendor status extension, priority', () => {
    const doc = parseOk(fixture('linphone.xml'));
    expect(doc.entity).toBe('sip:marie@sip.example.org');
    expect(doc.activities).toEqual(['on-the-phone']);
    expect(doc.person).toEqual({ id: 'ib5pyt', activities: ['on-the-phone'], note: 'In a call' });
    expect(doc.tuples[0]).toMatchObject({
      id: 'tz8tfk',
      basic: 'open',
      contact: 'sip:marie@192.168.1.23:5060;transport=udp',
      priority: 0.8,
      timestamp: '2024-03-11T09:41:07Z',
    });
  });

  it('Bria: single quotes, one line, cipid namespace', () => {
    const doc = parseOk(fixture('bria.xml'));
    expect(doc.entity).toBe('sip:1001@pbx.example.com');
    expect(doc.activities).toEqual(['busy']);
    expect(doc.person?.note).toBe('Busy');
    expect(doc.tuples).toEqual([{ id: 't7f2a6c41', basic: 'open' }]);
  });

  it('Jitsi: person before tuple, tuple note', () => {
    const doc = parseOk(fixture('jitsi.xml'));
    expect(doc.activities).toEqual(['away']);
    expect(doc.tuples).toEqual([
      { id: 't3751', basic: 'open', contact: 'sip:bob@example.com', note: 'Away' },
    ]);
  });

  it('baresip: CRLF, empty activities, busy', () => {
    const busy = parseOk(fixture('baresip-busy.xml'));
    expect(busy.activities).toEqual(['busy']);
    expect(busy.tuples[0]!.basic).toBe('open');
    // older baresip publishes the misspelt basic "unkown": read as closed, not rejected
    const unknown = parseOk(fixture('baresip-unknown.xml'));
    expect(unknown.tuples[0]!.basic).toBe('closed');
    expect(unknown.activities).toEqual([]);
    expect(unknown.person).toEqual({ id: 'p4159', activities: [] });
  });

  it('JsSIP app: im:im away mapped to RPID, entities decoded, GRUU contact', () => {
    const doc = parseOk(fixture('jssip-app.xml'));
    expect(doc.activities).toEqual(['away']);
    expect(doc.tuples[0]!.note).toBe('Back at 3 & then <free>');
    expect(doc.tuples[0]!.contact).toContain(';gr=urn:uuid:');
  });

  it('SIP.js app with arbitrary prefixes and CDATA', () => {
    const doc = parseOk(fixture('sipjs-app-prefixed.xml'));
    expect(doc.entity).toBe('sip:erin@example.com');
    expect(doc.person).toEqual({ id: 'me', activities: ['meeting', 'busy'], note: 'Weekly sync <room 4>' });
    expect(doc.tuples[0]).toEqual({
      id: 'sipjs',
      basic: 'open',
      contact: 'sip:erin@example.com',
      priority: 0.5,
    });
  });

  it('default namespace redeclared on nested elements', () => {
    const doc = parseOk(fixture('default-ns-switch.xml'));
    expect(doc.person).toEqual({ id: 'pp', activities: ['vacation'], note: 'Back on Monday' });
    expect(doc.notes).toEqual(['pidf note']);
    expect(doc.tuples).toEqual([{ id: 'a', basic: 'closed' }]);
  });
});

describe('parsePidf rejections', () => {
  it('refuses DOCTYPE and entity declarations (XXE, billion laughs)', () => {
    for (const name of ['xxe.xml', 'billion-laughs.xml']) {
      const result = parsePidf(fixture(name));
      expect(result.ok, name).toBe(false);
      expect(!result.ok && result.reason).toMatch(/DOCTYPE/);
    }
  });

  it('refuses undeclared entities and malformed references', () => {
    const tpl = (note: string) =>
      `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"><note>${note}</note></presence>`;
    expect(parsePidf(tpl('&nbsp;')).ok).toBe(false);
    expect(parsePidf(tpl('&#x110000;')).ok).toBe(false);
    expect(parseOk(tpl('caf&#233; &#x263A;')).notes).toEqual(['café ☺']);
  });

  it('enforces the size cap', () => {
    const big = `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"><note>${'x'.repeat(70_000)}</note></presence>`;
    const result = parsePidf(big);
    expect(result.ok).toBe(false);
    expect(parsePidf(big, { maxBytes: 100_000 }).ok).toBe(true);
    // bytes, not characters
    const multibyte = `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"><note>${'é'.repeat(40_000)}</note></presence>`;
    expect(parsePidf(multibyte).ok).toBe(false);
  });

  it('refuses non-PIDF, broken or entity-less documents', () => {
    const cases = [
      '',
      'not xml',
      '<presence entity="sip:a@b"/>',
      '<presence xmlns="urn:ietf:params:xml:ns:pidf"/>',
      '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity=""/>',
      '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"><tuple></presence>',
      '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"><x:tuple/></presence>',
      '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"></presence><presence/>',
      '<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" entity="sip:a@b"/>',
    ];
    for (const xml of cases) expect(parsePidf(xml).ok, xml).toBe(false);
  });

  it('refuses absurd nesting without overflowing the stack', () => {
    const deep = `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b">${'<a>'.repeat(5000)}${'</a>'.repeat(5000)}</presence>`;
    expect(parsePidf(deep).ok).toBe(false);
  });

  it('tolerates a byte order mark and synthesizes missing tuple ids', () => {
    const doc = parseOk(
      '\uFEFF<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"><tuple><status><basic>OPEN</basic></status></tuple></presence>',
    );
    expect(doc.tuples).toEqual([{ id: 't0', basic: 'open' }]);
  });

  it('ignores out-of-range priorities', () => {
    const doc = parseOk(
      '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"><tuple id="x"><status><basic>open</basic></status>' +
        '<contact priority="7">sip:a@b</contact></tuple></presence>',
    );
    expect(doc.tuples[0]).toEqual({ id: 'x', basic: 'open', contact: 'sip:a@b' });
  });
});

describe('buildPidf', () => {
  it('round-trips through parsePidf', () => {
    const doc: PresenceDocument = {
      entity: 'sip:alice@example.com',
      tuples: [
        {
          id: 'desk',
          basic: 'open',
          contact: 'sip:alice@10.0.0.5;transport=tcp',
          priority: 0.8,
          note: 'At my desk',
          timestamp: '2024-01-01T10:00:00Z',
        },
        { id: 'phone', basic: 'closed' },
      ],
      notes: ['Working from Lyon'],
      activities: ['on-the-phone', 'gone fishing'],
      person: { id: 'p1', activities: ['on-the-phone', 'gone fishing'], note: 'Call me later' },
    };
    const xml = buildPidf(doc);
    const { raw, ...parsed } = parseOk(xml);
    expect(raw).toBe(xml);
    expect(parsed).toEqual(doc);
    expect(xml).toContain('<rpid:other>gone fishing</rpid:other>');
  });

  it('escapes everything and drops characters XML cannot carry', () => {
    const nasty = `"><script>&'\u0001\uD800x`;
    const xml = buildPidf({
      entity: `sip:a@b?x=${nasty}`,
      tuples: [{ id: nasty, basic: 'open', contact: nasty, note: nasty }],
      notes: [nasty],
      activities: [nasty],
      person: { id: nasty, activities: [], note: nasty },
    });
    expect(xml).not.toContain('<script>');
    const doc = parseOk(xml);
    const cleaned = `"><script>&'x`;
    expect(doc.entity).toBe(`sip:a@b?x=${cleaned}`);
    expect(doc.tuples[0]!.note).toBe(cleaned);
    expect(doc.tuples[0]!.contact).toBe(cleaned);
    expect(doc.notes).toEqual([cleaned]);
    expect(doc.activities).toEqual([cleaned]);
    expect(doc.person?.note).toBe(cleaned);
    expect(doc.tuples[0]!.id).toMatch(/^[A-Za-z_][A-Za-z0-9._-]*$/);
  });

  it('keeps ids unique and valid', () => {
    const xml = buildPidf({
      entity: 'sip:a@b',
      tuples: [
        { id: '1abc', basic: 'open' },
        { id: '1abc', basic: 'closed' },
        { id: '', basic: 'closed' },
      ],
      notes: [],
      activities: ['away'],
    });
    const ids = parseOk(xml).tuples.map((t) => t.id);
    expect(new Set(ids).size).toBe(3);
    for (const id of ids) expect(id).toMatch(/^[A-Za-z_][A-Za-z0-9._-]*$/);
    expect(parseOk(xml).person?.activities).toEqual(['away']);
  });

  it('puts a SIP scheme on bare addresses of record', () => {
    expect(presenceEntityUri('alice@example.com')).toBe('sip:alice@example.com');
    expect(presenceEntityUri('pres:alice@example.com')).toBe('pres:alice@example.com');
    expect(
      parseOk(buildPidf({ entity: 'alice@example.com', tuples: [], notes: [], activities: [] })).entity,
    ).toBe('sip:alice@example.com');
  });
});

describe('closedPresence', () => {
  it('is one closed tuple and nothing else', () => {
    const doc = parseOk(closedPresence('sip:alice@example.com'));
    expect(doc.entity).toBe('sip:alice@example.com');
    expect(doc.tuples).toEqual([{ id: 'offline', basic: 'closed' }]);
    expect(doc.activities).toEqual([]);
    expect(doc.notes).toEqual([]);
    expect(doc.person).toBeUndefined();
    expect(closedPresence('alice@example.com')).toBe(closedPresence('sip:alice@example.com'));
  });
});

describe('escapeXml', () => {
  it('escapes the five specials', () => {
    expect(escapeXml(`<a href="x">'&'</a>`)).toBe('&lt;a href=&quot;x&quot;&gt;&apos;&amp;&apos;&lt;/a&gt;');
    expect(escapeXml('😀 ok')).toBe('😀 ok');
  });
});
