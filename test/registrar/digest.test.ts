import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  buildChallenge,
  computeHa1,
  type DigestCredentials,
  digestUriMatches,
  expectedResponse,
  NonceManager,
  parseAuthorization,
  verifyDigest,
} from '../../src/registrar/digest.js';
import { parseUri } from '../../src/sip/uri.js';

const SECRET = Buffer.from('0123456789abcdef0123456789abcdef');

function credsOf(header: string): DigestCredentials {
  const parsed = parseAuthorization(header);
  if ('error' in parsed) throw new Error(parsed.error);
  return parsed;
}

// Independent implementation for cross-checking: the openssl binary.
function openssl(algorithm: 'md5' | 'sha256', input: string): string {
  const out = execFileSync('openssl', ['dgst', `-${algorithm}`, '-r'], { input }).toString();
  return out.split(' ')[0]!.trim();
}

describe('RFC 7616 section 3.9.1 example (Mufasa / Circle of Life)', () => {
  const common =
    'username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", ' +
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, ' +
    'cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, ' +
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"';

  it('verifies the MD5 response', () => {
    const creds = credsOf(`Digest ${common}, algorithm=MD5, response="8ca523f5e9506fed4657c9700eebdbec"`);
    expect(creds.algorithm).toBe('MD5');
    expect(creds.opaque).toBe('FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS');
    const ha1 = computeHa1('Mufasa', 'http-auth@example.org', 'Circle of Life', 'MD5');
    expect(verifyDigest(creds, 'GET', ha1)).toBe(true);
  });

  it('verifies the SHA-256 response', () => {
    const creds = credsOf(
      `Digest ${common}, algorithm=SHA-256, ` +
        'response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"',
    );
    expect(creds.algorithm).toBe('SHA-256');
    const ha1 = computeHa1('Mufasa', 'http-auth@example.org', 'Circle of Life', 'SHA-256');
    expect(verifyDigest(creds, 'GET', ha1)).toBe(true);
    expect(
      verifyDigest(creds, 'GET', computeHa1('Mufasa', 'http-auth@example.org', 'Circle of life', 'SHA-256')),
    ).toBe(false);
  });
});

describe('RFC 2617 and RFC 2069 examples', () => {
  it('verifies the RFC 2617 section 3.5 example (qop=auth, algorithm absent = MD5)', () => {
    const creds = credsOf(
      'Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", ' +
        'uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", ' +
        'response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41"',
    );
    expect(creds.algorithm).toBe('MD5');
    expect(creds.qop).toBe('auth');
    expect(
      verifyDigest(creds, 'GET', computeHa1('Mufasa', 'testrealm@host.com', 'Circle Of Life', 'MD5')),
    ).toBe(true);
  });

  it('verifies the RFC 2069 no-qop form (errata-corrected response)', () => {
    const creds = credsOf(
      'Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", ' +
        'uri="/dir/index.html", response="1949323746fe6a43ef61f9606e7febea", ' +
        'opaque="5ccc069c403ebaf9f0171e9517f40e41"',
    );
    expect(creds.qop).toBeUndefined();
    expect(
      verifyDigest(creds, 'GET', computeHa1('Mufasa', 'testrealm@host.com', 'CircleOfLife', 'MD5')),
    ).toBe(true);
  });
});

