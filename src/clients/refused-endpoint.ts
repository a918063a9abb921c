import type { Logger } from 'pino';
import type { Binding } from '../registrar/location.js';
import type { SipMessage } from '../sip/message.js';
import { uriAor } from '../sip/uri.js';
import type { Flow } from '../transport/flow.js';

export interface RefusedEndpointDeps {
  location: { lookup(aor: string): Binding[]; remove(aor: string, contact: string): boolean };
  /** Ends the subscriptions the endpoint holds over the flow and removes what it published over it. */
  endpointRefused(flowId: string): Promise<number>;
  log: Pick<Logger, 'info' | 'warn'>;
}

/**
 * A REGISTER refresh refused by the client version rules (issue 13): the endpoint that sent it
 * is signed out now, not when its binding would have expired. The REGISTER was refused before
 * authentication, so only the binding it refreshes is touched: the To AOR's binding made over
 * this very flow with this Call-ID (RFC 3261 10.2.4: a refresh keeps the Call-ID). Nobody else
 * can send on the endpoint's own connection, and an off-path sender cannot know the Call-ID,
 * so a forged refresh signs nobody out.
 */
export function endRefusedEndpoint(deps: RefusedEndpointDeps, request: SipMessage, flow: Flow): void {
  const toUri = request.toUri;
  if (!toUri) return;
  const aor = uriAor(toUri);
  const own = deps.location.lookup(aor).filter((b) => b.flowId === flow.id && b.callId === request.callId);
  if (own.length === 0) return;
  for (const b of own) deps.location.remove(aor, b.contact);
  // Behind a Path the flow is a proxy's (the edge), shared by many users: only the binding
  // goes (and with the user's last one, what it published); the others' subscriptions stay.
  if (request.getAll('path').length > 0) {
    deps.log.info(
      { user: aor, endpoints: own.length },
      'endpoint signed out: its client was refused at its refresh',
    );
    return;
  }
  deps.endpointRefused(flow.id).then(
    (subscriptions) =>
      deps.log.info(
        { user: aor, endpoints: own.length, subscriptions, userAgent: request.get('user-agent') },
        'endpoint signed out: its client was refused at its refresh',
      ),
    (err: unknown) => deps.log.warn({ err }, 'presence update after a refused refresh failed'),
  );
}
