import { describe, expect, it } from 'vitest';
import {
  buildWatcherInfo,
  parseWatcherInfo,
  type WatcherInfoDocument,
} from '../../src/presence/watcherinfo.js';

describe('watcherinfo (RFC 3858)', () => {
  it('round-trips a full document', () => {
    const doc: WatcherInfoDocument = {
      version: 3,
      state: 'full',
      lists: [
        {
          resource: 'sip:alice@example.com',
          package: 'presence',
          watchers: [
            {
              id: 'w1',
              uri: 'sip:bob@example.com',
              status: 'active',
              event: 'approved',
              durationSubscribed: 509,
              expiration: 3091,
            },
            {
              id: 'w2',
              uri: 'sip:carol@partner.org',
              status: 'pending',
              event: 'subscribe',
              displayName: 'Carol "C" <Ltd>',
            },
          ],
        },
      ],
    };
    const xml = buildWatcherInfo(doc);
    expect(xml).toContain('xmlns="urn:ietf:params:xml:ns:watcherinfo"');
    expect(xml).toContain('display-name="Carol &quot;C&quot; &lt;Ltd&gt;"');
    expect(parseWatcherInfo(xml)).toEqual({ ok: true, doc });
  });

  it('builds an empty list and a partial document', () => {
    const xml = buildWatcherInfo({
      version: 0,
      state: 'partial',
      lists: [{ resource: 'sip:a@b', package: 'presence', watchers: [] }],
    });
    expect(parseWatcherInfo(xml)).toEqual({
      ok: true,
      doc: {
        version: 0,
        state: 'partial',
        lists: [{ resource: 'sip:a@b', package: 'presence', watchers: [] }],
      },
    });
  });

  it('parses the RFC 3858 section 5 example', () => {
    const xml = `<?xml version="1.0"?>
<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="0" state="full">
  <watcher-list resource="sip:professor@example.net" package="presence">
    <watcher status="active" id="8ajksjda7s" duration-subscribed="509" event="approved">sip:userA@example.net</watcher>
    <watcher status="pending" id="hh8juja87s997-ass7" display-name="Mr. Subscriber" event="subscribe">sip:userB@example.org</watcher>
  </watcher-list>
</watcherinfo>`;
    const parsed = parseWatcherInfo(xml);
    expect(parsed.ok && parsed.doc.lists[0]!.watchers.map((w) => [w.uri, w.status, w.displayName])).toEqual([
      ['sip:userA@example.net', 'active', undefined],
      ['sip:userB@example.org', 'pending', 'Mr. Subscriber'],
    ]);
  });

  it('rejects bad documents', () => {
    expect(parseWatcherInfo('<x/>').ok).toBe(false);
    expect(parseWatcherInfo('<watcherinfo version="a" state="full"/>').ok).toBe(false);
    expect(parseWatcherInfo('<watcherinfo version="1" state="half"/>').ok).toBe(false);
    expect(
      parseWatcherInfo(
        '<watcherinfo version="1" state="full"><watcher-list resource="r" package="presence"><watcher id="1" status="happy" event="subscribe">sip:a@b</watcher></watcher-list></watcherinfo>',
      ).ok,
    ).toBe(false);
    expect(parseWatcherInfo('<!DOCTYPE x><watcherinfo version="1" state="full"/>').ok).toBe(false);
  });
});
