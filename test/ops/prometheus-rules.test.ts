import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/ops/metrics.js';
import { ensureDebianCommand } from '../support/debian.js';

const dir = resolve(import.meta.dirname, '../../fixtures/prometheus');
const rules = resolve(dir, 'parley-rules.yml');

/** The alerting rules shipped for Parley: valid for Prometheus, firing when they should, on metrics that exist. */
describe('fixtures/prometheus rules', () => {
  const promtool = () => ensureDebianCommand('promtool', 'prometheus');

  it('pass promtool check rules', () => {
    const run = spawnSync(promtool(), ['check', 'rules', rules], { encoding: 'utf8' });
    expect(run.status, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toMatch(/SUCCESS: 7 rules found/);
  });

  it('fire on the series that should raise them (promtool test rules)', () => {
    const run = spawnSync(promtool(), ['test', 'rules', resolve(dir, 'parley-rules.test.yml')], {
      encoding: 'utf8',
      cwd: dir,
    });
    expect(run.status, run.stdout + run.stderr).toBe(0);
  });

  it('name only metrics a Parley server exports', async () => {
    const metrics = createMetrics({
      processMetrics: false,
      sources: { storeUp: async () => 1, certificateExpiry: () => 2_000_000_000 },
    });
    const exported = new Set(
      [...(await metrics.render()).matchAll(/^# TYPE (\S+)/gm)].map((m) => m[1].replace(/_total$/, '')),
    );
    const named = new Set(
      [...readFileSync(rules, 'utf8').matchAll(/\b(parley_[a-z_]+)/g)].map((m) =>
        m[1].replace(/_total$/, ''),
      ),
    );
    expect([...named].filter((n) => !exported.has(n))).toEqual([]);
  });
});
