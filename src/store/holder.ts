import { hostname } from 'node:os';

/**
 * Who holds something the store records as held (an embedded data folder's owner file, the
 * directory sync's lock, a migration wave's lock) and whether that process still runs, so
 * what a crashed or killed process held can be taken over at once instead of after a
 * timeout. The one place that asks the kernel about another process.
 */

/** True while a process with this pid exists, this user's or another's. */
export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** How this process names itself as a lock's holder: `host:pid`. */
export function lockHolder(): string {
  return `${hostname()}:${process.pid}`;
}

/**
 * True only when the holder (`host:pid`, see lockHolder) is a process of this host that no
 * longer runs. A holder on another host, or one that does not read as `host:pid`, may be
 * alive for all this process can tell: false.
 */
export function holderIsDead(holder: string): boolean {
  const colon = holder.lastIndexOf(':');
  if (colon < 0 || holder.slice(0, colon) !== hostname()) return false;
  const pid = Number(holder.slice(colon + 1));
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false;
  return !processAlive(pid);
}
