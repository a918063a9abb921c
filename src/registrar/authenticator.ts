import type { Logger } from 'pino';
import type { SipMessage } from '../sip/message.js';
import { parseUri } from '../sip/uri.js';
import type { Flow } from '../transport/flow.js';
import { AuthFailureTracker, type LockScope } from './auth-failures.js';
import type { CredentialCache, UserCredentials } from './credentials.js';
import {
  buildChallenge,
  type DigestAlgorithm,
  type DigestCredentials,
  type DigestQop,
  digestUriMatches,
  type NonceInspection,
  type NonceManager,
  type NonceSeed,
  parseAuthorization,
  verifyDigest,
} from './digest.js';
import { NonceCountWindow } from './nonce-counts.js';

export type AuthOutcome =
  | { ok: true; aor: string }
  | { ok: false; status: 401 | 407; challenges: string[]; toTag: string }
  | { ok: false; status: 400 | 403; reason: string };

/**
 * The server transaction a request came in, as far as authentication needs it: a request
 * without credentials over UDP is challenged with a nonce and To tag derived from the
 * transaction's key and the challenge's issue time, which is written here (NonceSeed). A retransmission of
 * that request over UDP comes back with the time already set and gets the same challenge
 * (transaction/completed.ts keeps only the time for Timer J).
 */
export interface ChallengeSeed {
  readonly key: string;
  challengeIssuedAt?: number;
}

export type AuthKind = 'www' | 'proxy';

/** What authentication needs of the connection a request came on. */
export type AuthFlow = Pick<Flow, 'id' | 'remoteAddress' | 'transport' | 'peerNames'>;

/**
 * Why a request carrying credentials was refused, for the failure metric and log. The first
 * challenge of a sign-in (no credentials yet) is not a failure.
 *  - wrong_password, unknown_user, disabled: a guess; counted against the guessing limits.
 *  - locked_out: refused with 403 before the password was looked at.
 *  - replayed: right answer, but its (nonce, nc) was already used on this connection.
 *  - other_flow: right answer to a nonce issued to another connection (a reconnected client,
 *    a director's nonce brought to the home, or a captured request replayed elsewhere).
 *  - expired: right answer to a nonce past its lifetime.
 *  - bad_nonce: a nonce we did not issue (forged, or signed with a rotated secret).
 *  - algorithm_not_offered: an answer in a digest algorithm the challenge did not offer (MD5
 *    to a SHA-256-only server, SHA-512-256, a made-up name): a downgrade or a broken client.
 *  - wrong_realm, malformed: the client's configuration or parser.
 */
export const AUTH_FAILURE_REASONS = [
  'wrong_password',
  'unknown_user',
  'disabled',
  'locked_out',
  'replayed',
  'other_flow',
  'expired',
  'bad_nonce',
  'algorithm_not_offered',
  'wrong_realm',
  'malformed',
] as const;
export type AuthFailureReason = (typeof AUTH_FAILURE_REASONS)[number];

export interface AuthenticatorOptions {
  /**
   * The algorithms this authenticator offers, most preferred first (RFC 8760 2.4), one
   * challenge each; an answer in any other algorithm is refused. Default ['MD5'] (see
   * digestAlgorithms in roles/server-sip.ts for why the server's default is MD5 alone).
   */
  algorithms?: DigestAlgorithm[];
  failures?: AuthFailureTracker;
  nonceCounts?: NonceCountWindow;
  log?: Pick<Logger, 'warn' | 'info' | 'debug'>;
  /** Every refusal of a request that carried credentials (not the first challenge). */
  onFailure?: (reason: AuthFailureReason) => void;
  /** Every 401/407 challenge sent, including the first of every sign-in. */
  onChallenge?: (kind: AuthKind) => void;
  /**
   * The client's own address when a trusted peer (the edge) passed it on: the guessing limits
   * count it instead of the connection's address, which every remote user shares.
   */
  clientAddress?: (request: SipMessage, flow: AuthFlow) => string | undefined;
  /** Holds a failed guess's answer back; injectable for tests. */
  sleep?: (ms: number) => Promise<void>;
}

