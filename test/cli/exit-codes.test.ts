import { describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';

const run = async (args: string[]) => {
  const r = await runCli(args);
  return { status: r.code, stdout: r.stdout, stderr: r.stderr };
};

describe('exit codes', () => {
  it('are the same with and without --json (scripts read them)', async () => {
    const human = await run(['dns', 'records', '--domain', 'bad domain!']);
    const json = await run(['dns', 'records', '--domain', 'bad domain!', '--json']);
    expect(human.status).toBe(2);
    expect(json.status).toBe(2);
    expect(JSON.parse(json.stdout).error ?? JSON.parse(json.stdout)).toBeTruthy();
  });

  it('refuse an edge without its inside next hop, naming the key (exit 2)', async () => {
    const r = await run(['server', 'start', '--role', 'edge', '--data-dir', '/tmp/parley-edge-refused']);
    expect(r.status).toBe(2);
    expect(r.stderr.replace(/\s+›?\s*/g, ' ')).toMatch(/edge\.next: an edge needs its inside next hop/);
  });
});
