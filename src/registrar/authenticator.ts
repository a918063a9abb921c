import type { SipMessage } from '../sip/message.js';
import type { CredentialCache, UserCredentials } from './credentials.js';
import {
  buildChallenges,
  type DigestAlgorithm,
  type DigestCredentials,
  digestUriMatches,
  type NonceManager,
  parseAuthorization,
  verifyDigest,
} from './digest.js';

export type AuthOutcome =
  | { ok: true; aor: string }
  | { ok: false; status: 401 | 407; challenges: string[] }
  | { ok: false; status: 400 | 403; reason: string };

export type AuthKind = 'www' | 'proxy';

/**
 * Digest authentication of one request (RFC 3261 22): the registrar uses WWW-Authenticate
 * (401), the proxy Proxy-Authenticate (407). Unknown users, disabled users and wrong
 * passwords all get the same fresh challenge, so a client cannot tell them apart.
 */
export class Authenticator {
  constructor(
    private readonly realm: string,
    private readonly nonces: NonceManager,
    private readonly credentials: CredentialCache,
    /** Challenges to offer, most preferred first (RFC 8760 2.4). */
    private readonly algorithms: DigestAlgorithm[] = ['MD5'],
  ) {}

  /**
   * RFC 3261 22.4 wants the digest uri to equal the Request-URI; some clients (SIPp among
   * them) put the address they sent to. A uri naming this server or its domain is accepted:
   * the response hash covers it, so it cannot be replayed against another server.
   */
  isLocalUri: (uri: string) => boolean = () => false;

  /** Synchronous when the user's credentials are cached, which they are after the first request. */
  authenticate(request: SipMessage, kind: AuthKind): AuthOutcome | Promise<AuthOutcome> {
    const header = request.get(kind === 'www' ? 'authorization' : 'proxy-authorization');
    if (header === undefined) return this.challenge(kind, false);
    const parsed = parseAuthorization(header);
    if ('error' in parsed) return { ok: false, status: 400, reason: `Bad Request - ${parsed.error}` };
    if (parsed.realm !== this.realm) return this.challenge(kind, false);
    const nonce = this.nonces.check(parsed.nonce, this.realm);
    if (nonce === 'invalid') return this.challenge(kind, false);
    if (!digestUriMatches(parsed.uri, request.uri) && !this.isLocalUri(parsed.uri)) {
      return {
        ok: false,
        status: 400,
        reason: `Bad Request - digest uri ${parsed.uri} does not match Request-URI ${request.uri}`,
      };
    }
    const aor = `${parsed.username}@${this.realm}`.toLowerCase();
    const cached = this.credentials.peek(aor);
    if (cached !== undefined) return this.decide(request, parsed, cached, nonce === 'stale', kind, true);
    return this.credentials
      .fetch(aor)
      .then((fetched) => this.decide(request, parsed, fetched, nonce === 'stale', kind, false));
  }

  private decide(
    request: SipMessage,
    creds: DigestCredentials,
    user: UserCredentials | null,
    stale: boolean,
    kind: AuthKind,
    fromCache: boolean,
  ): AuthOutcome | Promise<AuthOutcome> {
    if (!user || !user.enabled) return this.challenge(kind, false);
    const ha1 = creds.algorithm === 'SHA-256' ? user.ha1Sha256 : user.ha1Md5;
    if (!verifyDigest(creds, request.method, ha1)) {
      // The password may have changed since we cached it: look once more before refusing.
      if (fromCache) {
        return this.credentials.fetch(user.aor).then((fresh) => {
          if (!fresh || !fresh.enabled) return this.challenge(kind, false);
          const again = creds.algorithm === 'SHA-256' ? fresh.ha1Sha256 : fresh.ha1Md5;
          return verifyDigest(creds, request.method, again)
            ? this.accept(user.aor, stale, kind)
            : this.challenge(kind, false);
        });
      }
      return this.challenge(kind, false);
    }
    return this.accept(user.aor, stale, kind);
  }

  private accept(aor: string, stale: boolean, kind: AuthKind): AuthOutcome {
    // RFC 7616 3.3: a correct answer to an expired nonce gets a new challenge with stale=true,
    // so the client retries without asking its user for the password again.
    if (stale) return this.challenge(kind, true);
    return { ok: true, aor };
  }

  challenge(kind: AuthKind, stale: boolean): AuthOutcome {
    return {
      ok: false,
      status: kind === 'www' ? 401 : 407,
      challenges: buildChallenges(this.nonces, { realm: this.realm, stale, algorithms: this.algorithms }),
    };
  }
}