/**
 * RFC 7616 3.4.3: auth-int covers the body too. Offered with auth in 407 challenges (the
 * proxy's requests carry bodies: MESSAGE, PUBLISH); REGISTER has none, so its 401 offers auth
 * alone. With qop=auth a body is still safe from replay: the nonce only works on the client's
 * own connection, and each (nonce, nc) only once.
 */
const QOP_BY_KIND: Record<AuthKind, DigestQop[]> = { www: ['auth'], proxy: ['auth', 'auth-int'] };

/**
 * Digest authentication of one request (RFC 3261 22): the registrar uses WWW-Authenticate
 * (401), the proxy Proxy-Authenticate (407). Unknown users, disabled users and wrong
 * passwords all get the same fresh challenge, so a client cannot tell them apart.
 *
 * Replay: each nonce is bound to the connection it was issued on and each (nonce, nc) is
 * accepted once (see NonceManager, NonceCountWindow); a replay on the same or another
 * connection gets a fresh challenge. Guessing: see AuthFailureTracker.
 *
 * Algorithms: only an answer in an algorithm this authenticator offered is looked at. RFC 8760
 * 2.4 has the client use the topmost challenge it supports; a client that answers MD5 when
 * only SHA-256 was offered (both HA1s are stored, so it would verify) is downgrading, and one
 * that names an algorithm nobody offered cannot be verified: both get a fresh challenge.
 */
export class Authenticator {
  private readonly algorithms: DigestAlgorithm[];
  private readonly failures: AuthFailureTracker;
  private readonly nonceCounts: NonceCountWindow;
  private readonly log?: AuthenticatorOptions['log'];
  private readonly onFailure?: (reason: AuthFailureReason) => void;
  private readonly onChallenge?: (kind: AuthKind) => void;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly clientAddress?: AuthenticatorOptions['clientAddress'];

  constructor(
    private readonly realm: string,
    private readonly nonces: NonceManager,
    private readonly credentials: CredentialCache,
    algorithmsOrOptions: DigestAlgorithm[] | AuthenticatorOptions = {},
  ) {
    const opts: AuthenticatorOptions = Array.isArray(algorithmsOrOptions)
      ? { algorithms: algorithmsOrOptions }
      : algorithmsOrOptions;
    this.algorithms = opts.algorithms ?? ['MD5'];
    if (this.algorithms.length === 0)
      throw new Error('an authenticator must offer at least one digest algorithm');
    this.failures = opts.failures ?? new AuthFailureTracker();
    this.nonceCounts = opts.nonceCounts ?? new NonceCountWindow();
    this.log = opts.log;
    this.onFailure = opts.onFailure;
    this.onChallenge = opts.onChallenge;
    this.sleep = opts.sleep ?? defaultSleep;
    this.clientAddress = opts.clientAddress;
  }

  /**
   * RFC 3261 22.4 wants the digest uri to equal the Request-URI; some clients (SIPp among
   * them) put the address they sent to. A uri naming this server or its domain is accepted:
   * the response hash covers it, so it cannot be replayed against another server. Behind a
   * trusted edge any uri naming a server is (see namesServer).
   */
  isLocalUri: (uri: string) => boolean = () => false;

