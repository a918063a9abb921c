import { computeHa1, type DigestAlgorithm } from './digest.js';

export { computeHa1, type DigestAlgorithm };

/** The two stored digest secrets of one password (RFC 8760: SHA-256, MD5 for older clients). */
export interface Ha1Pair {
  ha1Md5: string;
  ha1Sha256: string;
}

/** HA1 = H(username:realm:password) for both algorithms (RFC 7616 3.4.2), lower-case hex. */
export function computeHa1Pair(username: string, realm: string, password: string): Ha1Pair {
  return {
    ha1Md5: computeHa1(username, realm, password, 'MD5'),
    ha1Sha256: computeHa1(username, realm, password, 'SHA-256'),
  };
}

/**
 * Digest identity of a user. Parley's convention (the registrar's Authenticator relies on
 * it): the digest username is the user part of the AOR and the realm is the SIP domain,
 * so alice@example.com authenticates as username "alice" in realm "example.com", and the
 * server finds the AOR again as username@realm.
 */
export function digestIdentity(aor: string): { username: string; realm: string } {
  const at = aor.lastIndexOf('@');
  if (at <= 0 || at === aor.length - 1) throw new Error(`${aor} is not an address of record (user@domain)`);
  return { username: aor.slice(0, at), realm: aor.slice(at + 1).toLowerCase() };
}

/** HA1 pair of an AOR's password, under Parley's username/realm convention. */
export function computeUserHa1(aor: string, password: string): Ha1Pair {
  const { username, realm } = digestIdentity(aor);
  return computeHa1Pair(username, realm, password);
}
