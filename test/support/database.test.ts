import { existsSync, mkdirSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { removeStaleStoreTemplates } from '../support/database.js';

const made: string[] = [];
const folder = (name: string, ageMs: number) => {
  const path = join(tmpdir(), name);
  mkdirSync(join(path, 'data'), { recursive: true });
  const at = new Date(Date.now() - ageMs);
  utimesSync(path, at, at);
  made.push(path);
  return path;
};

afterAll(() => {
  for (const path of made) rmSync(path, { recursive: true, force: true });
});

it('the suite teardown removes unused templates of other migration sets and old half-made ones, nothing in use', () => {
  const tag = `${process.pid}x${Date.now()}`;
  const hour = 60 * 60 * 1000;
  const old = folder(`parley-test-store-old${tag}`, 2 * hour);
  const recent = folder(`parley-test-store-new${tag}`, 10 * 60 * 1000);
  const deadPartial = folder(`parley-test-store-old${tag}.${process.pid}.partial`, 2 * hour);
  const livePartial = folder(`parley-test-store-new${tag}.${process.pid}.partial`, 0);
  const removed = removeStaleStoreTemplates();
  expect(removed).toEqual(expect.arrayContaining([old, deadPartial]));
  expect(removed).not.toContain(recent);
  expect(removed).not.toContain(livePartial);
  expect([old, recent, deadPartial, livePartial].map(existsSync)).toEqual([false, true, false, true]);
});
