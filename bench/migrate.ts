import { moveWave } from '../src/migration/mover.js';
import { findWave, planWaves } from '../src/migration/plan.js';
import { computeUserHa1 } from '../src/registrar/ha1.js';
import { migrate } from '../src/store/migrate.js';
import { openDatabase } from '../src/store/open.js';
import { createPgliteDatabase } from '../src/store/pglite.js';
import { seedContactLists } from '../src/store/seed.js';
import { createStore } from '../src/store/store.js';
import { startTestPostgres } from '../test-kit/postgres.js';

/**
 * Wave-migration benchmark (`npm run bench -- --migrate`): one wave of N users with C
 * contacts each (default 10,000 x 50) from a legacy standard server's embedded store
 * (PGlite) to a pool's PostgreSQL, through moveWave: copy, placement on both sides at the
 * given sign-out rate, verification. Prints total time and users per second per step.
 * Signed-in clients are not part of it (test/e2e/migrate.test.ts measures their return).
 */
export interface BenchMigrateOptions {
  users?: number;
  contacts?: number;
  /** Sign-outs per second (default 2,000: the step is paced, so this bounds the run). */
  signOutRate?: number;
  batchSize?: number;
  log?: (line: string) => void;
}

export interface BenchMigrateResult {
  users: number;
  contactsPerUser: number;
  signOutRate: number;
  batchSize: number;
  seconds: number;
  usersPerSecond: number;
  copySeconds: number;
  copyUsersPerSecond: number;
  placeSeconds: number;
  signOutSeconds: number;
  verifySeconds: number;
  verified: boolean;
  goalSeconds: number;
}

export async function benchMigrate(opts: BenchMigrateOptions = {}): Promise<BenchMigrateResult> {
  const users = opts.users ?? 10_000;
  const contacts = opts.contacts ?? 50;
  const rate = opts.signOutRate ?? 2_000;
  const batchSize = opts.batchSize ?? 500;
  const log = opts.log ?? (() => undefined);
  const pg = await startTestPostgres();
  const legacyDb = await createPgliteDatabase();
  try {
    await migrate(legacyDb);
    const legacy = createStore(legacyDb);
    const pool = createStore(await openDatabase({ url: await pg.createDatabase() }));
    try {
      await legacy.homes.upsertHome({ name: 'legacy1', kind: 'standard', address: 'sip:127.0.0.1:5070' });
      await pool.homes.upsertHome({ name: 'pool1', kind: 'pool', address: 'sip:127.0.0.1:5080' });
      log(`seeding ${users} users x ${contacts} contacts in the legacy store`);
      await seedContactLists(legacyDb, users, contacts);
      for (let i = 0; i < users; i += 1000) {
        const aors = Array.from({ length: Math.min(1000, users - i) }, (_, k) => `user${i + k}@example.com`);
        const accounts = await legacy.users.readAccounts(aors);
        for (const a of accounts) {
          const ha1 = computeUserHa1(a.aor, 'secret');
          a.credentials = [{ realm: 'example.com', ...ha1 }];
        }
        await legacy.users.writeAccounts(accounts, null);
      }
      const { plan } = await planWaves({
        sources: [{ home: 'legacy1', store: legacy }],
        target: { home: 'pool1', store: pool },
        locations: { legacy1: '.', pool1: '$URL' },
        by: 'home',
        signOutRate: rate,
      });
      log(`moving one wave of ${users} users (sign-outs at ${rate}/s, batches of ${batchSize})`);
      const summary = await moveWave({
        plan,
        wave: findWave(plan, 'legacy1'),
        source: legacy,
        target: pool,
        batchSize,
        onProgress: (p) => {
          if (p.done === p.total) log(`  ${p.phase}: ${p.done}/${p.total}`);
        },
      });
      if (summary.status !== 'done') throw new Error(`the wave ended ${summary.status}`);
      const t = summary.timings;
      const result: BenchMigrateResult = {
        users,
        contactsPerUser: contacts,
        signOutRate: rate,
        batchSize,
        seconds: t.totalMs / 1000,
        usersPerSecond: users / (t.totalMs / 1000),
        copySeconds: t.copyMs / 1000,
        copyUsersPerSecond: users / (t.copyMs / 1000),
        placeSeconds: t.placeMs / 1000,
        signOutSeconds: t.signOutMs / 1000,
        verifySeconds: t.verifyMs / 1000,
        verified: summary.verify?.ok ?? false,
        goalSeconds: 60,
      };
      log(renderMigrate(result));
      return result;
    } finally {
      await legacy.close().catch(() => undefined);
      await pool.close();
    }
  } finally {
    await pg.stop();
  }
}

export function renderMigrate(r: BenchMigrateResult): string {
  const f = (n: number) => n.toFixed(1);
  return [
    `wave migration: ${r.users} users x ${r.contactsPerUser} contacts, PGlite -> PostgreSQL`,
    `  total ${f(r.seconds)} s (${Math.round(r.usersPerSecond)} users/s; goal under ${r.goalSeconds} s): copy ${f(r.copySeconds)} s (${Math.round(r.copyUsersPerSecond)} users/s), place ${f(r.placeSeconds)} s, sign-outs at ${r.signOutRate}/s ${f(r.signOutSeconds)} s, verify ${f(r.verifySeconds)} s${r.verified ? '' : ' (FAILED)'}`,
  ].join('\n');
}
