import { Authenticator, type AuthFlow, type AuthKind, type AuthOutcome } from '../registrar/authenticator.js';
import type { SipMessage } from '../sip/message.js';

/** The digest algorithm an Authorization names; RFC 2617 3.2.2: none means MD5. */
function answeredAlgorithm(header: string): string {
  return /\balgorithm\s*=\s*"?([^",\s]+)/i.exec(header)?.[1]?.toUpperCase() ?? 'MD5';
}

/**
 * `security: high` (docs/config.md): digest answers are accepted in SHA-256 only. Such a
 * server challenges with SHA-256 alone, but a client may still answer MD5 (the stored MD5
 * HA1 would verify it); this refuses those answers outright, before any secret is looked at.
 */
export class Sha256OnlyAuthenticator extends Authenticator {
  override authenticate(
    request: SipMessage,
    kind: AuthKind,
    flow?: AuthFlow,
  ): AuthOutcome | Promise<AuthOutcome> {
    const header = request.get(kind === 'www' ? 'authorization' : 'proxy-authorization');
    if (header !== undefined && /^\s*digest\b/i.test(header) && answeredAlgorithm(header) !== 'SHA-256') {
      return { ok: false, status: 403, reason: 'Forbidden - MD5 Digest Refused (security: high)' };
    }
    return super.authenticate(request, kind, flow);
  }
}
