import { type ChildProcess, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processGone, spawnCli } from '../support/cli.js';
import { freePort } from '../support/ports.js';
import { readMetric } from '../support/server.js';

/**
 * `parley server start` runs the server with V8's young generation at server.semiSpaceMb
 * (src/roles/heap.ts): V8 reads --max-semi-space-size only at start, so the command starts
 * the server again in a child node given it. What V8 really got is read back from the
 * server's own /metrics (parley_heap_size_limit_bytes: V8's heap limit, which counts three
 * semi-spaces) and compared with plain node processes given the same flag.
 */

/** V8's heap limit in a node started with these flags. */
function heapLimitWith(flags: string[]): number {
  const out = execFileSync(process.execPath, [
    ...flags,
    '-p',
    "require('node:v8').getHeapStatistics().heap_size_limit",
  ]);
  return Number(out.toString().trim());
}

/** pids whose parent is `pid` (from /proc). */
function childrenOf(pid: number): number[] {
  return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
}

interface Running {
  child: ChildProcess;
  http: number;
  stderr: () => string;
}

async function start(dataDir: string, extra: string[], env: Record<string, string> = {}): Promise<Running> {
  const http = await freePort();
  const child = spawnCli(
    [
      'server',
      'start',
      '--domain',
      'example.com',
      '--data-dir',
      dataDir,
      '--udp',
      'none',
      '--tcp',
      '127.0.0.1:0',
      '--ws',
      'none',
      '--http',
      `127.0.0.1:${http}`,
      '--log-level',
      'warn',
      ...extra,
    ],
    { env },
  );
  let err = '';
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
  });
  child.stdout!.resume();
  const deadline = Date.now() + 90_000;
  for (;;) {
    const up = await fetch(`http://127.0.0.1:${http}/health`)
      .then((r) => r.status === 200)
      .catch(() => false);
    if (up) break;
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`server did not come up:\n${err}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return { child, http, stderr: () => err };
}

function heapLimitOf(server: Running): Promise<number> {
  return readMetric(`http://127.0.0.1:${server.http}`, 'parley_heap_size_limit_bytes');
}

/** Signals the launcher (or the one process) and resolves with its exit code. */
async function stop(server: Running, signal: NodeJS.Signals): Promise<number | null> {
  server.child.kill(signal);
  const [code] = await once(server.child, 'exit');
  return code as number | null;
}

describe('parley server start: the young generation', () => {
  let dataDir: string;
  const v8Default = heapLimitWith([]);
  const with32 = heapLimitWith(['--max-semi-space-size=32']);
  const with64 = heapLimitWith(['--max-semi-space-size=64']);

  beforeAll(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'parley-heap-'));
    // Each size gives a different limit on this machine, so the comparison can fail.
    expect(new Set([v8Default, with32, with64]).size).toBe(3);
  });
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('runs the server in a child with the default semi-space; SIGTERM to the launcher stops both, exit 0', async () => {
    const server = await start(dataDir, []);
    const pid = server.child.pid!;
    expect(await heapLimitOf(server)).toBe(with64);
    const [serverPid] = childrenOf(pid);
    expect(serverPid).toBeDefined();
    expect(readFileSync(`/proc/${serverPid}/cmdline`, 'utf8').split('\0')).toContain(
      '--max-semi-space-size=64',
    );
    expect(await stop(server, 'SIGTERM'), server.stderr()).toBe(0);
    expect(server.stderr()).toContain('Stopped.');
    // The server stopped cleanly, not orphaned: its process is gone with the launcher.
    expect(() => readFileSync(`/proc/${serverPid}/stat`)).toThrow();
  }, 120_000);

  it('takes --semi-space-mb, and 0 keeps V8 own size in one process', async () => {
    const at32 = await start(dataDir, ['--semi-space-mb', '32']);
    expect(await heapLimitOf(at32)).toBe(with32);
    expect(await stop(at32, 'SIGINT')).toBe(0);

    const plain = await start(dataDir, ['--semi-space-mb', '0']);
    expect(await heapLimitOf(plain)).toBe(v8Default);
    expect(childrenOf(plain.child.pid!)).toEqual([]);
    expect(await stop(plain, 'SIGTERM')).toBe(0);
  }, 120_000);

  it('leaves a size given in NODE_OPTIONS as it is, in one process', async () => {
    const server = await start(dataDir, [], { NODE_OPTIONS: '--max-semi-space-size=32' });
    expect(await heapLimitOf(server)).toBe(with32);
    expect(childrenOf(server.child.pid!)).toEqual([]);
    expect(await stop(server, 'SIGTERM')).toBe(0);
  }, 120_000);

  it('a server whose launcher is killed outright (SIGKILL) ends at once too', async () => {
    const server = await start(dataDir, []);
    const [serverPid] = childrenOf(server.child.pid!);
    await stop(server, 'SIGKILL');
    const deadline = Date.now() + 5_000;
    while (!processGone(serverPid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(processGone(serverPid)).toBe(true);
  }, 120_000);
});
