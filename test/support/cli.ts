import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

export const CLI = resolve(import.meta.dirname, '../../bin/run.js');

export interface CliRun {
  code: number | null;
  /** stdout and stderr as they came. */
  output: string;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  timeoutMs?: number;
  cwd?: string;
  /** Added to the environment; a variable set to undefined is removed. */
  env?: Record<string, string | undefined>;
  /** Written to stdin, then closed (default: stdin closed at once). */
  stdin?: string;
}

/**
 * The one way tests run the built `parley` CLI, as a person would: its own process, a
 * working directory, an environment and stdin. Asynchronous: a test whose server lives in
 * the test process must keep its event loop free to answer the CLI (spawnSync would
 * deadlock it).
 */
export function runCli(args: string[], opts: CliOptions | number = {}): Promise<CliRun> {
  const o = typeof opts === 'number' ? { timeoutMs: opts } : opts;
  return new Promise((done, fail) => {
    const child = spawnCli(args, o);
    let output = '';
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => {
      output += d.toString();
      stdout += d.toString();
    });
    child.stderr!.on('data', (d: Buffer) => {
      output += d.toString();
      stderr += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 60_000);
    child.on('error', fail);
    child.on('close', (code) => {
      clearTimeout(timer);
      done({ code, output, stdout, stderr });
    });
    child.stdin!.end(o.stdin ?? '');
  });
}

/**
 * Starts the built CLI and leaves it running (`parley server start`): the caller reads its
 * output and stops it. PARLEY_CONFIG is cleared unless given, so no configuration of the
 * machine leaks in.
 */
export function spawnCli(args: string[], opts: Omit<CliOptions, 'stdin' | 'timeoutMs'> = {}): ChildProcess {
  const env: NodeJS.ProcessEnv = { ...process.env, PARLEY_CONFIG: '' };
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return spawn(process.execPath, [CLI, ...args], { cwd: opts.cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
}

/**
 * The process that runs the server `spawnCli(['server', 'start', ...])` started: the
 * launcher's one child when the command ran the server with its semi-space size
 * (server.semiSpaceMb, src/roles/heap.ts), else the spawned process itself.
 */
export function serverProcessOf(pid: number): number {
  const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
    .trim()
    .split(/\s+/)
    .filter(Boolean);
  if (children.length !== 1) return pid;
  const argv = readFileSync(`/proc/${children[0]}/cmdline`, 'utf8').split('\0');
  return argv.some((a) => a.startsWith('--max-semi-space-size=')) ? Number(children[0]) : pid;
}

/** Whether a process has ended (gone from /proc, or a zombie waiting for its reaper). */
export function processGone(pid: number): boolean {
  try {
    return /\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}
