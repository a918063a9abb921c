import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseDirectoryConfig } from '../../src/directory/config.js';

it('the example directory configuration is valid', () => {
  const raw = parse(
    readFileSync(new URL('../../fixtures/ldap/parley-directory.yaml', import.meta.url), 'utf8'),
  );
  const c = parseDirectoryConfig(raw.directory, { file: 'parley-directory.yaml' });
  expect(c.forests.map((f) => [f.name, f.type, f.mapping.disabled.kind])).toEqual([
    ['north', 'openldap', 'values'],
    ['emea', 'ad', 'ad-uac'],
  ]);
  expect(c.sync).toMatchObject({
    deleteGraceSeconds: 30 * 86400,
    maxDeletePercent: 10,
    lockStaleSeconds: 120,
  });
});
