import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/ops/log.js';
import { collectUsageReport, renderUsageReport, usageCsv } from '../../src/reports/usage.js';
import { UsageRecorder } from '../../src/reports/usage-recorder.js';
import type { UsageIncrement } from '../../src/store/usage.js';

describe('usage recorder', () => {
  it('sends counts, the peak and each active user once a day, starting afresh on a new UTC day', async () => {
    const sent: UsageIncrement[] = [];
    let now = Date.parse('2030-01-01T23:59:00Z');
    let signedIn = 3;
    const r = new UsageRecorder({
      repo: { add: async (inc) => void sent.push(inc) },
      home: 'h',
      serverId: 's',
      signedIn: () => signedIn,
      log: silentLogger(),
      now: () => now,
    });
    r.userActive('a@x');
    r.userActive('a@x');
    r.messageRouted(10);
    r.messageRouted(5);
    signedIn = 7;
    r.sample();
    signedIn = 2;
    await r.flush();
    r.userActive('a@x');
    now = Date.parse('2030-01-02T00:01:00Z');
    await r.flush();
    r.userActive('a@x');
    await r.flush();
    expect(sent).toEqual([
      {
        day: '2030-01-01',
        home: 'h',
        serverId: 's',
        messages: 2,
        bytes: 15,
        signedIn: 7,
        activeUsers: ['a@x'],
      },
      { day: '2030-01-01', home: 'h', serverId: 's', messages: 0, bytes: 0, signedIn: 7, activeUsers: [] },
      {
        day: '2030-01-02',
        home: 'h',
        serverId: 's',
        messages: 0,
        bytes: 0,
        signedIn: 2,
        activeUsers: ['a@x'],
      },
    ]);
  });

  it('keeps what a failed write carried for the next', async () => {
    let fail = true;
    const sent: UsageIncrement[] = [];
    const r = new UsageRecorder({
      repo: {
        add: async (inc) => {
          if (fail) throw new Error('down');
          sent.push(inc);
        },
      },
      home: 'h',
      serverId: 's',
      signedIn: () => 0,
      log: silentLogger(),
    });
    r.messageRouted(4);
    r.userActive('b@x');
    await expect(r.flush()).rejects.toThrow('down');
    fail = false;
    await r.flush();
    expect(sent[0]).toMatchObject({ messages: 1, bytes: 4, activeUsers: ['b@x'] });
  });

  it('writes many newly active users a thousand at a time, serving the event loop between writes', async () => {
    const sent: UsageIncrement[] = [];
    const between: number[] = [];
    let fail = false;
    const r = new UsageRecorder({
      repo: {
        add: async (inc) => {
          if (fail && sent.length === 1) throw new Error('down');
          sent.push(inc);
          // Runs only if the recorder gives the event loop a turn before its next write.
          setImmediate(() => between.push(sent.length));
        },
      },
      home: 'h',
      serverId: 's',
      signedIn: () => 9,
      log: silentLogger(),
    });
    const users = Array.from({ length: 2_500 }, (_, i) => `u${i}@x`);
    for (const u of users) r.userActive(u);
    r.messageRouted(3);
    await r.flush();
    expect(sent.map((inc) => inc.activeUsers.length)).toEqual([1_000, 1_000, 500]);
    expect(sent.flatMap((inc) => inc.activeUsers)).toEqual(users);
    expect(sent.map((inc) => [inc.messages, inc.bytes, inc.signedIn])).toEqual([
      [1, 3, 9],
      [0, 0, 9],
      [0, 0, 9],
    ]);
    expect(between.slice(0, 2)).toEqual([1, 2]);

    // A write that fails half way: what was written stays written, the rest waits for the next flush.
    sent.length = 0;
    for (const u of users) r.userActive(`again-${u}`);
    r.messageRouted(3);
    fail = true;
    await expect(r.flush()).rejects.toThrow('down');
    fail = false;
    await r.flush();
    expect(sent.flatMap((inc) => inc.activeUsers)).toEqual(users.map((u) => `again-${u}`));
    expect(sent.reduce((n, inc) => n + inc.messages, 0)).toBe(1);
  });
});

describe('usage report', () => {
  it('covers the days asked (the until day included) and renders a table and CSV', async () => {
    let asked: string[] = [];
    const report = await collectUsageReport(
      {
        days: async (since, until) => {
          asked = [since, until];
          return [
            {
              day: '2030-01-01',
              home: 'pool, one',
              activeUsers: 3,
              peakSignedIn: 2,
              messages: 10,
              bytes: 100,
            },
          ];
        },
        enabledUsersByHome: async () => [{ home: 'pool, one', enabledUsers: 40 }],
      },
      { since: new Date('2030-01-01T10:00:00Z'), until: new Date('2030-01-07T00:00:00Z'), unplacedHome: 'x' },
    );
    expect(asked).toEqual(['2030-01-01', '2030-01-08']);
    expect(report.totals).toEqual({ messages: 10, bytes: 100, peakSignedIn: 2 });
    expect(renderUsageReport(report).join('\n')).toMatch(/2030-01-01 {2}pool, one +3 +2 +10 +100/);
    expect(usageCsv(report)).toBe(
      'day,home,enabled_users,active_users,peak_signed_in,messages,bytes\r\n2030-01-01,"pool, one",40,3,2,10,100\r\n',
    );
  });
});
