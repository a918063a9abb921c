import type { SipMessage } from './message.js';

/**
 * The ACK for a non-2xx final response (RFC 3261 17.1.1.3) or the CANCEL of a pending INVITE
 * (RFC 3261 9.1): both copy the INVITE's Request-URI, topmost Via, Route set, From, Call-ID
 * and CSeq number; the ACK takes the response's To (with its tag), the CANCEL the INVITE's.
 */
export function hopRequestFor(method: 'ACK' | 'CANCEL', invite: SipMessage, response?: SipMessage): Buffer {
  const lines = [
    `${method} ${invite.uri} SIP/2.0`,
    `Via: ${invite.getAll('via')[0]}`,
    ...invite.getAll('route').map((r) => `Route: ${r}`),
    `From: ${invite.get('from')}`,
    `To: ${(method === 'ACK' && response ? response : invite).get('to')}`,
    `Call-ID: ${invite.callId}`,
    `CSeq: ${invite.cseq.seq} ${method}`,
    'Max-Forwards: 70',
    'Content-Length: 0',
    '',
    '',
  ];
  return Buffer.from(lines.join('\r\n'));
}
