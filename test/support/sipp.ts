import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ensureDebianCommand } from './debian.js';
import { scratchDir } from './scratch.js';

export const SIPP_SCENARIOS = resolve(import.meta.dirname, '../../fixtures/sipp');

export interface SippUser {
  user: string;
  password: string;
  domain: string;
  /** Free field (field3): a peer user or a host:port. */
  extra?: string;
}

export interface SippRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Writes a SIPp injection file (field0 user, field1 auth keyword, field2 domain, field3 extra),
 * removed when the test file ends.
 */
export function injectionFile(users: SippUser[]): string {
  const dir = scratchDir('parley-sipp-');
  const path = join(dir, 'users.csv');
  const lines = ['SEQUENTIAL'];
  for (const u of users) {
    lines.push(
      `${u.user};[authentication username=${u.user} password=${u.password}];${u.domain};${u.extra ?? ''}`,
    );
  }
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}

/** Runs SIPp to completion (real SIPp from Debian's sip-tester); exit code 0 means every call succeeded. */
export function runSipp(args: string[], timeoutMs = 60_000): Promise<SippRun> {
  const sipp = ensureDebianCommand('sipp', 'sip-tester');
  return new Promise((resolvePromise, reject) => {
    const child = spawn(
      sipp,
      [...args, '-nostdin', '-trace_err', '-error_file', join(scratchDir('sipp-err-'), 'err.log')],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ code: code ?? -1, stdout, stderr });
    });
  });
}

/** A free loopback TCP port (for a SIPp UAS to listen on). */
/** Starts a background SIPp UAS; returns a stop function. */
export function startSippUas(
  scenario: string,
  port: number,
  calls?: number,
  localIp = '127.0.0.1',
): { stop(): void; exited: Promise<number> } {
  const sipp = ensureDebianCommand('sipp', 'sip-tester');
  const child = spawn(
    sipp,
    [
      '-sf',
      scenario,
      '-t',
      't1',
      '-i',
      localIp,
      '-p',
      String(port),
      '-nostdin',
      ...(calls ? ['-m', String(calls)] : []),
    ],
    {
      stdio: 'ignore',
    },
  );
  const exited = new Promise<number>((r) => child.on('close', (c) => r(c ?? -1)));
  return { stop: () => child.kill('SIGTERM'), exited };
}

// Shared with the benchmarks: it lives in test-kit/.
export { startTlsTunnel, type TlsTunnel } from '../../test-kit/tls-tunnel.js';