describe('SIP REGISTER vectors cross-checked with openssl', () => {
  const nonces = new NonceManager({ secret: SECRET });
  const nonce = nonces.create('example.com');
  for (const [algorithm, tool] of [
    ['MD5', 'md5'],
    ['SHA-256', 'sha256'],
  ] as const) {
    it(`accepts a ${algorithm} response computed by openssl and rejects wrong inputs`, () => {
      const ha1 = openssl(tool, 'alice:example.com:s3cret pa$$ "quoted"');
      expect(computeHa1('alice', 'example.com', 's3cret pa$$ "quoted"', algorithm)).toBe(ha1);
      const ha2 = openssl(tool, 'REGISTER:sip:example.com');
      const response = openssl(tool, `${ha1}:${nonce}:0000000a:c0ffee:auth:${ha2}`);
      const header =
        `Digest username="alice",realm="example.com",nonce="${nonce}",uri="sip:example.com",` +
        `response="${response}",algorithm=${algorithm},cnonce="c0ffee",qop=auth,nc=0000000a`;
      const creds = credsOf(header);
      expect(verifyDigest(creds, 'REGISTER', ha1)).toBe(true);
      expect(verifyDigest(creds, 'REGISTER', ha1.toUpperCase())).toBe(true);
      expect(verifyDigest({ ...creds, response: response.toUpperCase() }, 'REGISTER', ha1)).toBe(true);
      // wrong method
      expect(verifyDigest(creds, 'INVITE', ha1)).toBe(false);
      // wrong password
      expect(verifyDigest(creds, 'REGISTER', computeHa1('alice', 'example.com', 'guess', algorithm))).toBe(
        false,
      );
      // wrong uri, nonce count, cnonce
      expect(verifyDigest({ ...creds, uri: 'sip:evil.com' }, 'REGISTER', ha1)).toBe(false);
      expect(verifyDigest({ ...creds, nc: '0000000b' }, 'REGISTER', ha1)).toBe(false);
      expect(verifyDigest({ ...creds, cnonce: 'c0ffef' }, 'REGISTER', ha1)).toBe(false);
      // HA1 of the other algorithm, garbage response
      const otherHa1 = computeHa1(
        'alice',
        'example.com',
        's3cret pa$$ "quoted"',
        algorithm === 'MD5' ? 'SHA-256' : 'MD5',
      );
      expect(verifyDigest(creds, 'REGISTER', otherHa1)).toBe(false);
      expect(verifyDigest({ ...creds, response: 'zz'.repeat(ha1.length / 2) }, 'REGISTER', ha1)).toBe(false);
      expect(verifyDigest({ ...creds, response: '' }, 'REGISTER', ha1)).toBe(false);
    });
  }

  it('accepts the no-qop form old SIP phones send', () => {
    const ha1 = openssl('md5', '1001:pbx.example.com:1234');
    const ha2 = openssl('md5', 'REGISTER:sip:pbx.example.com;transport=tcp');
    const response = openssl('md5', `${ha1}:${nonce}:${ha2}`);
    const creds = credsOf(
      `Digest username="1001", realm="pbx.example.com", nonce="${nonce}", ` +
        `uri="sip:pbx.example.com;transport=tcp", response="${response}", algorithm=MD5`,
    );
    expect(verifyDigest(creds, 'REGISTER', ha1)).toBe(true);
    expect(expectedResponse(creds, 'REGISTER', ha1)).toBe(response);
  });
});

