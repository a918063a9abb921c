import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateContactList } from '../../src/contacts/generate.js';
import { serializeContactLists } from '../../src/contacts/xml.js';
import { ensureDebianCommand } from '../support/debian.js';

// The shipped XML Schema agrees with what Parley writes and reads (xmllint, libxml2).
const root = resolve(import.meta.dirname, '../..');
const xsd = join(root, 'fixtures/contacts/contact-list.xsd');
let xmllint: string;
let dir: string;

function validate(file: string): { ok: boolean; output: string } {
  const run = spawnSync(xmllint, ['--noout', '--nonet', '--schema', xsd, file], { encoding: 'utf8' });
  return { ok: run.status === 0, output: run.stderr };
}

beforeAll(() => {
  xmllint = ensureDebianCommand('xmllint', 'libxml2-utils');
  dir = mkdtempSync(join(tmpdir(), 'parley-xsd-'));
}, 900_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('contact-list.xsd', () => {
  it('is a valid schema and accepts the sample files', () => {
    execFileSync(xmllint, ['--noout', xsd]);
    for (const name of ['alice.xml', 'all-users.xml']) {
      expect(validate(join(root, 'fixtures/contacts', name))).toMatchObject({ ok: true });
    }
  });

  it('accepts generated exports', () => {
    const file = join(dir, 'generated.xml');
    writeFileSync(
      file,
      serializeContactLists(Array.from({ length: 200 }, (_, i) => generateContactList(i, 20, 200))),
    );
    expect(validate(file)).toMatchObject({ ok: true });
  });

  it('rejects what Parley rejects: unknown elements, bad URIs, duplicates', () => {
    const head =
      '<?xml version="1.0" encoding="UTF-8"?>\n<contact-lists xmlns="urn:parley:contact-list:1" format-version="1">\n';
    const cases = [
      '<user uri="sip:a@x.com"><friends/></user>',
      '<user uri="tel:+123"/>',
      '<user uri="sip:a@x.com"><contacts><contact uri="sip:b@x.com"/><contact uri="sip:b@x.com"/></contacts></user>',
      '<user uri="sip:a@x.com"><contacts/><groups/></user>',
    ];
    cases.forEach((body, i) => {
      const file = join(dir, `bad${i}.xml`);
      writeFileSync(file, `${head}${body}\n</contact-lists>\n`);
      expect(validate(file).ok, body).toBe(false);
    });
  });
});