  /**
   * Synchronous when the user's credentials are cached (they are after the first request)
   * and no failure's answer is held back. `flow` is the connection the request came on:
   * without it nonces are bound to no connection and guesses are not told apart by address.
   */
  authenticate(
    request: SipMessage,
    kind: AuthKind,
    flow?: AuthFlow,
    seed?: ChallengeSeed,
  ): AuthOutcome | Promise<AuthOutcome> {
    const header = request.get(kind === 'www' ? 'authorization' : 'proxy-authorization');
    const flowKey = flow?.id ?? '';
    if (header === undefined) {
      // Only over UDP is a challenge answered again (Timer J); elsewhere its salt stays random
      // and costs no hash.
      if (!seed || flow?.transport !== 'udp') return this.challenge(kind, false, flowKey);
      seed.challengeIssuedAt ??= this.nonces.issueTime();
      return this.challenge(kind, false, flowKey, { key: seed.key, issuedAt: seed.challengeIssuedAt });
    }
    const parsed = parseAuthorization(header);
    const client = flow ? this.clientAddress?.(request, flow) : undefined;
    const address = client ?? flow?.remoteAddress ?? '';
    if ('error' in parsed && parsed.algorithm !== undefined) {
      return this.notOffered(kind, flowKey, parsed.algorithm, parsed.username, address);
    }
    if ('error' in parsed) {
      this.failed('malformed', undefined, address);
      return { ok: false, status: 400, reason: `Bad Request - ${parsed.error}` };
    }
    if (!this.algorithms.includes(parsed.algorithm)) {
      return this.notOffered(kind, flowKey, parsed.algorithm, parsed.username, address);
    }
    if (parsed.realm !== this.realm) {
      this.failed('wrong_realm', parsed.username, address);
      return this.challenge(kind, false, flowKey);
    }
    const nonce = this.nonces.inspect(parsed.nonce, this.realm, flowKey);
    if (nonce.check === 'invalid') {
      this.failed('bad_nonce', parsed.username, address);
      return this.challenge(kind, false, flowKey);
    }
    if (
      parsed.uri !== request.uri &&
      !digestUriMatches(parsed.uri, request.requestUri) &&
      !this.isLocalUri(parsed.uri) &&
      !(client !== undefined && namesServer(parsed.uri))
    ) {
      return {
        ok: false,
        status: 400,
        reason: `Bad Request - digest uri ${parsed.uri} does not match Request-URI ${request.uri}`,
      };
    }
    const user = parsed.username.toLowerCase();
    const lock = this.failures.check(user, address);
    if (lock.locked) {
      this.onFailure?.('locked_out');
      this.log?.debug({ user, address, scope: lock.scope }, 'authentication refused: locked out');
      return {
        ok: false,
        status: 403,
        reason: `Forbidden - too many failed attempts, retry in ${lock.retryAfterSeconds} s`,
      };
    }
    const aor = `${parsed.username}@${this.realm}`.toLowerCase();
    const attempt: Attempt = { request, creds: parsed, nonce, kind, flowKey, user, aor, address };
    const cached = this.credentials.peek(aor);
    if (cached !== undefined) return this.decide(attempt, cached, true);
    return this.credentials.fetch(aor).then((fetched) => this.decide(attempt, fetched, false));
  }

  private decide(
    attempt: Attempt,
    user: UserCredentials | null,
    fromCache: boolean,
  ): AuthOutcome | Promise<AuthOutcome> {
    if (!user) return this.refuse(attempt, 'unknown_user');
    if (!user.enabled) return this.refuse(attempt, 'disabled');
    if (!this.verify(attempt, user)) {
      // The password may have changed since we cached it: look once more before refusing.
      if (fromCache) {
        return this.credentials.fetch(user.aor).then((fresh) => {
          if (!fresh) return this.refuse(attempt, 'unknown_user');
          if (!fresh.enabled) return this.refuse(attempt, 'disabled');
          return this.verify(attempt, fresh)
            ? this.accept(attempt, user.aor)
            : this.refuse(attempt, 'wrong_password');
        });
      }
      return this.refuse(attempt, 'wrong_password');
    }
    return this.accept(attempt, user.aor);
  }

  private verify(attempt: Attempt, user: UserCredentials): boolean {
    const ha1 = attempt.creds.algorithm === 'SHA-256' ? user.ha1Sha256 : user.ha1Md5;
    return verifyDigest(attempt.creds, attempt.request.method, ha1, attempt.request.body);
  }

  /** The password is right; the nonce decides whether this request may pass. */
  private accept(attempt: Attempt, aor: string): AuthOutcome {
    const { nonce, creds, kind, flowKey, user, address } = attempt;
    // RFC 7616 3.3: a correct answer to an unusable nonce gets a new challenge with stale=true,
    // so the client retries without asking its user for the password again.
    if (nonce.check === 'stale') {
      this.failed('expired', user, address);
      return this.challenge(kind, true, flowKey);
    }
    if (nonce.check === 'other-flow') {
      this.failed('other_flow', user, address);
      this.log?.info({ user, address }, 'digest nonce from another connection: challenged again');
      return this.challenge(kind, true, flowKey);
    }
    // No qop (RFC 2069): no nc to tell requests apart, so the nonce is good once.
    const nc = creds.nc === undefined ? 1 : Number.parseInt(creds.nc, 16);
    if (!this.nonceCounts.use(creds.nonce, nonce.issuedAt, nc)) {
      this.failed('replayed', user, address);
      this.log?.warn(
        { event: 'auth_failure', user, aor: attempt.aor, address, reason: 'replayed', nc: creds.nc ?? null },
        'authentication refused: nonce count already used',
      );
      return this.challenge(kind, true, flowKey);
    }
    // Only a request that passes clears the record: a replayed right answer must not.
    this.failures.recordSuccess(user, address);
    return { ok: true, aor };
  }