describe('parseAuthorization', () => {
  const base = 'username="bob", realm="example.com", nonce="abc", uri="sip:example.com", response="0123"';

  it('handles case-insensitive names, odd whitespace and unknown parameters', () => {
    const creds = credsOf(
      `  dIgEsT   USERNAME = "bob" ,\tRealm="example.com",NONCE="abc",  Uri="sip:example.com", ` +
        'Response="0123", x-foo=bar, x-quoted="a, b=\\"c\\"", ALGORITHM=sha-256',
    );
    expect(creds).toEqual({
      username: 'bob',
      realm: 'example.com',
      nonce: 'abc',
      uri: 'sip:example.com',
      response: '0123',
      algorithm: 'SHA-256',
    });
  });

  it('unescapes quoted-pairs', () => {
    const creds = credsOf(
      'Digest username="CORP\\\\bob \\"the builder\\"", realm="a\\,b", nonce="n", uri="u", response="r"',
    );
    expect(creds.username).toBe('CORP\\bob "the builder"');
    expect(creds.realm).toBe('a,b');
  });

  it('keeps commas and equals signs inside quoted values', () => {
    const creds = credsOf(
      'Digest realm="x, y=z", username="u", nonce="n", uri="sip:a@b;x=y,z", response="r"',
    );
    expect(creds.realm).toBe('x, y=z');
    expect(creds.uri).toBe('sip:a@b;x=y,z');
  });

  it('rejects missing fields', () => {
    for (const field of ['username', 'realm', 'nonce', 'uri', 'response']) {
      const header = `Digest ${base
        .split(', ')
        .filter((p) => !p.startsWith(field))
        .join(', ')}`;
      expect(parseAuthorization(header)).toEqual({ error: `missing ${field}` });
    }
    expect(parseAuthorization(`Digest ${base}, qop=auth, cnonce="x"`)).toEqual({ error: 'missing nc' });
    expect(parseAuthorization(`Digest ${base}, qop=auth, nc=00000001`)).toEqual({ error: 'missing cnonce' });
  });

  it('rejects unsupported algorithms, qop and userhash', () => {
    expect(parseAuthorization(`Digest ${base}, algorithm=MD5-sess`)).toHaveProperty('error');
    // The algorithm and user come back so the authenticator can challenge again and log who.
    expect(parseAuthorization(`Digest ${base}, algorithm=SHA-512-256`)).toMatchObject({
      error: 'unsupported algorithm SHA-512-256',
      algorithm: 'SHA-512-256',
    });
    expect(parseAuthorization(`Digest ${base}, algorithm=AKAv1-MD5`)).toHaveProperty('error');
    expect(parseAuthorization(`Digest ${base}, qop=auth-conf, nc=00000001, cnonce="x"`)).toEqual({
      error: 'unsupported qop auth-conf',
    });
    expect(parseAuthorization(`Digest ${base}, userhash=true`)).toHaveProperty('error');
    expect(parseAuthorization(`Digest ${base}, userhash=false`)).not.toHaveProperty('error');
  });

  it('accepts qop quoted or not, and validates nc', () => {
    expect(credsOf(`Digest ${base}, qop="auth", nc=00000001, cnonce="x"`).qop).toBe('auth');
    expect(credsOf(`Digest ${base}, qop=AUTH, nc=00000001, cnonce="x"`).nc).toBe('00000001');
    expect(parseAuthorization(`Digest ${base}, qop=auth, nc=1, cnonce="x"`)).toHaveProperty('error');
    expect(parseAuthorization(`Digest ${base}, qop=auth, nc=0000000g, cnonce="x"`)).toHaveProperty('error');
  });

  it('rejects malformed input without throwing', () => {
    const bad = [
      '',
      'Digest',
      'Basic dXNlcjpwYXNz',
      'Digestusername="a"',
      `Digest ${base}, username="again"`,
      'Digest username="unterminated',
      'Digest username="a" realm="b"',
      'Digest username=, realm="b"',
      'Digest =x',
      'Digest username="a\\',
      `Digest ${base},, nc=1`,
    ];
    for (const header of bad) {
      expect(parseAuthorization(header), header).toHaveProperty('error');
    }
    // trailing comma is tolerated
    expect(parseAuthorization(`Digest ${base},`)).not.toHaveProperty('error');
  });

  it('stays linear on hostile input', () => {
    const huge = `Digest username="${'\\a'.repeat(200_000)}`;
    expect(parseAuthorization(huge)).toHaveProperty('error');
    const many = `Digest ${'x=y, '.repeat(100_000)}${base}`;
    expect(parseAuthorization(many)).not.toHaveProperty('error');
  });
});

