import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportContactLists } from '../src/contacts/export.js';
import { importContactLists } from '../src/contacts/import.js';
import { migrate } from '../src/store/migrate.js';
import { createPgliteDatabase } from '../src/store/pglite.js';
import { seedContactLists } from '../src/store/seed.js';
import { createStore } from '../src/store/store.js';

/**
 * Contact-list benchmark: export of N users with C contacts each from the embedded store
 * (PGlite) to one XML file, then import of that file into a second store that has the
 * users but no lists (replace mode). Prints wall time, users per second and the peak
 * resident and heap memory sampled during each phase: the streaming design should keep
 * the heap flat however large N is.
 */
export interface BenchContactsOptions {
  /** Users (default 100,000). */
  users?: number;
  /** Contacts per user (default 50). */
  contacts?: number;
  log?: (line: string) => void;
}

export interface ContactsPhase {
  users: number;
  seconds: number;
  usersPerSecond: number;
  peakRssMiB: number;
  peakHeapMiB: number;
}

export interface BenchContactsResult {
  users: number;
  contactsPerUser: number;
  fileBytes: number;
  export: ContactsPhase;
  import: ContactsPhase;
}

/** Samples memory while fn runs: a statistic of the run, not an assertion. */
async function measure<T>(users: number, fn: () => Promise<T>): Promise<{ value: T; phase: ContactsPhase }> {
  let peakRss = process.memoryUsage().rss;
  let peakHeap = process.memoryUsage().heapUsed;
  const sampler = setInterval(() => {
    const m = process.memoryUsage();
    peakRss = Math.max(peakRss, m.rss);
    peakHeap = Math.max(peakHeap, m.heapUsed);
  }, 50);
  const t0 = performance.now();
  try {
    const value = await fn();
    const seconds = (performance.now() - t0) / 1000;
    return {
      value,
      phase: {
        users,
        seconds,
        usersPerSecond: users / seconds,
        peakRssMiB: peakRss / 1048576,
        peakHeapMiB: peakHeap / 1048576,
      },
    };
  } finally {
    clearInterval(sampler);
  }
}

export async function benchContacts(opts: BenchContactsOptions = {}): Promise<BenchContactsResult> {
  const users = opts.users ?? 100_000;
  const contacts = opts.contacts ?? 50;
  const log = opts.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const dir = mkdtempSync(join(tmpdir(), 'parley-bench-contacts-'));
  const source = await createPgliteDatabase();
  const target = await createPgliteDatabase();
  try {
    await Promise.all([migrate(source), migrate(target)]);
    log(`contacts bench: seeding ${users} users x ${contacts} contacts`);
    await seedContactLists(source, users, contacts);
    await seedContactLists(target, users, 0);

    const file = join(dir, 'all.xml');
    const exported = await measure(users, () =>
      exportContactLists(createStore(source), { scope: { kind: 'all' }, out: file }),
    );
    const fileBytes = statSync(file).size;
    log(
      line(
        'export',
        exported.phase,
        `${(fileBytes / 1048576).toFixed(0)} MiB, ${exported.value.contacts} contacts`,
      ),
    );

    const imported = await measure(users, () =>
      importContactLists(createStore(target), { file, mode: 'replace' }),
    );
    log(
      line(
        'import',
        imported.phase,
        `${imported.value.status}, ${imported.value.changed} lists written (validate + write passes)`,
      ),
    );
    return { users, contactsPerUser: contacts, fileBytes, export: exported.phase, import: imported.phase };
  } finally {
    await Promise.all([source.close(), target.close()]);
    rmSync(dir, { recursive: true, force: true });
  }
}

function line(name: string, p: ContactsPhase, note: string): string {
  return `${name}: ${p.users} users in ${p.seconds.toFixed(1)}s = ${p.usersPerSecond.toFixed(0)} users/s, peak RSS ${p.peakRssMiB.toFixed(0)} MiB, peak heap ${p.peakHeapMiB.toFixed(0)} MiB (${note})`;
}
