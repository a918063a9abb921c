import { expect, it } from 'vitest';
import { benchSync } from '../../bench/sync.js';

it('the sync benchmark runs end to end at a small scale, a seeded forest size included', async () => {
  const lines: string[] = [];
  const r = await benchSync({ users: 2000, changes: 100, scale: [4000], log: (l) => lines.push(l) });
  expect(lines.some((l) => l.startsWith('full sync: 2000 contacts'))).toBe(true);
  expect(lines.some((l) => l.startsWith('incremental sync: 100 of 100'))).toBe(true);
  expect(r.full.usersPerSecond).toBeGreaterThan(0);
  // The seeded forest is loaded as a full sync leaves it: its incremental finds only the changes.
  const seeded = r.scale?.runs.find((run) => run.users === 4000);
  expect(seeded?.full).toBeUndefined();
  expect(seeded?.incremental).toMatchObject({ updated: 100, read: 100 });
  console.log(lines.join('\n'));
}, 240_000);