describe('NonceManager', () => {
  it('validates its own nonces and binds them to the realm', () => {
    const nonces = new NonceManager({ secret: SECRET });
    const nonce = nonces.create('example.com');
    expect(nonce).toMatch(/^[A-Za-z0-9_-]{54}$/);
    expect(nonces.check(nonce, 'example.com')).toBe('valid');
    expect(nonces.check(nonce, 'other.com')).toBe('invalid');
    expect(nonces.create('example.com')).not.toBe(nonce);
    const noRealm = nonces.create();
    expect(nonces.check(noRealm)).toBe('valid');
  });

  it('is shared by front-ends with the same secret, not by others', () => {
    const a = new NonceManager({ secret: SECRET });
    const b = new NonceManager({ secret: Buffer.from(SECRET) });
    const c = new NonceManager({ secret: Buffer.from('another secret, 32 bytes long!!!') });
    const nonce = a.create('r');
    expect(b.check(nonce, 'r')).toBe('valid');
    expect(c.check(nonce, 'r')).toBe('invalid');
  });

  it('reports expired nonces as stale', () => {
    let now = 1_700_000_000_000;
    const nonces = new NonceManager({ secret: SECRET, lifetimeSeconds: 300, now: () => now });
    const nonce = nonces.create('r');
    now += 300_000;
    expect(nonces.check(nonce, 'r')).toBe('valid');
    now += 1;
    expect(nonces.check(nonce, 'r')).toBe('stale');
    now += 86_400_000;
    expect(nonces.check(nonce, 'r')).toBe('stale');
  });

  it('refuses nonces from far in the future', () => {
    let now = 1_700_000_000_000;
    const nonces = new NonceManager({ secret: SECRET, now: () => now });
    const nonce = nonces.create('r');
    now -= 10_000;
    expect(nonces.check(nonce, 'r')).toBe('valid');
    now -= 3_600_000;
    expect(nonces.check(nonce, 'r')).toBe('invalid');
  });

  it('detects tampering', () => {
    const nonces = new NonceManager({ secret: SECRET });
    const nonce = nonces.create('r');
    const bytes = Buffer.from(nonce, 'base64url');
    for (const index of [0, 7, 8, 15, 16, 23, 24, 39]) {
      const copy = Buffer.from(bytes);
      copy[index] = copy[index]! ^ 0x01;
      expect(nonces.check(copy.toString('base64url'), 'r')).toBe('invalid');
    }
    // pushing the timestamp forward to dodge expiry breaks the signature
    const later = Buffer.from(bytes);
    later.writeBigUInt64BE(later.readBigUInt64BE(0) + 1_000_000n, 0);
    expect(nonces.check(later.toString('base64url'), 'r')).toBe('invalid');
    for (const junk of [
      '',
      'abc',
      nonce.slice(1),
      `${nonce}A`,
      `${nonce.slice(0, 53)}+`,
      `${nonce.slice(0, 53)}=`,
    ]) {
      expect(nonces.check(junk, 'r')).toBe('invalid');
    }
  });

  it('judges the first answer to its own challenge (not signed again) as a signature check would', () => {
    let now = 1_700_000_000_000;
    const issuer = new NonceManager({ secret: SECRET, lifetimeSeconds: 300, now: () => now });
    // Same secret, never issued these nonces: every answer is checked by its signature.
    const peer = new NonceManager({ secret: Buffer.from(SECRET), lifetimeSeconds: 300, now: () => now });
    const cases: { realm: string; flow: string; age: number }[] = [
      { realm: 'r', flow: 'tcp:1', age: 0 },
      { realm: 'r', flow: 'tcp:2', age: 0 },
      { realm: 'other', flow: 'tcp:1', age: 0 },
      { realm: 'r', flow: 'tcp:1', age: 300_001 },
      { realm: 'r', flow: 'tcp:2', age: 300_001 },
      { realm: 'r', flow: 'tcp:1', age: -3_600_000 },
    ];
    for (const { realm, flow, age } of cases) {
      const start = now;
      const nonce = issuer.create('r', 'tcp:1');
      now = start + age;
      const expected = peer.inspect(nonce, realm, flow);
      expect(issuer.inspect(nonce, realm, flow)).toEqual(expected);
      // Again, once the first answer has used it up: by the signature, the same.
      expect(issuer.inspect(nonce, realm, flow)).toEqual(expected);
      now = start;
    }
    expect(peer.check(issuer.create('r', 'tcp:1'), 'r', 'tcp:1')).toBe('valid');
  });

  it('forgets unanswered challenges past a bound and still checks them by signature', () => {
    const nonces = new NonceManager({ secret: SECRET });
    const first = nonces.create('r', 'f');
    for (let i = 0; i < 20_000; i++) nonces.create('r', 'f');
    expect(nonces.check(first, 'r', 'f')).toBe('valid');
    expect(nonces.check(first, 'r', 'g')).toBe('other-flow');
  });

  it('wants a real secret', () => {
    expect(() => new NonceManager({ secret: Buffer.from('short') })).toThrow();
  });
});

