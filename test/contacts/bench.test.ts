import { expect, it } from 'vitest';
import { benchContacts } from '../../bench/contacts.js';

it('the contacts benchmark runs the CLI end to end at a small scale and reports its peak RSS', async () => {
  const lines: string[] = [];
  const r = await benchContacts({ users: 2000, contacts: 20, log: (l) => lines.push(l) });
  expect(lines.some((l) => l.startsWith('export (pglite): 2000 users'))).toBe(true);
  expect(
    lines.some(
      (l) => l.startsWith('import (pglite): 2000 users') && l.includes('complete, 2000 lists written'),
    ),
  ).toBe(true);
  // The import's own account of its phases (its --json report).
  expect(lines.some((l) => l.startsWith('import phases (pglite): validate'))).toBe(true);
  const [pglite] = r.engines;
  expect(pglite.import.phases?.write.cpuSeconds).toBeGreaterThan(0);
  expect(pglite).toMatchObject({ engine: 'pglite', contacts: 40_000 });
  expect(pglite.fileBytes).toBeGreaterThan(0);
  expect(pglite.export.exitCode).toBe(0);
  expect(pglite.import.exitCode).toBe(0);
  // Sampled from /proc: a node process with PGlite is tens of MiB at the very least.
  expect(pglite.export.peakRssMiB).toBeGreaterThan(30);
  expect(pglite.import.peakRssMiB).toBeGreaterThan(30);
  // The floors handle the same rows as the commands: the read, the export's one row per user.
  expect(pglite.floor.read.rows).toBe(2000);
  expect(pglite.floor.copy.rows).toBe(40_000);
  expect(pglite.floor.copy.cpuSeconds).toBeGreaterThan(0);
  expect(lines.some((l) => l.startsWith('floor (pglite): bare COPY: 40000 rows'))).toBe(true);
  console.log(lines.join('\n'));
}, 300_000);
