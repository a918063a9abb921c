import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  ACTIVITY_PRECEDENCE,
  activityRank,
  composeDocument,
  composePresence,
  type PresencePublication,
} from '../../src/presence/compose.js';
import { buildPidf, closedPresence, type PresenceDocument, parsePidf } from '../../src/presence/pidf.js';

const ENTITY = 'sip:alice@example.com';

function body(
  tuples: PresenceDocument['tuples'],
  extra: { activities?: string[]; note?: string; notes?: string[]; personId?: string } = {},
): string {
  const doc: PresenceDocument = {
    entity: ENTITY,
    tuples,
    notes: extra.notes ?? [],
    activities: extra.activities ?? [],
  };
  if (extra.activities || extra.note !== undefined) {
    doc.person = { id: extra.personId ?? 'p', activities: extra.activities ?? [], note: extra.note };
    if (extra.note === undefined) delete doc.person.note;
  }
  return buildPidf(doc);
}

function pub(etag: string, minute: number, xml: string): PresencePublication {
  return { etag, body: xml, updatedAt: new Date(Date.UTC(2024, 0, 1, 9, minute)) };
}

function composed(publications: PresencePublication[]): PresenceDocument {
  const result = parsePidf(composePresence(ENTITY, publications));
  if (!result.ok) throw new Error(result.reason);
  const { raw: _raw, ...doc } = result.doc;
  return doc;
}