describe('buildChallenge', () => {
  const nonces = new NonceManager({ secret: SECRET });

  it('a seeded challenge (a transaction key and an issue time) comes out the same each time, tag included', () => {
    let now = 1_700_000_000_000;
    const clock = new NonceManager({ secret: SECRET, now: () => now });
    const seed = { key: 'z9hG4bKa|192.0.2.1:5060|REGISTER', issuedAt: now };
    const opts = { realm: 'example.com', algorithms: ['MD5' as const], flowKey: 'u1', seed };
    const first = buildChallenge(clock, opts);
    now += 20_000;
    const again = buildChallenge(clock, opts);
    expect(again).toEqual(first);
    expect(first.toTag).toMatch(/^[A-Za-z0-9_-]{10}$/);
    const nonceOf = (c: string) => /nonce="([^"]+)"/.exec(c)![1]!;
    // Still one of ours, issued when the seed says, bound to its flow.
    expect(clock.inspect(nonceOf(again.values[0]!), 'example.com', 'u1')).toEqual({
      check: 'valid',
      issuedAt: seed.issuedAt,
    });
    // Another key, another time or another secret: another nonce and tag.
    for (const other of [
      buildChallenge(clock, { ...opts, seed: { ...seed, key: 'z9hG4bKb|192.0.2.1:5060|REGISTER' } }),
      buildChallenge(clock, { ...opts, seed: { ...seed, issuedAt: seed.issuedAt + 1 } }),
      buildChallenge(new NonceManager({ secret: Buffer.alloc(32, 7) }), opts),
    ]) {
      expect(nonceOf(other.values[0]!)).not.toBe(nonceOf(first.values[0]!));
      expect(other.toTag).not.toBe(first.toTag);
    }
    // Unseeded, two challenges never share a tag.
    expect(buildChallenge(clock, { realm: 'example.com' }).toTag).not.toBe(
      buildChallenge(clock, { realm: 'example.com' }).toTag,
    );
  });

  it('keeps at most 16,384 challenges awaiting their answer, the oldest going first, answered ones or not', () => {
    const manager = new NonceManager({ secret: SECRET });
    const outstanding = (manager as unknown as { outstanding: Map<string, unknown> }).outstanding;
    const issued: string[] = [];
    for (let i = 0; i < 20_000; i++) {
      issued.push(manager.create('example.com', 'f1'));
      // Every third answered at once (deleted from the middle), as under load.
      if (i % 3 === 0) manager.inspect(issued[i]!, 'example.com', 'f1');
    }
    for (let i = 0; i < 30_000; i++) issued.push(manager.create('example.com', 'f1'));
    expect(outstanding.size).toBe(16_384);
    // The newest are all there, and none older than them.
    for (const nonce of issued.slice(-16_384)) expect(outstanding.has(nonce)).toBe(true);
    // Pushed out or answered, a nonce still checks by its signature.
    expect(manager.inspect(issued[1]!, 'example.com', 'f1').check).toBe('valid');
  });

  it("a seeded nonce's time and salt are what every server sharing the secret derives, whatever the key's length or script", () => {
    const issuedAt = 1_700_000_123_456;
    const clock = new NonceManager({ secret: SECRET, now: () => issuedAt });
    for (const key of ['z9hG4bKa|192.0.2.1:5060|REGISTER', `${'é'.repeat(400)}|x`, 'a'.repeat(2000)]) {
      const bytes = Buffer.from(clock.create('example.com', 'u1', { key, issuedAt }), 'base64url');
      expect(Number(bytes.readBigUInt64BE(0))).toBe(issuedAt);
      const salt = createHash('sha256')
        .update(Buffer.concat([SECRET, Buffer.from(`|seed|${issuedAt}|${key}`, 'utf8')]))
        .digest()
        .subarray(0, 8);
      expect(bytes.subarray(8, 16).equals(salt)).toBe(true);
    }
  });

  it('offers SHA-256 then MD5 with one shared nonce (RFC 8760 2.4)', () => {
    const challenges = buildChallenge(nonces, { realm: 'example.com' }).values;
    expect(challenges).toHaveLength(2);
    expect(challenges[0]).toMatch(
      /^Digest realm="example.com", nonce="[A-Za-z0-9_-]{54}", algorithm=SHA-256, qop="auth"$/,
    );
    expect(challenges[1]).toMatch(/algorithm=MD5, qop="auth"$/);
    const nonceOf = (c: string) => /nonce="([^"]+)"/.exec(c)![1]!;
    expect(nonceOf(challenges[0]!)).toBe(nonceOf(challenges[1]!));
    expect(nonces.check(nonceOf(challenges[0]!), 'example.com')).toBe('valid');
  });

  it('marks stale challenges, carries opaque, escapes the realm, honours the algorithm list', () => {
    const [only, ...rest] = buildChallenge(nonces, {
      realm: 'ACME "Corp" \\ HQ',
      stale: true,
      algorithms: ['MD5'],
      opaque: 'xyz',
    }).values;
    expect(rest).toHaveLength(0);
    expect(only).toContain('realm="ACME \\"Corp\\" \\\\ HQ"');
    expect(only).toContain('opaque="xyz"');
    expect(only).toContain('stale=TRUE');
    expect(only).toContain('algorithm=MD5');
  });

  it('round-trips: a client answering the challenge is verified', () => {
    const [challenge] = buildChallenge(nonces, { realm: 'example.com' }).values;
    const nonce = /nonce="([^"]+)"/.exec(challenge!)![1]!;
    const ha1 = computeHa1('carol', 'example.com', 'pw', 'SHA-256');
    const creds: DigestCredentials = {
      username: 'carol',
      realm: 'example.com',
      nonce,
      uri: 'sip:example.com',
      response: '',
      algorithm: 'SHA-256',
      qop: 'auth',
      nc: '00000001',
      cnonce: 'abc',
    };
    creds.response = expectedResponse(creds, 'REGISTER', ha1);
    const header =
      `Digest username="carol", realm="example.com", nonce="${nonce}", uri="sip:example.com", ` +
      `response="${creds.response}", algorithm=SHA-256, qop=auth, nc=00000001, cnonce="abc"`;
    const parsed = credsOf(header);
    expect(nonces.check(parsed.nonce, parsed.realm)).toBe('valid');
    expect(verifyDigest(parsed, 'REGISTER', ha1)).toBe(true);
  });
});

