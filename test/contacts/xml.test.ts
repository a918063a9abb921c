import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { ContactList } from '../../src/contacts/model.js';
import {
  DEFAULT_LIMITS,
  parseContactListDocument,
  parseContactListXml,
  scanContactListStream,
  serializeContactList,
  serializeContactLists,
} from '../../src/contacts/xml.js';

const fixture = (name: string) => readFileSync(new URL(`../../fixtures/contacts/${name}`, import.meta.url));
const HEADER =
  '<?xml version="1.0" encoding="UTF-8"?>\n<contact-lists xmlns="urn:parley:contact-list:1" format-version="1">\n';

function expectRejected(input: string | Uint8Array, reason: RegExp, line?: number, column?: number) {
  const result = parseContactListDocument(input);
  expect(result.ok).toBe(false);
  if (result.ok) return;
  expect(result.errors[0].reason).toMatch(reason);
  if (line !== undefined) expect(result.errors[0].line).toBe(line);
  if (column !== undefined) expect(result.errors[0].column).toBe(column);
}

describe('contact-list XML format', () => {
  it('parses the sample and serializes it back byte for byte', () => {
    const bytes = fixture('alice.xml');
    const result = parseContactListXml(bytes);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.list.user).toBe('sip:alice@example.com');
    expect(result.list.version).toBe(3);
    expect(result.list.groups.map((g) => g.name)).toEqual(['Team', 'Friends & family']);
    expect(result.list.contacts[1]).toEqual({
      uri: 'sip:carol@example.com',
      displayName: 'Carol "CJ" Jones',
      subscribed: true,
      groups: ['Team', 'Friends & family'],
    });
    expect(result.list.contacts[2].subscribed).toBe(false);
    expect(result.list.accessRules).toContainEqual({ pattern: 'sip:eve@example.com', action: 'block' });
    expect(serializeContactList(result.list)).toBe(bytes.toString('utf8'));
  });

  it('round-trips a multi-user document including an empty list', () => {
    const text = fixture('all-users.xml').toString('utf8');
    const result = parseContactListDocument(text);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.lists).toHaveLength(3);
    expect(serializeContactLists(result.lists)).toBe(text);
  });

  it('round-trips generated lists with awkward characters', () => {
    const lists: ContactList[] = [];
    for (let u = 0; u < 50; u++) {
      const groups = Array.from({ length: u % 4 }, (_, g) => ({ name: `G<${g}> & "q"\t'x'\n` }));
      lists.push({
        user: `sip:user${u}@example.com`,
        version: u,
        groups,
        contacts: Array.from({ length: u % 7 }, (_, c) => ({
          uri: `sip:c${c}.u${u}@example.org`,
          displayName: `Zoë ${c} 日本 😀 \r\n`,
          subscribed: c % 2 === 0,
          groups: groups.filter((_, g) => (g + c) % 2 === 0).map((g) => g.name),
        })),
        accessRules:
          u % 3 === 0
            ? [
                { pattern: '*', action: 'block' },
                { pattern: 'example.com', action: 'allow' },
              ]
            : [],
      });
    }
    const text = serializeContactLists(lists);
    const parsed = parseContactListDocument(text);
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.lists).toEqual(lists);
    expect(serializeContactLists(parsed.lists)).toBe(text);
  });

  it('normalises URIs to lower case and accepts a UTF-8 byte order mark', () => {
    const text = `\uFEFF${HEADER}<user uri="SIP:Alice@Example.COM"><contacts><contact uri="sip:Bob@EXAMPLE.com"/></contacts></user></contact-lists>`;
    const result = parseContactListXml(Buffer.from(text));
    expect(result.ok && result.list.user).toBe('sip:alice@example.com');
    expect(result.ok && result.list.contacts[0].uri).toBe('sip:bob@example.com');
  });

  it('reports semantic problems with line and column', () => {
    const text = `${HEADER}  <user uri="sip:a@example.com">
    <groups><group name="A"/></groups>
    <contacts>
      <contact uri="sip:b@example.com"/>
      <contact uri="sip:B@example.com"/>
      <contact uri="not a uri"/>
      <contact uri="sip:c@example.com"><member-of group="Nope"/></contact>
    </contacts>
  </user>
</contact-lists>
`;
    const result = parseContactListDocument(text);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors).toEqual([
      { line: 7, column: 16, reason: 'duplicate contact sip:b@example.com' },
      { line: 8, column: 16, reason: expect.stringMatching(/not a SIP address/) },
      { line: 9, column: 51, reason: 'group "Nope" is not declared in <groups>' },
    ]);
  });

  it('reports malformed XML with its position in the file', () => {
    expectRejected(
      `${HEADER}  <user uri="sip:a@example.com">\n    <contacts>\n  </user>\n</contact-lists>\n`,
      /malformed XML/,
      5,
      3,
    );
  });

  it('rejects unknown elements, attributes, versions and namespaces', () => {
    expectRejected(
      `${HEADER}<user uri="sip:a@x.com" colour="red"/></contact-lists>`,
      /unknown attribute colour/,
    );
    expectRejected(
      `${HEADER}<user uri="sip:a@x.com"><friends/></user></contact-lists>`,
      /unknown element <friends>/,
    );
    expectRejected(`${HEADER}<other/></contact-lists>`, /unexpected content: only <user> elements/, 3, 1);
    expectRejected(
      '<contact-lists xmlns="urn:parley:contact-list:1" format-version="2"></contact-lists>',
      /format-version "2" is not supported/,
      1,
      50,
    );
    expectRejected('<contact-lists format-version="1"></contact-lists>', /must declare xmlns/);
    expectRejected(
      `${HEADER}<user uri="sip:a@x.com"/><user uri="sip:A@x.com"/></contact-lists>`,
      /appears twice/,
    );
    expectRejected(
      `${HEADER}<user uri="sip:a@x.com"/></contact-lists><user uri="sip:b@x.com"/>`,
      /malformed XML|unexpected content/,
    );
  });

  describe('hostile input', () => {
    it('refuses a billion-laughs DOCTYPE before parsing', () => {
      expectRejected(fixture('hostile/billion-laughs.xml'), /<!DOCTYPE> is not allowed/, 2, 1);
    });

    it('refuses external entities', () => {
      expectRejected(fixture('hostile/xxe.xml'), /<!DOCTYPE> is not allowed/, 2, 1);
      expectRejected(
        `${HEADER}<user uri="sip:a@x.com"><contacts><contact uri="sip:b@x.com" display-name="&xxe;"/></contacts></user></contact-lists>`,
        /entity reference not allowed/,
        3,
        76,
      );
    });

    it('refuses a DOCTYPE hidden after the first user', () => {
      expectRejected(
        `${HEADER}<user uri="sip:a@x.com"/>\n<!DOCTYPE x [<!ENTITY a "b">]>\n<user uri="sip:b@x.com"/></contact-lists>`,
        /<!DOCTYPE> is not allowed/,
        4,
        1,
      );
    });

    it('refuses CDATA sections and processing instructions', () => {
      expectRejected(`${HEADER}<user uri="sip:a@x.com"><![CDATA[x]]></user></contact-lists>`, /<!\[CDATA\[/);
      expectRejected(`${HEADER}<?evil?><user uri="sip:a@x.com"/></contact-lists>`, /processing instructions/);
    });

    it('refuses huge attributes', () => {
      const big = 'x'.repeat(DEFAULT_LIMITS.maxAttributeChars + 1);
      expectRejected(
        `${HEADER}<user uri="sip:a@x.com"><groups><group name="${big}"/></groups></user></contact-lists>`,
        /attribute name is 1025 characters long/,
        3,
        40,
      );
    });

    it('refuses a document over the size limit', () => {
      const big = 'x'.repeat(DEFAULT_LIMITS.maxDocumentBytes);
      expectRejected(`${HEADER}<user uri="sip:a@x.com"><!--${big}--></user></contact-lists>`, /larger than/);
    });

    it('refuses wrong encodings', () => {
      expectRejected(fixture('hostile/latin1-declared.xml'), /encoding "ISO-8859-1" is not supported/, 1, 21);
      expectRejected(fixture('hostile/utf16.xml'), /UTF-16 is not supported/, 1, 1);
      expectRejected(Buffer.from(`${HEADER}<user uri="sip:a@x.com"/></contact-lists>`, 'utf16le'), /UTF-16/);
      const invalid = Buffer.concat([
        Buffer.from(`${HEADER}<user uri="sip:a@x.com" version="1`),
        Buffer.from([0xe9]),
        Buffer.from('"/></contact-lists>'),
      ]);
      expectRejected(invalid, /invalid UTF-8/, 3, 35);
    });

    it('refuses control characters', () => {
      expectRejected(`${HEADER}<user uri="sip:a@x.com\u0001"/></contact-lists>`, /control character U\+0001/);
      expectRejected(
        `${HEADER}<user uri="sip:a@x.com"><groups><group name="&#0;"/></groups></user></contact-lists>`,
        /character reference/,
      );
    });

    it('refuses truncated files', () => {
      const whole = fixture('all-users.xml').toString('utf8');
      expectRejected(fixture('hostile/truncated.xml'), /truncated file/);
      expectRejected(
        whole.slice(0, whole.indexOf('</contact-lists>')),
        /truncated file: the document ends before/,
      );
      expectRejected(
        whole.slice(0, whole.indexOf('<user uri="sip:carol') + 10),
        /truncated file: this <user> element is never closed/,
        21,
        3,
      );
      expectRejected(whole.slice(0, 60), /truncated or malformed file/);
      expectRejected('', /empty file/);
      const bytes = Buffer.from(`${HEADER}<user uri="sip:a@x.com"/>é`);
      expectRejected(bytes.subarray(0, bytes.length - 1), /invalid UTF-8/);
    });
  });
});

