import { createHmac, timingSafeEqual } from 'node:crypto';
import type { SipMessage } from '../sip/message.js';

/** The Record-Route URI parameter that carries the dialog signature. */
export const DIALOG_ROUTE_PARAM = 'dlg';
const MAC_CHARS = 16;

/**
 * Signs the Record-Route entries this server inserts, for one dialog (RFC 3261 16.6 step 4
 * lets a proxy put what it wants in its own Record-Route URI). An in-dialog request that
 * comes back along a Route we signed for its Call-ID and one of its tags is forwarded
 * without authenticating its sender: both ends of the dialog got through us once, the
 * callee possibly from outside. A Route naming us without that signature, or signed for
 * another dialog, proves nothing, so such requests are authenticated like any other: this
 * is what keeps a stranger's pre-loaded `Route: <sip:us;lr>, <sip:victim;lr>` from using us
 * as a relay.
 *
 * The signature covers the Call-ID and the From tag of the dialog-forming request; in-dialog
 * requests carry that tag as From (caller) or To (callee). The key is shared by every server
 * of a store, so any front-end of a pool accepts the route another inserted.
 */
export class DialogRouteSigner {
  private readonly key: Buffer;

  constructor(secret: Buffer) {
    this.key = createHmac('sha256', secret).update('parley record-route v1').digest();
  }

  /** The signature for a dialog-forming request, or undefined if it has no From tag to bind. */
  sign(request: SipMessage): string | undefined {
    const tag = request.from.tag;
    if (!tag || !request.callId) return undefined;
    return this.mac(request.callId, tag);
  }

  /** Is `given` our signature for the dialog this in-dialog request belongs to? */
  verify(request: SipMessage, given: string | undefined): boolean {
    if (!given || given.length !== MAC_CHARS) return false;
    const toTag = request.to.tag;
    const fromTag = request.from.tag;
    // A dialog has both tags; a request without a To tag is not in a dialog (RFC 3261 12.2).
    if (!toTag || !fromTag || !request.callId) return false;
    const candidate = Buffer.from(given);
    return (
      timingSafeEqual(candidate, Buffer.from(this.mac(request.callId, fromTag))) ||
      timingSafeEqual(candidate, Buffer.from(this.mac(request.callId, toTag)))
    );
  }

  private mac(callId: string, tag: string): string {
    return createHmac('sha256', this.key).update(`${callId}\n${tag}`).digest('base64url').slice(0, MAC_CHARS);
  }
}
