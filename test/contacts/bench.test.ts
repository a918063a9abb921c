import { expect, it } from 'vitest';
import { benchContacts } from '../../bench/contacts.js';

it('the contacts benchmark runs end to end at a small scale', async () => {
  const lines: string[] = [];
  const r = await benchContacts({ users: 2000, contacts: 20, log: (l) => lines.push(l) });
  expect(lines.some((l) => l.startsWith('export: 2000 users'))).toBe(true);
  expect(
    lines.some((l) => l.startsWith('import: 2000 users') && l.includes('complete, 2000 lists written')),
  ).toBe(true);
  expect(r.fileBytes).toBeGreaterThan(0);
  console.log(lines.join('\n'));
}, 300_000);
