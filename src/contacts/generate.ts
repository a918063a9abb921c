import type { Sql } from '../store/sql.js';
import type { ContactList } from './model.js';

/**
 * Synthetic contact lists for tests and the benchmark: deterministic (seeded by index), with
 * the characters real directories produce (accents, CJK, emoji, quotes, ampersands).
 */
export function generateContactList(
  userIndex: number,
  contactsPerUser: number,
  userCount: number,
): ContactList {
  const groupNames = ['Team', 'Friends & family', 'Équipe "projet"', '<VIP>', '同僚'].slice(0, userIndex % 6);
  const contacts = [];
  for (let c = 0; c < contactsPerUser; c++) {
    const other = (userIndex + c * 7919 + 1) % userCount;
    contacts.push({
      uri: `sip:user${other}@example.com`,
      displayName: c % 5 === 0 ? '' : `User ${other} ${['Zoë', "O'Brien", '李', '😀', 'A&B'][c % 5]}`,
      subscribed: c % 3 !== 0,
      groups: groupNames.filter((_, g) => (c + g) % 3 === 0),
    });
  }
  const unique = [...new Map(contacts.map((c) => [c.uri, c])).values()];
  return {
    user: `sip:user${userIndex}@example.com`,
    version: userIndex % 4,
    groups: groupNames.map((name) => ({ name })),
    contacts: unique,
    accessRules:
      userIndex % 3 === 0
        ? [
            { pattern: '*', action: 'block' },
            { pattern: 'example.com', action: 'allow' },
            { pattern: `sip:user${(userIndex + 1) % userCount}@example.com`, action: 'block' },
          ]
        : [],
  };
}

/**
 * Creates users user0..user{n-1}@example.com and their lists with set-based SQL (fast enough
 * for 100,000 users x 50 contacts): every contact is subscribed, in group "Team".
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
  await sql.query(
    `INSERT INTO contact_groups (user_id, name, position)
     SELECT id, 'Team', 0 FROM users WHERE aor LIKE 'user%@example.com'
       AND substring(aor from 5 for position('@' in aor) - 5)::int BETWEEN $1 AND $2`,
    [firstIndex, last],
  );
  await sql.query(
    `INSERT INTO contacts (user_id, uri, display_name, subscribed, groups, position)
     SELECT u.id, 'sip:contact' || c || '.' || u.id || '@example.org', 'Contact ' || c, true, ARRAY['Team'], c
       FROM users u CROSS JOIN generate_series(0, $3::int - 1) AS c
      WHERE u.aor LIKE 'user%@example.com'
        AND substring(u.aor from 5 for position('@' in u.aor) - 5)::int BETWEEN $1 AND $2`,
    [firstIndex, last, contactsPerUser],
  );
  await sql.query(
    `INSERT INTO contact_list_versions (user_id, version)
     SELECT id, 1 FROM users WHERE aor LIKE 'user%@example.com'
       AND substring(aor from 5 for position('@' in aor) - 5)::int BETWEEN $1 AND $2`,
    [firstIndex, last],
  );
}