describe('composePresence', () => {
  it('is the closed document without publications, or with only broken ones', () => {
    expect(composePresence(ENTITY, [])).toBe(closedPresence(ENTITY));
    expect(composePresence(ENTITY, [pub('e1', 0, '<not pidf/>')])).toBe(closedPresence(ENTITY));
    expect(composeDocument(ENTITY, [])).toBeUndefined();
  });

  it('passes a single publication through', () => {
    const xml = body([{ id: 'desk', basic: 'open', contact: 'sip:alice@10.0.0.2' }], {
      activities: ['away'],
      note: 'brb',
      notes: ['hello'],
      personId: 'pa',
    });
    expect(composed([pub('e1', 0, xml)])).toEqual({
      entity: ENTITY,
      tuples: [{ id: 'desk', basic: 'open', contact: 'sip:alice@10.0.0.2' }],
      notes: ['hello'],
      activities: ['away'],
      person: { id: 'pa', activities: ['away'], note: 'brb' },
    });
  });

  it('unions tuples, later publication wins a duplicate id, open tuples first', () => {
    const doc = composed([
      pub('phone', 5, body([{ id: 'shared', basic: 'open', note: 'newer' }])),
      pub(
        'desk',
        1,
        body([
          { id: 'desk', basic: 'closed' },
          { id: 'shared', basic: 'closed', note: 'older' },
        ]),
      ),
      pub('tablet', 3, body([{ id: 'tablet', basic: 'open', contact: 'sip:t@x', priority: 0.9 }])),
    ]);
    expect(doc.tuples).toEqual([
      { id: 'tablet', basic: 'open', contact: 'sip:t@x', priority: 0.9 },
      { id: 'shared', basic: 'open', note: 'newer' },
      { id: 'desk', basic: 'closed' },
    ]);
  });

  it('is open if any endpoint is open and closed if all are', () => {
    const closedOnly = composed([
      pub('a', 0, body([{ id: 'a', basic: 'closed' }])),
      pub('b', 1, body([{ id: 'b', basic: 'closed' }])),
    ]);
    expect(closedOnly.tuples.every((t) => t.basic === 'closed')).toBe(true);
    const oneOpen = composed([
      pub('a', 0, body([{ id: 'a', basic: 'closed' }])),
      pub('b', 1, body([{ id: 'b', basic: 'open' }])),
    ]);
    expect(oneOpen.tuples[0]).toEqual({ id: 'b', basic: 'open' });
  });

  it('busy beats on-the-phone beats away, whatever the order of publication', () => {
    const phone = body([{ id: 'phone', basic: 'open' }], { activities: ['on-the-phone'], personId: 'pp' });
    const desk = body([{ id: 'desk', basic: 'open' }], {
      activities: ['away'],
      note: 'idle',
      personId: 'pd',
    });
    const dnd = body([{ id: 'web', basic: 'open' }], {
      activities: ['busy'],
      note: 'Do not disturb',
      personId: 'pw',
    });
    expect(composed([pub('p', 1, phone), pub('d', 2, desk)]).activities).toEqual(['on-the-phone']);
    expect(composed([pub('d', 1, desk), pub('p', 2, phone)]).activities).toEqual(['on-the-phone']);
    const all = composed([pub('w', 0, dnd), pub('p', 1, phone), pub('d', 2, desk)]);
    expect(all.activities).toEqual(['busy']);
    expect(all.person).toEqual({ id: 'pw', activities: ['busy'], note: 'Do not disturb' });
  });

  it('equal ranks go to the most recent publication', () => {
    const older = body([{ id: 'a', basic: 'open' }], { activities: ['vacation'], note: 'old' });
    const newer = body([{ id: 'b', basic: 'open' }], { activities: ['travel'], note: 'new' });
    expect(composed([pub('n', 9, newer), pub('o', 1, older)]).person).toEqual({
      id: 'p',
      activities: ['travel'],
      note: 'new',
    });
    // same timestamp: input order breaks the tie (later in the list = later)
    expect(composed([pub('o', 1, older), pub('n', 1, newer)]).activities).toEqual(['travel']);
  });

  it('keeps the winning publication’s whole activity set', () => {
    const meetingBusy = body([{ id: 'a', basic: 'open' }], { activities: ['meeting', 'busy'] });
    const phone = body([{ id: 'b', basic: 'open' }], { activities: ['on-the-phone'] });
    expect(composed([pub('a', 0, meetingBusy), pub('b', 1, phone)]).activities).toEqual(['meeting', 'busy']);
  });

  it('ignores activities of closed endpoints while another endpoint is open', () => {
    const closedBusy = body([{ id: 'old-phone', basic: 'closed' }], { activities: ['busy'] });
    const openAway = body([{ id: 'desk', basic: 'open' }], { activities: ['away'] });
    const openPlain = body([{ id: 'web', basic: 'open' }]);
    expect(composed([pub('c', 5, closedBusy), pub('o', 1, openAway)]).activities).toEqual(['away']);
    // no open endpoint carries activities: fall back to the closed ones
    expect(composed([pub('c', 5, closedBusy), pub('w', 1, openPlain)]).activities).toEqual(['busy']);
  });

  it('takes the person note from the newest person when nobody has activities', () => {
    const doc = composed([
      pub('a', 1, body([{ id: 'a', basic: 'open' }], { note: 'old note', personId: 'pa' })),
      pub('b', 2, body([{ id: 'b', basic: 'open' }], { note: 'new note', personId: 'pb' })),
      pub('c', 3, body([{ id: 'c', basic: 'open' }])),
    ]);
    expect(doc.activities).toEqual([]);
    expect(doc.person).toEqual({ id: 'pb', activities: [], note: 'new note' });
  });

  it('merges presence notes, most recent first, without duplicates', () => {
    const doc = composed([
      pub('a', 1, body([{ id: 'a', basic: 'open' }], { notes: ['In Lyon', 'shared'] })),
      pub('b', 2, body([{ id: 'b', basic: 'open' }], { notes: ['shared', 'On the train'] })),
    ]);
    expect(doc.notes).toEqual(['shared', 'On the train', 'In Lyon']);
  });

  it('uses the presentity entity, whatever the publications claim', () => {
    const foreign = buildPidf({
      entity: 'sip:mallory@evil.com',
      tuples: [{ id: 'x', basic: 'open' }],
      notes: [],
      activities: [],
    });
    expect(composed([pub('x', 0, foreign)]).entity).toBe(ENTITY);
    expect(parsePidf(composePresence('alice@example.com', [pub('x', 0, foreign)])).ok).toBe(true);
  });

  it('accepts ISO strings and epoch milliseconds as update times', () => {
    const away = body([{ id: 'a', basic: 'open' }], { activities: ['vacation'] });
    const travel = body([{ id: 'b', basic: 'open' }], { activities: ['travel'] });
    expect(
      composed([
        { etag: '1', body: travel, updatedAt: '2024-01-01T10:00:00Z' },
        { etag: '2', body: away, updatedAt: Date.parse('2024-01-01T09:00:00Z') },
      ]).activities,
    ).toEqual(['travel']);
  });

  it('can hide endpoint contacts from watchers', () => {
    const xml = body([{ id: 'desk', basic: 'open', contact: 'sip:alice@192.168.1.7:5060', priority: 0.5 }]);
    const out = composePresence(ENTITY, [pub('e', 0, xml)], { includeContacts: false });
    expect(out).not.toContain('192.168.1.7');
    expect(out).toContain('<basic>open</basic>');
  });

  it('composes real client publications: Linphone phone and Bria desktop', () => {
    const fixture = (name: string) => readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');
    const doc = composed([pub('linphone', 2, fixture('linphone.xml')), pub('bria', 1, fixture('bria.xml'))]);
    expect(doc.entity).toBe(ENTITY);
    expect(doc.tuples.map((t) => t.id).sort()).toEqual(['t7f2a6c41', 'tz8tfk']);
    expect(doc.activities).toEqual(['busy']);
    expect(doc.person?.note).toBe('Busy');
  });
});

describe('activityRank', () => {
  it('orders the documented precedence', () => {
    const ranks = [...ACTIVITY_PRECEDENCE, 'vacation', 'away', 'unknown'].map(activityRank);
    for (let i = 1; i < ranks.length; i++) expect(ranks[i - 1]).toBeGreaterThan(ranks[i]!);
    expect(activityRank('gone fishing')).toBe(activityRank('vacation'));
  });
});
