import { Attribute, Change } from 'ldapts';
import { fixtureUsers, forestLdif } from '../fixtures/ldap/generate.js';
import { parseDirectoryConfig } from '../src/directory/config.js';
import { prepareCentral } from '../src/directory/schema.js';
import { runDirectorySync } from '../src/directory/sync.js';
import { migrate } from '../src/store/migrate.js';
import { createPgliteDatabase } from '../src/store/pglite.js';
import { createStore } from '../src/store/store.js';
import { type SlapdInstance, startSlapd } from '../test-kit/slapd.js';

/**
 * Directory sync benchmark: a full sync of N users from two forests into an empty central
 * forest, then an incremental sync of M changes. Throwaway slapd instances (memory-backed),
 * the embedded store (PGlite). Prints wall time and users per second for each.
 */
export interface BenchSyncOptions {
  /** Users in all forests together (default 100,000). */
  users?: number;
  /** Changes for the incremental run (default 1,000). */
  changes?: number;
  log?: (line: string) => void;
}

export interface BenchSyncResult {
  full: { users: number; seconds: number; usersPerSecond: number };
  incremental: { changes: number; seconds: number; changesPerSecond: number };
}

export async function benchSync(opts: BenchSyncOptions = {}): Promise<BenchSyncResult> {
  const total = opts.users ?? 100_000;
  const changes = opts.changes ?? 1_000;
  const log = opts.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const perForest = Math.floor(total / 2);
  const spec = (name: string) => ({
    baseDn: `dc=${name},dc=example`,
    prefix: name[0],
    count: perForest,
    disabledEvery: 0,
    seed: name.length,
  });
  log(`sync bench: generating and loading ${total} users in two forests`);
  const instances: SlapdInstance[] = await Promise.all([
    startSlapd({ baseDn: 'dc=central,dc=example' }),
    startSlapd({ baseDn: 'dc=east,dc=example', ldif: forestLdif(spec('east')) }),
    startSlapd({ baseDn: 'dc=west,dc=example', ldif: forestLdif(spec('west')) }),
  ]);
  const [central, east, west] = instances;
  const db = await createPgliteDatabase();
  try {
    await migrate(db);
    const env = { C: central.adminPassword, CC: central.configPassword, F: east.readerPassword };
    const forest = (s: SlapdInstance, name: string) => ({
      name,
      url: s.url,
      bindDn: s.readerDn,
      bindPasswordEnv: 'F',
      baseDn: `ou=people,${s.baseDn}`,
      pageSize: 1000,
    });
    const config = parseDirectoryConfig({
      central: {
        url: central.url,
        bindDn: central.adminDn,
        bindPasswordEnv: 'C',
        baseDn: central.baseDn,
        contactContainer: `ou=parley-contacts,${central.baseDn}`,
        sipDomain: 'example.com',
        pageSize: 1000,
        schemaAdmin: { bindDn: central.configDn, bindPasswordEnv: 'CC' },
      },
      forests: [forest(east, 'east'), forest(west, 'west')],
      sync: { maxDeletes: total },
    });
    await prepareCentral(config.central, { env });

    let t0 = performance.now();
    const full = await runDirectorySync({ store: createStore(db), config, env });
    const fullSeconds = (performance.now() - t0) / 1000;
    log(
      `full sync: ${full.added} contacts from ${total} users in ${fullSeconds.toFixed(1)}s = ${(total / fullSeconds).toFixed(0)} users/s (${full.status})`,
    );

    const eastUsers = fixtureUsers(spec('east'));
    const client = await east.adminClient();
    try {
      for (const u of eastUsers.slice(0, changes)) {
        await client.modify(u.dn, [
          new Change({
            operation: 'replace',
            modification: new Attribute({ type: 'displayName', values: [`Changed ${u.uid}`] }),
          }),
        ]);
      }
    } finally {
      await client.unbind();
    }
    t0 = performance.now();
    const inc = await runDirectorySync({ store: createStore(db), config, env });
    const incSeconds = (performance.now() - t0) / 1000;
    log(
      `incremental sync: ${inc.updated} of ${changes} changes in ${incSeconds.toFixed(1)}s = ${(changes / incSeconds).toFixed(0)} changes/s (${inc.status}; includes reading ${total} anchors for delete detection)`,
    );
    return {
      full: { users: total, seconds: fullSeconds, usersPerSecond: total / fullSeconds },
      incremental: { changes, seconds: incSeconds, changesPerSecond: changes / incSeconds },
    };
  } finally {
    await db.close();
    await Promise.all(instances.map((i) => i.stop()));
  }
}
