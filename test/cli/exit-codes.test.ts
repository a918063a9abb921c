import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const CLI = resolve(import.meta.dirname, '../../bin/run.js');
const run = (args: string[]) =>
  spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });

describe('exit codes', () => {
  it('are the same with and without --json (scripts read them)', () => {
    const human = run(['dns', 'records', '--domain', 'bad domain!']);
    const json = run(['dns', 'records', '--domain', 'bad domain!', '--json']);
    expect(human.status).toBe(2);
    expect(json.status).toBe(2);
    expect(JSON.parse(json.stdout).error ?? JSON.parse(json.stdout)).toBeTruthy();
  });

  it('refuse an edge without its inside next hop, naming the key (exit 2)', () => {
    const r = run(['server', 'start', '--role', 'edge', '--data-dir', '/tmp/parley-edge-refused']);
    expect(r.status).toBe(2);
    expect(r.stderr.replace(/\s+›?\s*/g, ' ')).toMatch(/edge\.next: an edge needs its inside next hop/);
  });
});
