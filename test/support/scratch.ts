import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

const made: string[] = [];

/**
 * A new empty folder in the temp folder, named PREFIX and a random suffix, removed with
 * everything in it when the test file that made it ends (a hook this module registers on
 * the file when the file imports it). For files a test writes, reads back or hands to a
 * process it starts (configs, SIPp injection files, certificates).
 */
export function scratchDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

afterAll(() => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
});
