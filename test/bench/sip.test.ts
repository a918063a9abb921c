import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { rewriteKamailioConfig } from '../../bench/kamailio.js';
import {
  laneShare,
  parseSippStats,
  rttPercentiles,
  type SippRun,
  summariseCpuProfile,
  sumSippRuns,
} from '../../bench/sip.js';
import { scratchDir } from '../support/scratch.js';

describe('SIPp output parsing', () => {
  it('reads the last -trace_stat line by column name, with sub-second elapsed time', () => {
    const header = 'StartTime;LastResetTime;CurrentTime;SuccessfulCall(C);FailedCall(C)';
    const row = (now: string, ok: number, failed: number) =>
      `2026-11-26\t10:21:58.000000\t1000.250000;x;2026-11-26\t10:22:06.000000\t${now};${ok};${failed}`;
    const stats = parseSippStats(
      [header, row('1005.000000', 100, 0), row('1008.250000', 20000, 3), ''].join('\n'),
    );
    expect(stats).toEqual({ successful: 20000, failed: 3, seconds: 8 });
    expect(parseSippStats(header)).toBeUndefined();
  });

  it('computes percentiles of one RTD timer from -trace_rtt', () => {
    const lines = ['Date_ms;response_time_ms;rtd_no'];
    for (let i = 1; i <= 100; i++) lines.push(`16.0;${i};register`, `16.0;999;challenge`);
    expect(rttPercentiles(lines.join('\n'), 'register')).toEqual({
      p50: 51,
      p90: 91,
      p99: 100,
      samples: 100,
    });
    expect(rttPercentiles(lines.join('\n'), 'message')).toBeUndefined();
  });

  it('splits a step over several SIPps and sums them: the slowest sets the time, missing calls fail', () => {
    expect([0, 1, 2].map((lane) => laneShare(10, 3, lane))).toEqual([4, 3, 3]);
    const run = (
      successful: number,
      failed: number,
      seconds: number,
      exit: number,
      rtt: number[],
    ): SippRun => ({
      exit,
      stats: { successful, failed, seconds },
      rtt: rtt.map((ms) => `16.0;${ms};register`).join('\n'),
      tail: exit > 1 ? 'Fatal error: connection closed' : '',
      errors: '',
    });
    const clean = sumSippRuns([run(500, 0, 10, 0, [1, 2]), run(500, 0, 12.5, 0, [3, 4])], 1000, 'register');
    expect(clean).toEqual({
      successful: 1000,
      failed: 0,
      seconds: 12.5,
      achievedRate: 80,
      latency: { p50: 3, p90: 4, p99: 4, samples: 4 },
      exit: 0,
    });
    // A SIPp that died (exit 255) after 100 calls: its 400 others count as failed.
    const broken = sumSippRuns([run(500, 0, 10, 0, [1]), run(100, 0, 2, 255, [1])], 1000, 'register');
    expect(broken.failed).toBe(400);
    expect(broken.exit).toBe(255);
    expect(broken.error).toContain('SIPp exit 255: Fatal error: connection closed');
  });
});

describe('Kamailio configuration copy', () => {
  it('rewrites the listen port, adds UDP on the same port (the UDP anchor) and keeps the rest', () => {
    const cfg = '#!KAMAILIO\nchildren=2\nlisten=tcp:127.0.0.1:5070\nauto_aliases=no\n';
    const both =
      '#!KAMAILIO\nchildren=2\nlisten=tcp:127.0.0.1:40123\nlisten=udp:127.0.0.1:40123\nauto_aliases=no\n';
    expect(rewriteKamailioConfig(cfg, 40123)).toBe(both);
    // kamailio-udp.cfg already listens on both: still one listener per transport.
    const udpAnchor =
      '#!KAMAILIO\nchildren=2\nlisten=tcp:127.0.0.1:5070\nlisten=udp:127.0.0.1:5070\nauto_aliases=no\n';
    expect(rewriteKamailioConfig(udpAnchor, 40123)).toBe(both);
  });
});

describe('CPU profile summary', () => {
  it('sums self time per function, leaves idle out and counts callers inclusively', () => {
    const dir = scratchDir('bench-prof-');
    const file = join(dir, 'x.cpuprofile');
    const frame = (functionName: string, url = '') => ({
      functionName,
      url,
      lineNumber: 0,
      columnNumber: 0,
      scriptId: '0',
    });
    writeFileSync(
      file,
      JSON.stringify({
        nodes: [
          { id: 1, callFrame: frame('(root)'), children: [2, 3] },
          { id: 2, callFrame: frame('(idle)') },
          { id: 3, callFrame: frame('outer', 'node:internal/x'), children: [4] },
          { id: 4, callFrame: frame('inner', 'node:internal/y') },
        ],
        samples: [2, 3, 4, 4, 2],
        timeDeltas: [5000, 1000, 2000, 1000, 5000],
      }),
    );
    const s = summariseCpuProfile(file);
    expect(s.totalMs).toBe(4);
    expect(s.functions.map((f) => [f.function, f.selfMs])).toEqual([
      ['inner', 3],
      ['outer', 1],
    ]);
    expect(s.functions[0].location).toBe('node:internal/y:1');
  });
});