describe('streaming scanner', () => {
  async function* chunks(text: string, size: number) {
    const bytes = Buffer.from(text);
    for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
  }

  it('yields each user with its file position whatever the chunking', async () => {
    const text = fixture('all-users.xml').toString('utf8');
    for (const size of [1, 3, 7, 64, 100_000]) {
      const origins: string[] = [];
      for await (const step of scanContactListStream(chunks(text, size))) {
        expect(step.kind).toBe('user');
        if (step.kind === 'user') origins.push(`${step.fragment.origin.line}:${step.fragment.origin.column}`);
      }
      expect(origins).toEqual(['3:3', '16:3', '21:3']);
    }
  });

  it('stops at a user element larger than the limit without buffering the rest', async () => {
    const limits = { ...DEFAULT_LIMITS, maxUserElementChars: 1000 };
    async function* endless() {
      yield Buffer.from(`${HEADER}<user uri="sip:a@x.com">`);
      for (;;) yield Buffer.from('<!--xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx-->');
    }
    const steps = [];
    for await (const step of scanContactListStream(endless(), limits)) steps.push(step);
    expect(steps).toEqual([
      {
        kind: 'error',
        problem: { line: 3, column: 1, reason: '<user> element is larger than 1000 characters' },
      },
    ]);
  });

  it('decodes characters split across chunks, between chunks of plain ASCII', async () => {
    const bytes = Buffer.from(
      `${HEADER}<user uri="sip:a@x.com"><groups><group name="日本 😀 é"/><group name="plain"/></groups></user>\n</contact-lists>\n`,
    );
    for (const size of [1, 2, 3, 5, 64]) {
      async function* split() {
        for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
      }
      const steps = [];
      for await (const step of scanContactListStream(split())) steps.push(step);
      expect(steps.map((s) => s.kind)).toEqual(['user']);
      const step = steps[0];
      if (step.kind === 'user') expect(step.fragment.text).toContain('name="日本 😀 é"');
    }
  });

  it('reports an invalid UTF-8 byte split across chunks', async () => {
    const bytes = Buffer.concat([
      Buffer.from(`${HEADER}<user uri="sip:a@x.com"/>\n`),
      Buffer.from([0xc3, 0x28]),
      Buffer.from('</contact-lists>'),
    ]);
    const steps = [];
    async function* split() {
      yield bytes.subarray(0, bytes.length - 17);
      yield bytes.subarray(bytes.length - 17);
    }
    for await (const step of scanContactListStream(split())) steps.push(step);
    const last = steps[steps.length - 1];
    expect(last.kind).toBe('error');
    if (last.kind === 'error') expect(last.problem.reason).toMatch(/invalid UTF-8/);
  });
});

