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
