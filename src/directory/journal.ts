import { hostname } from 'node:os';

/**
 * Who holds the directory sync's lock, and whether that holder still lives. The lock and
 * the run journal themselves are tables of the store (src/store/directory-journal.ts).
 */

export function currentHolder(): string {
  return `${hostname()}:${process.pid}`;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A lock held by a process that no longer runs on this host can be taken at once. */
export function holderIsDead(holder: string): boolean {
  const [host, pid] = holder.split(':');
  return host === hostname() && Number(pid) !== process.pid && !processAlive(Number(pid));
}