describe('well-formedness', () => {
  const wrap = (user: string) => `${HEADER}${user}\n</contact-lists>\n`;
  it.each([
    ['<user uri="sip:a@x.com"><groups></contacts></user>', 3],
    ['<user uri="sip:a@x.com" uri="sip:b@x.com"/>', 3],
    ['<user uri="sip:a@x.com"><groups><!-- a -- b --></groups></user>', 3],
    ['<user uri="sip:a@x.com"><groups><group name="x"></groups></user>', 3],
    ['<user uri=sip:a@x.com/>', 3],
    ['<user uri="sip:a@x.com"><groups><group name="a<b"/></groups></user>', 3],
  ])('refuses %s', (user, line) => {
    const result = parseContactListDocument(wrap(user));
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.errors[0].line).toBe(line);
  });

  it('accepts comments and single quotes', () => {
    const result = parseContactListDocument(
      wrap("<!-- c --><user uri='sip:a@x.com'><!-- x --><groups><group name='g'/></groups></user><!-- d -->"),
    );
    expect(result.ok).toBe(true);
  });
});

describe('the tokenizer of a <user> element', () => {
  const user = (body: string) => `${HEADER}<user uri="sip:a@x.com">${body}</user></contact-lists>`;

  it('refuses what is not XML, each at the tag that breaks it', () => {
    const cases: [string, number][] = [
      ['<groups><group name="a"name="b"/></groups>', 25],
      ['<groups><group name="a" name="b"/></groups>', 25],
      ['<groups><group name=a/></groups>', 25],
      ['<groups><group name="a/></groups>', 25],
      ['<groups><group name="a" / ></groups>', 25],
      ['<groups><1group/></groups>', 25],
      ['<groups></group>', 25],
      ['<groups><!-- a -- b --></groups>', 25],
      ['<groups><!-- a ---></groups>', 25],
      ['<groups>', 1],
    ];
    for (const [body, column] of cases) {
      const result = parseContactListDocument(user(body));
      expect(result.ok, body).toBe(false);
      if (result.ok) continue;
      expect(result.errors[0].reason, body).toMatch(/malformed XML/);
      expect(result.errors[0].line, body).toBe(3);
      if (column > 1) expect(result.errors[0].column, body).toBeGreaterThanOrEqual(column);
    }
  });

  it('reads white space around attributes and in closing tags, and decodes references', () => {
    const result = parseContactListDocument(
      user(
        '\n <groups >\r\n\t<group\n name = "a&amp;b&#x9;c&#10;d\te" />\n</groups\n>\n<contacts><contact uri="sip:B@x.com"\tsubscribed=\'0\'/></contacts>',
      ),
    );
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.lists[0].groups).toEqual([{ name: 'a&b\tc\nd e' }]);
    expect(result.lists[0].contacts[0]).toEqual({
      uri: 'sip:b@x.com',
      displayName: '',
      subscribed: false,
      groups: [],
    });
  });

  it('reports text between elements as a problem with its position', () => {
    const result = parseContactListDocument(user('<groups>  oops <group name="a"/></groups>'));
    expect(result).toEqual({
      ok: false,
      errors: [{ line: 3, column: 35, reason: 'unexpected text: this format keeps all data in attributes' }],
    });
  });
});
