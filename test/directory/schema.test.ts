import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { parleySchemaLdif } from '../../src/directory/schema.js';

it('the schema LDIF shipped for administrators matches what prepare loads', () => {
  const shipped = readFileSync(new URL('../../fixtures/ldap/parley-schema.ldif', import.meta.url), 'utf8');
  expect(shipped).toBe(parleySchemaLdif());
});
