import { createTag } from '../sip/ids.js';
import type { SipMessage } from '../sip/message.js';
import { type SipUri, uriAor } from '../sip/uri.js';
import type { ServerTransaction } from '../transaction/layer.js';
import type { Flow } from '../transport/flow.js';
import type { AuthVerdict, RequestAuthenticator } from './core.js';
import type { ForwardTarget } from './forward.js';

/** Where a user lives: the SIP address of its home (a pool's load balancer or a standard server). */
export type PlacementLookup = (aor: string) => Promise<{ home: string; address: string } | undefined>;

export interface DirectorOptions {
  domain: string;
  authenticator: RequestAuthenticator;
  placement: PlacementLookup;
  /** Sends a request on to a home (the proxy core's forwarder). */
  forward(request: SipMessage, st: ServerTransaction, targets: ForwardTarget[]): void;
  /** A connection to the home named by a SIP URI. */
  resolve(uri: string): Promise<Flow>;
  /** The edge (and other trusted peers): their REGISTERs are proxied to the home, not redirected. */
  isTrustedPeer?(flow: Flow): boolean;
}

/**
 * The director: the first hop of sign-in. It authenticates a REGISTER and answers with a
 * redirect to the user's home (RFC 3261 21.3.3 302, Contact = the home), so clients
 * register where they live; a mixed legacy/pool environment keeps working because every
 * client asks the director first. Other requests for users (from the edge) are proxied to
 * the home. The director keeps no registrations.
 */
export class Director {
  constructor(private readonly opts: DirectorOptions) {}

  handleRegister(request: SipMessage, st: ServerTransaction): void {
    const ruri = request.requestUri;
    if (!ruri || ruri.host.toLowerCase() !== this.opts.domain) {
      st.reply(404, 'Domain Not Served Here');
      return;
    }
    // A remote user signs in through the edge, which cannot follow a redirect for its client:
    // the REGISTER goes on to the home, whose registrar challenges it end to end.
    const to = request.toUri;
    if (to && this.opts.isTrustedPeer?.(st.flow)) {
      this.routeToHome(request, st, to);
      return;
    }
    const outcome = this.opts.authenticator.authenticate(request, 'www', st.flow, st);
    const decide = (o: AuthVerdict) => {
      if (!o.ok) {
        if ('reason' in o) st.reply(o.status, o.reason);
        else {
          st.reply(401, undefined, {
            toTag: o.toTag ?? createTag(),
            headers: o.challenges.map((value) => ({ name: 'www-authenticate', value })),
          });
        }
        return;
      }
      const to = request.toUri;
      if (!to || uriAor(to) !== o.aor) {
        st.reply(403, 'Forbidden - To does not match the authenticated user');
        return;
      }
      this.redirect(o.aor, st);
    };
    if (outcome instanceof Promise) outcome.then(decide, () => st.reply(500, 'Credential Store Unavailable'));
    else decide(outcome);
  }

  private redirect(aor: string, st: ServerTransaction): void {
    this.opts.placement(aor).then(
      (placed) => {
        if (!placed) {
          st.reply(404, 'Not Found - no home for this user');
          return;
        }
        // 302: the home is where the user lives now; a migration may move it later.
        st.reply(302, 'Moved Temporarily', {
          toTag: createTag(),
          headers: [{ name: 'contact', value: `<${placed.address}>` }],
        });
      },
      () => st.reply(500, 'Placement Unavailable'),
    );
  }

  /** A request for a user (from the edge or a home): proxied to the user's home. */
  routeToHome(request: SipMessage, st: ServerTransaction, ruri: SipUri): void {
    this.opts.placement(uriAor(ruri)).then(
      (placed) => {
        if (!placed) {
          st.reply(404, 'Not Found');
          return;
        }
        const home = placed.address;
        const route = home.includes(';lr') ? `<${home}>` : `<${home};lr>`;
        this.opts.forward(request, st, [
          { uri: request.uri, route: [route], resolve: () => this.opts.resolve(home) },
        ]);
      },
      () => st.reply(500, 'Placement Unavailable'),
    );
  }
}
