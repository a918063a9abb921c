import type { Sql } from './sql.js';

/**
 * Bulk seeding for tests and benchmarks, not for servers: set-based SQL that writes users
 * and their contact lists directly, fast enough for 100,000 users x 50 contacts, bypassing
 * what the repositories do on every write (row locks, version rules, change
 * notifications). Kept out of the repositories so no production path can reach it.
 */

/** The users' aors: user{firstIndex}@example.com .. user{firstIndex+users-1}@example.com. */
const SEEDED_USER = `aor LIKE 'user%@example.com'
  AND substring(aor from 5 for position('@' in aor) - 5)::int BETWEEN $1 AND $2`;

/**
 * Creates users user0..user{n-1}@example.com (from firstIndex) and their lists: every
 * contact subscribed, in group "Team", version 1. With no contacts per user the lists are
 * empty and at version 0, as for users who never had one.
 */
export async function seedContactLists(
  sql: Sql,
  users: number,
  contactsPerUser: number,
  firstIndex = 0,
): Promise<void> {
  const last = firstIndex + users - 1;
  await sql.query(
    `INSERT INTO users (aor, display_name)
     SELECT 'user' || g || '@example.com', 'User ' || g FROM generate_series($1::int, $2::int) AS g`,
    [firstIndex, last],
  );
  if (contactsPerUser === 0) {
    await sql.query(
      `INSERT INTO contact_list_versions (user_id, version) SELECT id, 0 FROM users WHERE ${SEEDED_USER}`,
      [firstIndex, last],
    );
    return;
  }
  await sql.query(
    `INSERT INTO contact_groups (user_id, name, position) SELECT id, 'Team', 0 FROM users WHERE ${SEEDED_USER}`,
    [firstIndex, last],
  );
  await sql.query(
    `INSERT INTO contacts (user_id, uri, display_name, subscribed, groups, position)
     SELECT u.id, 'sip:contact' || c || '.' || u.id || '@example.org', 'Contact ' || c, true, ARRAY['Team'], c
       FROM users u CROSS JOIN generate_series(0, $3::int - 1) AS c
      WHERE ${SEEDED_USER}`,
    [firstIndex, last, contactsPerUser],
  );
  await sql.query(
    `INSERT INTO contact_list_versions (user_id, version) SELECT id, 1 FROM users WHERE ${SEEDED_USER}`,
    [firstIndex, last],
  );
}

/** A user to seed with both HA1s of one realm (RFC 7616 3.4.2), computed by the caller. */
export interface SeedUser {
  aor: string;
  displayName: string;
  ha1Md5: string;
  ha1Sha256: string;
}

/**
 * Creates users and their credentials for `realm` in set-based batches of 10,000 (two
 * statements per batch, one transaction each), living in `home` when given. Users that
 * exist already keep their row and credentials (ON CONFLICT DO NOTHING), so a benchmark can
 * seed a store twice.
 */
export async function seedUsers(
  sql: Sql,
  users: SeedUser[],
  realm: string,
  home: string | null = null,
): Promise<void> {
  const batch = 10_000;
  for (let i = 0; i < users.length; i += batch) {
    const slice = users.slice(i, i + batch);
    const aors = slice.map((u) => u.aor);
    await sql.transaction(async (tx) => {
      await tx.query(
        `INSERT INTO users (aor, display_name, home)
         SELECT a, d, $3 FROM unnest($1::text[], $2::text[]) AS t(a, d) ON CONFLICT (aor) DO NOTHING`,
        [aors, slice.map((u) => u.displayName), home],
      );
      await tx.query(
        `INSERT INTO credentials (user_id, realm, ha1_md5, ha1_sha256)
         SELECT u.id, $2, v.md5, v.sha FROM unnest($1::text[], $3::text[], $4::text[]) AS v(aor, md5, sha)
         JOIN users u ON u.aor = v.aor
         ON CONFLICT (user_id, realm) DO NOTHING`,
        [aors, realm, slice.map((u) => u.ha1Md5), slice.map((u) => u.ha1Sha256)],
      );
    });
  }
}
