import { describe, expect, it } from 'vitest';
import { countReceived, type PoolStep, type PoolSuiteResult, renderPoolTable } from '../../bench/pool.js';

describe('SIPp -trace_counts', () => {
  it('sums the Recv columns of one request over the scenario and ignores the others', () => {
    const header = [
      'CurrentTime',
      'ElapsedTime',
      '0_SUBSCRIBE_Sent',
      '3_200_Recv',
      '4_NOTIFY_Recv',
      '4_NOTIFY_Timeout',
      '5_200_Sent',
      '8_NOTIFY_Recv',
    ].join(';');
    const row = (n: number) =>
      `2026-11-26\t11:23:47.700983\t1795692227.700983;00:00:10:000000;100;100;${n};3;${n};100;`;
    const csv = [header, row(10), row(5100), ''].join('\n');
    expect(countReceived(csv, 'NOTIFY')).toBe(5200);
    expect(countReceived(csv, 'MESSAGE')).toBeUndefined();
    expect(countReceived(undefined, 'NOTIFY')).toBeUndefined();
    expect(countReceived(header, 'NOTIFY')).toBeUndefined();
  });
});

describe('pool table', () => {
  const step = (rate: number, achieved: number, failed = 0): PoolStep => ({
    targetRate: rate,
    calls: rate * 10,
    successful: achieved * 10,
    failed,
    seconds: 10,
    achievedRate: achieved,
    latency: { p50: 1, p90: 4, p99: 12, samples: achieved * 10 },
    cpu: { frontends: 120.5, postgres: 20, haproxy: 8.1 },
    frontendRssMiB: [300, 310.5],
    sippExits: [0, 0],
  });
  const result: PoolSuiteResult = {
    machine: { cpus: 2, cpuModel: 'x', loadAverage: [1, 1, 1], node: '20', sipp: 'SIPp v3.6.1' },
    servers: { parley: 'Parley 0.1.0', postgres: 'PostgreSQL 15', haproxy: 'HAProxy version 2.6' },
    frontends: ['pool1-fe1', 'pool1-fe2'],
    users: 100_000,
    rates: [1000, 2000],
    duration: 10,
    signIn: {
      workload: 'signin',
      label: 'sign-in (REGISTER with digest) via HAProxy',
      steps: [step(1000, 1000), step(2000, 1990)],
      best: step(2000, 1990),
      sustained: step(2000, 1990),
      failedAtLowestRate: false,
    },
    message: {
      workload: 'message',
      label: 'MESSAGE pool1-fe1 -> pool1-fe2',
      steps: [step(1000, 0, 10_000)],
      failedAtLowestRate: true,
    },
    presence: {
      watchers: 200,
      watchersPerFrontend: [100, 100],
      changes: 50,
      expected: 10_000,
      sent: 10_000,
      received: 10_000,
      seconds: 4,
      notifyRate: 2500,
      failedWatchers: 0,
    },
    held: {
      users: 100_000,
      registerPass: { targetRate: 1990, successful: 100_000, failed: 0, seconds: 50, achievedRate: 2000 },
      registrations: 100_000,
      registrationsByFrontend: { 'pool1-fe1': 50_000, 'pool1-fe2': 50_000 },
      endpointsByFrontend: { 'pool1-fe1': 50_000, 'pool1-fe2': 50_000 },
      frontendRssMiB: { 'pool1-fe1': 300, 'pool1-fe2': 310 },
      idleRssMiB: { 'pool1-fe1': 90, 'pool1-fe2': 91 },
      heapUsedMiB: { 'pool1-fe1': 150, 'pool1-fe2': 151 },
      databaseMiB: 120,
      registrationsTableMiB: 40,
    },
    idleRssMiB: { 'pool1-fe1': 90, 'pool1-fe2': 91 },
    finalRssMiB: {},
    failures: [],
  };

  it('shows the best rate, the failure at the lowest rate, the fan-out and what holding the users costs', () => {
    const text = renderPoolTable(result);
    const lines = text.split('\n');
    const signIn = lines.find((l) => l.startsWith('sign-in'));
    expect(signIn).toMatch(/1,990\s+2,000\s+0\s+120\.5\/20\/8\.1\s+300\/310\.5\s+1\/4\/12 @ 1,990\/s/);
    const message = lines.find((l) => l.startsWith('MESSAGE'));
    expect(message).toMatch(/-\s+-\s+10000 \(at 1,000\/s\)/);
    expect(text).toContain('10,000 of 10,000 NOTIFYs in 4 s = 2,500 NOTIFY/s, 0 failed watchers');
    expect(text).toContain('100,000 of 100,000 users registered');
    expect(text).toContain('pool1-fe1 50,000, pool1-fe2 50,000');
    expect(text).toContain(
      'pool1-fe1 300 MiB (90 idle, heap used 150), pool1-fe2 310 MiB (91 idle, heap used 151)',
    );
    expect(text).toContain('PostgreSQL database 120 MiB, registrations table 40 MiB');
  });
});
