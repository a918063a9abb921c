import type { AuthenticatedParty, RequestHandler } from '../proxy/core.js';
import type { SipMessage } from '../sip/message.js';
import { uriAor } from '../sip/uri.js';
import type { ServerTransaction } from '../transaction/layer.js';

/** A routed instant message, for archiving (compliance). */
export interface ArchivedMessage {
  sender: string;
  recipient: string;
  contentType: string;
  body: string;
  /** Body bytes. */
  size: number;
}

/** Where MessageService hands messages to archive (src/archive/writer.ts ArchiveWriter is one). */
export interface MessageArchive {
  wants(sender: string, recipient: string): boolean;
  /** False while messages must be refused because the archive cannot be written (`onFailure: block`). */
  readonly accepting: boolean;
  /** The message is routed on this transaction; its final response completes the record. */
  begin(st: ServerTransaction, message: ArchivedMessage): void;
}

export interface MessageServiceOptions {
  /** Proxies the MESSAGE to every endpoint of the recipient (the proxy core's fork). */
  deliver(request: SipMessage, st: ServerTransaction, party: AuthenticatedParty): void;
  archive?: MessageArchive;
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
    const archive = this.opts.archive;
    if (archive) {
      const to = request.requestUri;
      const from = request.fromUri;
      const sender = party.aor ?? (from ? uriAor(from) : request.from.uri);
      const recipient = to ? uriAor(to) : request.uri;
      if (archive.wants(sender, recipient)) {
        // Compliance: nothing is delivered that the archive cannot hold.
        if (!archive.accepting) {
          st.reply(500, 'Server Internal Error - Archive Unavailable');
          return;
        }
        archive.begin(st, {
          sender,
          recipient,
          contentType: request.contentType ?? '',
          body: request.body.toString('utf8'),
          size: request.body.length,
        });
      }
    }
    this.opts.onRouted?.(request.body.length);
    this.opts.deliver(request, st, party);
  }
}
