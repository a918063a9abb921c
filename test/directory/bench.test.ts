import { expect, it } from 'vitest';
import { benchSync } from '../../bench/sync.js';

it('the sync benchmark runs end to end at a small scale', async () => {
  const lines: string[] = [];
  const r = await benchSync({ users: 2000, changes: 100, log: (l) => lines.push(l) });
  expect(lines.some((l) => l.startsWith('full sync: 2000 contacts'))).toBe(true);
  expect(lines.some((l) => l.startsWith('incremental sync: 100 of 100'))).toBe(true);
  expect(r.full.usersPerSecond).toBeGreaterThan(0);
  console.log(lines.join('\n'));
}, 120_000);
