import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/ops/config.js';

describe('archiving configuration', () => {
  const load = (archiving: unknown) =>
    loadConfig({ cwd: '/tmp', env: {}, overrides: { archiving } as never });

  it('is off by default, for everyone, a year, continue', () => {
    expect(loadConfig({ cwd: '/tmp', env: {} }).archiving).toEqual({
      enabled: false,
      users: [],
      groups: [],
      retentionDays: 365,
      onFailure: 'continue',
      batchSize: 500,
      flushMs: 100,
    });
  });

  it('takes users, retention and the failure policy, and names mistakes', () => {
    expect(
      load({
        enabled: true,
        users: ['Alice@Example.com'],
        groups: [' Trading '],
        onFailure: 'block',
        retentionDays: 0,
      }).archiving,
    ).toMatchObject({
      enabled: true,
      users: ['alice@example.com'],
      groups: ['trading'],
      onFailure: 'block',
      retentionDays: 0,
    });
    expect(() => load({ onFailure: 'ignore' })).toThrow(/archiving.onFailure/);
    expect(() => load({ users: ['alice'] })).toThrow(/archiving.users: "alice" is not a user address/);
    expect(() => load({ groups: [''] })).toThrow(/archiving.groups: "" is not a group name/);
    expect(() => load({ batchSize: 0 })).toThrow(/archiving.batchSize/);
    expect(() => load({ enable: true })).toThrow(/archiving.enable: unknown key/);
  });
});