describe('digestUriMatches (RFC 3261 22.4 / 19.1.4)', () => {
  it('matches equivalent SIP URIs', () => {
    expect(digestUriMatches('sip:example.com', 'sip:example.com')).toBe(true);
    expect(digestUriMatches('sip:EXAMPLE.com', 'SIP:example.COM')).toBe(true);
    expect(digestUriMatches('sip:%61lice@example.com', 'sip:alice@example.com')).toBe(true);
    expect(digestUriMatches('sip:example.com;transport=TCP;lr', 'sip:example.com;transport=tcp')).toBe(true);
    expect(digestUriMatches('sip:example.com;foo=1', 'sip:example.com')).toBe(true);
    expect(digestUriMatches('sip:[2001:db8::1]:5060', 'sip:[2001:DB8::1]:5060')).toBe(true);
    expect(digestUriMatches('<sip:example.com>', 'sip:example.com')).toBe(true);
  });

  it('refuses different ones', () => {
    expect(digestUriMatches('sip:example.com', 'sip:other.com')).toBe(false);
    expect(digestUriMatches('sip:example.com', 'sips:example.com')).toBe(false);
    expect(digestUriMatches('sip:example.com:5060', 'sip:example.com')).toBe(false);
    expect(digestUriMatches('sip:Alice@example.com', 'sip:alice@example.com')).toBe(false);
    expect(digestUriMatches('sip:example.com;transport=tcp', 'sip:example.com')).toBe(false);
    expect(digestUriMatches('sip:example.com;foo=1', 'sip:example.com;foo=2')).toBe(false);
    expect(digestUriMatches('sip:example.com?subject=x', 'sip:example.com')).toBe(false);
    expect(digestUriMatches('/dir/index.html', '/dir/index.htm')).toBe(false);
    expect(digestUriMatches('tel:+123', 'TEL:+123')).toBe(false);
    expect(digestUriMatches('garbage', 'sip:example.com')).toBe(false);
  });

  it('compares headers regardless of order, escaped parameter values, and prototype names as data', () => {
    expect(digestUriMatches('sip:example.com?a=1&b=2', 'sip:example.com?b=2&a=1')).toBe(true);
    expect(digestUriMatches('sip:example.com?a=1', 'sip:example.com?a=1&b=2')).toBe(false);
    expect(digestUriMatches('sip:example.com;user=%70hone', 'sip:example.com;user=phone')).toBe(true);
    expect(digestUriMatches('sip:example.com;constructor=1', 'sip:example.com')).toBe(true);
    expect(digestUriMatches('sip:example.com;constructor=1', 'sip:example.com;constructor=2')).toBe(false);
  });

  it('takes the Request-URI already parsed', () => {
    expect(digestUriMatches('sip:EXAMPLE.com', parseUri('sip:example.com'))).toBe(true);
    expect(digestUriMatches('sip:example.com', parseUri('sip:other.com'))).toBe(false);
    expect(digestUriMatches('sip:example.com', undefined)).toBe(false);
  });
});
