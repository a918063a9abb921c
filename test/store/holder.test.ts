import { spawn } from 'node:child_process';
import { hostname } from 'node:os';
import { describe, expect, it } from 'vitest';
import { holderIsDead, lockHolder, processAlive } from '../../src/store/holder.js';

/** The pid of a process that ran and has exited (and was reaped). */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await new Promise((resolve) => child.on('exit', resolve));
  return child.pid as number;
}

describe('processAlive', () => {
  it('is true for this process and for init (pid 1)', () => {
    expect(processAlive(process.pid)).toBe(true);
    expect(processAlive(1)).toBe(true);
  });

  it('is false for a process that has exited and for what is no pid', async () => {
    expect(processAlive(await deadPid())).toBe(false);
    for (const pid of [0, -1, Number.NaN, 1.5]) expect(processAlive(pid)).toBe(false);
  });
});

describe('holderIsDead', () => {
  it('is true for a holder of this host whose process has exited', async () => {
    expect(holderIsDead(`${hostname()}:${await deadPid()}`)).toBe(true);
  });

  it('is false for a live holder, this process, another host, or a holder it cannot read', async () => {
    expect(holderIsDead(`${hostname()}:1`)).toBe(false);
    expect(holderIsDead(lockHolder())).toBe(false);
    expect(holderIsDead(`not-${hostname()}:${await deadPid()}`)).toBe(false);
    for (const odd of ['', hostname(), `${hostname()}:`, `${hostname()}:x`, `${hostname()}:-4`]) {
      expect(holderIsDead(odd)).toBe(false);
    }
  });

  it('reads the holder lockHolder writes', () => {
    expect(lockHolder()).toBe(`${hostname()}:${process.pid}`);
  });
});
