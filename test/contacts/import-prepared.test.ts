import { describe, expect, it } from 'vitest';
import { decodePreparedList, encodePrepared } from '../../src/contacts/import-spool.js';
import { prepareList } from '../../src/contacts/lists.js';
import { contactListFromRows, contactListRows, orderContactList } from '../../src/store/contact-lists.js';
import { HOSTILE, hostileList } from '../support/contact-lists.js';

/**
 * The import's prepared rows: the parse workers write each list's rows in COPY's text format
 * (contactListRows) and the spool keeps only those. A user whose stored list is empty gets
 * them as they are; a user with a stored list gets the list built back from them
 * (contactListFromRows) to compare or merge: the round trip must be exact whatever
 * characters COPY escapes or array literals quote. Both write paths on each engine:
 * import-engines.test.ts.
 */
describe('prepared rows', () => {
  it('give back the list they were made of, every escaped character included', () => {
    for (const list of [hostileList(1), { ...hostileList(2), groups: [], contacts: [], accessRules: [] }]) {
      const stored = orderContactList(structuredClone(list));
      expect(contactListFromRows(list.user, list.version, contactListRows(stored))).toEqual(stored);
      const prepared = prepareList(list);
      expect(prepared).toMatchObject({
        version: list.version,
        groups: list.groups.length,
        contacts: list.contacts.length,
        rules: list.accessRules.length,
      });
      expect(decodePreparedList(list.user, encodePrepared(prepared))).toEqual(stored);
    }
  });

  it('hold no raw tab or newline inside a field: one line per row, six fields each', () => {
    const rows = contactListRows(hostileList(3)).contacts;
    const lines = rows.split('\n');
    expect(lines.pop()).toBe('');
    expect(lines).toHaveLength(HOSTILE.length);
    for (const line of lines) expect(line.split('\t')).toHaveLength(6);
  });
});
