import type { ContactList } from './model.js';

/**
 * Synthetic contact lists for tests and the benchmark: deterministic (seeded by index), with
 * the characters real directories produce (accents, CJK, emoji, quotes, ampersands).
 * Bulk seeding of a store is src/store/seed.ts.
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