  /** A failed guess: logged, counted, and answered later (or locked) as the tracker says. */
  private refuse(
    attempt: Attempt,
    reason: 'wrong_password' | 'unknown_user' | 'disabled',
  ): AuthOutcome | Promise<AuthOutcome> {
    const { user, aor, address, kind, flowKey } = attempt;
    this.onFailure?.(reason);
    const record = this.failures.recordFailure(user, address);
    this.log?.warn({ event: 'auth_failure', user, aor, address, reason }, 'authentication failed');
    if (record.lockedFor) this.logLock(user, aor, address, record.lockedFor.scope, record.lockedFor.seconds);
    const outcome = this.challenge(kind, false, flowKey);
    if (record.delayMs <= 0) return outcome;
    return this.sleep(record.delayMs).then(() => outcome);
  }

  /**
   * An answer in an algorithm we did not offer: refused before any secret is looked at, with a
   * fresh challenge (the client may still answer one we offer), not counted as a guess.
   */
  private notOffered(
    kind: AuthKind,
    flowKey: string,
    algorithm: string,
    user: string | undefined,
    address: string,
  ): AuthOutcome {
    this.onFailure?.('algorithm_not_offered');
    this.log?.warn(
      {
        event: 'auth_failure',
        user: user?.toLowerCase(),
        address,
        reason: 'algorithm_not_offered',
        algorithm,
        offered: this.algorithms,
      },
      'authentication refused: digest algorithm not offered',
    );
    return this.challenge(kind, false, flowKey);
  }

  private logLock(user: string, aor: string, address: string, scope: LockScope, seconds: number): void {
    const what =
      scope === 'address' ? 'address' : scope === 'user' ? 'user under attack, address' : 'user at address';
    this.log?.warn(
      { event: 'auth_lockout', user, aor, address, scope, seconds },
      `authentication locked out: ${what} for ${seconds} s`,
    );
  }

  /** A refusal that is not a guess: counted; logged only when it says something about the client. */
  private failed(reason: AuthFailureReason, user: string | undefined, address: string): void {
    this.onFailure?.(reason);
    if (reason === 'malformed' || reason === 'wrong_realm' || reason === 'bad_nonce') {
      this.log?.debug({ event: 'auth_failure', user, address, reason }, 'authentication refused');
    }
  }

  challenge(kind: AuthKind, stale: boolean, flowKey = '', seed?: NonceSeed): AuthOutcome {
    this.onChallenge?.(kind);
    const built = buildChallenge(this.nonces, {
      realm: this.realm,
      stale,
      algorithms: this.algorithms,
      flowKey,
      qop: QOP_BY_KIND[kind],
      seed,
    });
    return { ok: false, status: kind === 'www' ? 401 : 407, challenges: built.values, toTag: built.toTag };
  }
}

interface Attempt {
  request: SipMessage;
  creds: DigestCredentials;
  nonce: NonceInspection;
  kind: AuthKind;
  flowKey: string;
  /** The digest username, lower-cased: the guessing limits' key. */
  user: string;
  /** The address of record the username names in our realm (the key of sign_in lines). */
  aor: string;
  address: string;
}

/**
 * A digest uri naming a server rather than a user: behind the edge, a client that puts the
 * address it sent to (SIPp) names the edge's public address, which the home cannot know.
 * The answer's hash covers it and its nonce works on the edge's connection once per nc.
 */
function namesServer(text: string): boolean {
  const uri = parseUri(text);
  return uri !== undefined && uri.user === undefined;
}

function defaultSleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
