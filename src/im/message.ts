import type { AuthenticatedParty, RequestHandler } from '../proxy/core.js';
import type { SipMessage } from '../sip/message.js';
import { uriAor } from '../sip/uri.js';
import type { ServerTransaction } from '../transaction/layer.js';

/** A routed instant message, for archiving (compliance) and metrics. */
export interface ArchivedMessage {
  sender: string;
  recipient: string;
  contentType: string;
  body: string;
}

export interface MessageServiceOptions {
  /** Proxies the MESSAGE to every endpoint of the recipient (the proxy core's fork). */
  deliver(request: SipMessage, st: ServerTransaction, party: AuthenticatedParty): void;
  archive?: (message: ArchivedMessage) => void;
  onRouted?: (bytes: number) => void;
}

/**
 * MESSAGE (RFC 3428): a page-mode instant message, delivered to every registered endpoint
 * of the recipient; the first 2xx answers the sender (RFC 3428 7 via RFC 3261 16.7).
 */
export class MessageService implements RequestHandler {
  constructor(private readonly opts: MessageServiceOptions) {}

  handle(request: SipMessage, st: ServerTransaction, party: AuthenticatedParty): void {
    // RFC 3428 5: a MESSAGE that would create a dialog, or lacks a body type, is refused.
    if (request.body.length > 0 && !request.contentType) {
      st.reply(400, 'Bad Request - body without Content-Type');
      return;
    }
    this.opts.onRouted?.(request.body.length);
    if (this.opts.archive) {
      const to = request.requestUri;
      this.opts.archive({
        sender: party.aor ?? request.from.uri,
        recipient: to ? uriAor(to) : request.uri,
        contentType: request.contentType ?? '',
        body: request.body.toString('utf8'),
      });
    }
    this.opts.deliver(request, st, party);
  }
}
