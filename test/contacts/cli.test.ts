import { describe, expect, it } from 'vitest';
import { fromCatalogued } from '../../src/cli/errors.js';
import { importOutcomeError, importSummaryLines, withProgress } from '../../src/contacts/cli.js';
import type { ImportResult } from '../../src/contacts/import.js';

const base: ImportResult = {
  status: 'complete',
  file: 'f.xml',
  mode: 'merge',
  dryRun: false,
  usersInFile: 3,
  imported: 3,
  changed: 2,
  unchanged: 1,
  errors: [],
  successes: [],
  successesTruncated: false,
  failures: [],
  phases: {
    validate: { seconds: 1, cpuSeconds: 1 },
    ownerLookup: { seconds: 0.1, cpuSeconds: 0.1 },
    write: { seconds: 2, cpuSeconds: 1.5 },
  },
};

describe('contacts command helpers', () => {
  it('runs work under listr2 or with plain lines and returns its result', async () => {
    const interactive = await withProgress('t', { interactive: true }, async (progress) => {
      progress('x', 100);
      return 42;
    });
    expect(interactive).toBe(42);
    const lines: string[] = [];
    const value = await withProgress(
      'Importing',
      { interactive: false, log: (l) => lines.push(l) },
      async (p) => {
        for (let i = 1; i <= 25_000; i++) p('validated', i);
        return 'done';
      },
    );
    expect(value).toBe('done');
    expect(lines).toEqual(['Importing: validated 10000 users', 'Importing: validated 20000 users']);
  });

  it('maps import outcomes to catalogued exit statuses', () => {
    expect(importOutcomeError(base)).toBeUndefined();
    const failure = {
      user: 'sip:x@y.com',
      code: 'UNKNOWN_USER' as const,
      reason: 'no user',
      line: 3,
      column: 3,
    };
    expect(
      fromCatalogued(importOutcomeError({ ...base, status: 'partial', failures: [failure] }))?.exit,
    ).toBe(6);
    expect(
      fromCatalogued(importOutcomeError({ ...base, status: 'failed', imported: 0, failures: [failure] }))
        ?.exit,
    ).toBe(1);
    const invalid = { ...base, status: 'invalid' as const, errors: [{ line: 2, column: 1, reason: 'bad' }] };
    expect(fromCatalogued(importOutcomeError(invalid))).toMatchObject({
      code: 'CONTACT_LIST_INVALID',
      exit: 2,
    });
    expect(importSummaryLines(invalid)).toEqual([
      'f.xml was rejected; nothing was imported:',
      '  line 2, column 1: bad',
    ]);
  });
});
