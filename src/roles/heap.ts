import { spawn } from 'node:child_process';
import { once } from 'node:events';
import inspector from 'node:inspector';
import { setFlagsFromString } from 'node:v8';

/**
 * V8 settings for a server process, applied before it starts (`parley server start`, its
 * workers included).
 *
 * Allocation-site pretenuring off: V8 watches which allocation sites' objects survive a
 * scavenge and, past a threshold, allocates that site's objects straight in the old
 * generation. A server's start (100,000 credentials preloaded) and its first REGISTER storm
 * (every binding new and kept) make the SIP parser's and transaction layer's sites look
 * long-lived; from then on every request, its header list and its responses were born old
 * and dead at once, and the young objects they point to survived each scavenge through
 * those dead parents (the old-to-new remembered set) and were promoted in turn. Under
 * REGISTER load 40-45% of what the server allocated survived its scavenges, which took
 * 40% of the main thread and kept the GC helper threads busy; without pretenuring about 3%
 * survives (bench/README.md, "REGISTER: where the CPU went").
 */
export function tuneServerHeap(): void {
  setFlagsFromString('--no-allocation-site-pretenuring');
}

/** Marks the server process `parley server start` runs with its heap flags; holds the launcher's pid. */
const LAUNCHER_ENV = 'PARLEY_SERVER_LAUNCHER';
const SEMI_SPACE_FLAG = /^--max[-_]semi[-_]space[-_]size(=|$)/;
const FORWARDED_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGUSR2'] as const;

/**
 * Whether this process must start the server in a child with `--max-semi-space-size`: V8
 * reads it only when an isolate starts, so `setFlagsFromString` cannot change it here. Not
 * when the size is 0 (V8's own), in the child itself, or when the process was already given
 * a size (node's command line or NODE_OPTIONS): that one stands.
 */
export function needsSemiSpaceRelaunch(semiSpaceMb: number): boolean {
  if (semiSpaceMb === 0 || process.env[LAUNCHER_ENV]) return false;
  const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)];
  return !given.some((a) => SEMI_SPACE_FLAG.test(a));
}

/**
 * Runs this same command line again in a child node with `--max-semi-space-size=<mb>` (and
 * this process's own node flags, so `--cpu-prof` or `--inspect` reach the server; NODE_OPTIONS
 * is inherited, and this process's inspector is closed first so the child can take its port).
 * The child shares stdio and sits in its own process group: a terminal's Ctrl-C reaches this
 * process only, which passes SIGINT, SIGTERM, SIGHUP and SIGUSR2 on, once each. Resolves with
 * the child's exit code; a child ended by a signal ends this process by the same signal.
 */
export async function relaunchWithSemiSpace(semiSpaceMb: number): Promise<number> {
  if (inspector.url()) inspector.close();
  const child = spawn(
    process.execPath,
    [...process.execArgv, `--max-semi-space-size=${semiSpaceMb}`, ...process.argv.slice(1)],
    { stdio: 'inherit', detached: true, env: { ...process.env, [LAUNCHER_ENV]: String(process.pid) } },
  );
  const forward = (signal: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  };
  for (const s of FORWARDED_SIGNALS) process.on(s, forward);
  try {
    const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
    if (signal) {
      for (const s of FORWARDED_SIGNALS) process.off(s, forward);
      process.kill(process.pid, signal);
    }
    return code ?? 1;
  } finally {
    for (const s of FORWARDED_SIGNALS) process.off(s, forward);
  }
}

/**
 * In the child relaunchWithSemiSpace started: a launcher killed outright (SIGKILL, the OOM
 * killer) passes nothing on, and whoever did it meant the server to end at once: it ends
 * the same way (SIGKILL) within a quarter of a second, as one process would have.
 */
export function followLauncher(): void {
  const launcher = Number(process.env[LAUNCHER_ENV]);
  if (!launcher || process.ppid !== launcher) return;
  const timer = setInterval(() => {
    if (process.ppid !== launcher) process.kill(process.pid, 'SIGKILL');
  }, 250);
  timer.unref();
}
