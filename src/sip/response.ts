import { type SipHeader, SipMessage } from './message.js';
import type { ParseError } from './parser.js';

/** Reason phrases of RFC 3261 21 and the extensions Parley speaks. */
const REASON_PHRASES: Record<number, string> = {
  100: 'Trying',
  180: 'Ringing',
  181: 'Call Is Being Forwarded',
  182: 'Queued',
  183: 'Session Progress',
  199: 'Early Dialog Terminated',
  200: 'OK',
  202: 'Accepted',
  204: 'No Notification',
  300: 'Multiple Choices',
  301: 'Moved Permanently',
  302: 'Moved Temporarily',
  305: 'Use Proxy',
  380: 'Alternative Service',
  400: 'Bad Request',
  401: 'Unauthorized',
  402: 'Payment Required',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  407: 'Proxy Authentication Required',
  408: 'Request Timeout',
  410: 'Gone',
  412: 'Conditional Request Failed',
  413: 'Request Entity Too Large',
  414: 'Request-URI Too Long',
  415: 'Unsupported Media Type',
  416: 'Unsupported URI Scheme',
  417: 'Unknown Resource-Priority',
  420: 'Bad Extension',
  421: 'Extension Required',
  422: 'Session Interval Too Small',
  423: 'Interval Too Brief',
  428: 'Use Identity Header',
  429: 'Provide Referrer Identity',
  430: 'Flow Failed',
  433: 'Anonymity Disallowed',
  436: 'Bad Identity-Info',
  437: 'Unsupported Certificate',
  438: 'Invalid Identity Header',
  439: 'First Hop Lacks Outbound Support',
  440: 'Max-Breadth Exceeded',
  469: 'Bad Info Package',
  470: 'Consent Needed',
  480: 'Temporarily Unavailable',
  481: 'Call/Transaction Does Not Exist',
  482: 'Loop Detected',
  483: 'Too Many Hops',
  484: 'Address Incomplete',
  485: 'Ambiguous',
  486: 'Busy Here',
  487: 'Request Terminated',
  488: 'Not Acceptable Here',
  489: 'Bad Event',
  491: 'Request Pending',
  493: 'Undecipherable',
  494: 'Security Agreement Required',
  500: 'Server Internal Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Server Time-out',
  505: 'Version Not Supported',
  513: 'Message Too Large',
  580: 'Precondition Failure',
  600: 'Busy Everywhere',
  603: 'Decline',
  604: 'Does Not Exist Anywhere',
  606: 'Not Acceptable',
  607: 'Unwanted',
};

const CLASS_PHRASES = [
  '',
  'Provisional',
  'Success',
  'Redirection',
  'Client Error',
  'Server Error',
  'Global Failure',
];

export function reasonPhrase(status: number): string {
  return REASON_PHRASES[status] ?? CLASS_PHRASES[Math.floor(status / 100)] ?? 'Unknown';
}

export interface ResponseOptions {
  /** Added to To when it has no tag (RFC 3261 8.2.6.2); not added to 100 Trying. */
  toTag?: string;
  /** Extra headers, appended after the copied ones. */
  headers?: SipHeader[];
  body?: Buffer;
  contentType?: string;
}

/** The body of most responses, shared (bodies are never written into: SipMessage.body). */
const NO_BODY = Buffer.alloc(0);

/** Methods whose 101-299 responses establish a dialog (RFC 3261 12.1.1, RFC 6665 4.1.2, RFC 3515). */
const DIALOG_CREATING = new Set(['INVITE', 'SUBSCRIBE', 'REFER', 'NOTIFY']);

/**
 * Builds a response to `req` (RFC 3261 8.2.6): Via values copied unchanged and in order,
 * From, Call-ID and CSeq copied, To copied with a tag added if given and absent; Timestamp
 * echoed in 100 (8.2.6.1); Record-Route copied in dialog-creating responses (12.1.1).
 * The copied headers are the request's own header objects, not copies (no allocation per
 * header on every response): change a response's header with SipMessage.set and its kin,
 * which replace the object, never by writing to the shared object's value.
 */
export function createResponse(
  req: SipMessage,
  status: number,
  reason?: string,
  opts: ResponseOptions = {},
): SipMessage {
  const headers: SipHeader[] = [];
  let from: SipHeader | undefined;
  let to: SipHeader | undefined;
  let callId: SipHeader | undefined;
  let cseq: SipHeader | undefined;
  let timestamp: SipHeader | undefined;
  const recordRoutes: SipHeader[] = [];
  for (const h of req.headers) {
    switch (h.name) {
      case 'via':
        headers.push(h);
        break;
      case 'from':
        from ??= h;
        break;
      case 'to':
        to ??= h;
        break;
      case 'call-id':
        callId ??= h;
        break;
      case 'cseq':
        cseq ??= h;
        break;
      case 'timestamp':
        timestamp ??= h;
        break;
      case 'record-route':
        recordRoutes.push(h);
        break;
    }
  }
  if (from !== undefined) headers.push(from);
  if (to !== undefined) headers.push(addToTag(to, status, opts.toTag));
  if (callId !== undefined) headers.push(callId);
  if (cseq !== undefined) headers.push(cseq);
  if (status === 100 && timestamp !== undefined) headers.push(timestamp);
  if (status > 100 && status < 300 && DIALOG_CREATING.has(req.method)) {
    for (const rr of recordRoutes) headers.push(rr);
  }
  if (opts.headers !== undefined) {
    for (const h of opts.headers) headers.push({ name: h.name, value: h.value });
  }
  const body = opts.body ?? NO_BODY;
  if (opts.contentType !== undefined) headers.push({ name: 'content-type', value: opts.contentType });
  headers.push({ name: 'content-length', value: String(body.length) });
  return SipMessage.response(status, reason ?? reasonPhrase(status), headers, body);
}

function addToTag(to: SipHeader, status: number, toTag: string | undefined): SipHeader {
  if (toTag === undefined || status === 100 || hasTagParam(to.value)) return to;
  return { name: 'to', value: `${to.value};tag=${toTag}` };
}

/** Whether a To/From value carries a tag parameter (outside the <...> and quotes). */
function hasTagParam(value: string): boolean {
  const close = value.lastIndexOf('>');
  const params = close >= 0 ? value.slice(close + 1) : value;
  return /;\s*tag\s*=/i.test(params);
}

/**
 * Builds the error response for a failed parse when it found Via, From, To, Call-ID and
 * CSeq of a request; undefined otherwise, and for responses and ACKs, which are never
 * answered (RFC 3261 17.1.1.3 / 8.2.6).
 */
export function createErrorResponseFromPartial(
  error: Pick<ParseError, 'status' | 'reason' | 'partial'>,
  opts: { toTag?: string } = {},
): SipMessage | undefined {
  const partial = error.partial;
  if (partial === undefined || !partial.isRequest || partial.method === undefined) return undefined;
  if (partial.method === 'ACK') return undefined;
  const names = new Set(partial.headers.map((h) => h.name));
  for (const required of ['via', 'from', 'to', 'call-id', 'cseq']) {
    if (!names.has(required)) return undefined;
  }
  const req = SipMessage.request(partial.method, partial.uri ?? '', partial.headers);
  return createResponse(req, error.status, error.reason, { toTag: opts.toTag });
}
