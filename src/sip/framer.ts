import { isTokenChar } from './lexer.js';
import type { SipMessage } from './message.js';
import {
  DEFAULT_MAX_HEADER_SIZE,
  DEFAULT_MAX_MESSAGE_SIZE,
  fail,
  finishMessage,
  type PartialMessage,
  type SplitHead,
  splitHead,
} from './parser.js';

export type FramerEvent =
  | { type: 'message'; message: SipMessage }
  | {
      type: 'error';
      status: number;
      reason: string;
      partial?: PartialMessage;
      /**
       * The stream cannot be resynchronised (no usable Content-Length, oversized message):
       * answer if the partial allows it, then close the connection. The framer ignores any
       * further input.
       */
      fatal: boolean;
    }
  /** CRLFCRLF keep-alive (RFC 5626 4.4.1): answer with a single CRLF. */
  | { type: 'ping' }
  /** A lone CRLF: the answer to our own ping. */
  | { type: 'pong' };

export interface StreamFramerOptions {
  /** Largest message, header section plus body (default 65535). */
  maxMessageSize?: number;
  /** Largest header section (default 32768, capped by maxMessageSize). */
  maxHeaderSize?: number;
}

const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');
const EMPTY = Buffer.alloc(0);

/**
 * Frames SIP messages on a byte stream (TCP, TLS): RFC 3261 18.3, the header section ends
 * at the first empty line and Content-Length, mandatory on streams, gives the body length.
 *
 * Data is kept as received; a message lying within one chunk is parsed in place and its
 * body is a view into that chunk. Partial data is joined only when the next chunk arrives.
 */
export class StreamFramer {
  private readonly maxMessageSize: number;
  private readonly maxHeaderSize: number;
  private buf: Buffer = EMPTY;
  private pos = 0;
  /** Where the search for CRLFCRLF resumes, so slow senders do not cost a rescan per chunk. */
  private scanFrom = 0;
  /** A parsed header section waiting for its body. */
  private pending: { head: SplitHead; bodyStart: number; bodyLength: number } | undefined;
  /** The last chunk ended on a CRLF reported as pong: a CRLF starting the next chunk completes a ping. */
  private crlfAtEnd = false;
  private closed = false;

  constructor(opts: StreamFramerOptions = {}) {
    this.maxMessageSize = opts.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    this.maxHeaderSize = Math.min(opts.maxHeaderSize ?? DEFAULT_MAX_HEADER_SIZE, this.maxMessageSize);
  }

  /** Bytes received but not yet framed. */
  get buffered(): number {
    return this.buf.length - this.pos;
  }

  /** Every event of the chunk, in an array (a handful of messages at most: tests, probes). */
  push(chunk: Buffer): FramerEvent[] {
    const events: FramerEvent[] = [];
    this.pushEach(chunk, (event) => events.push(event));
    return events;
  }

  /**
   * Frames the chunk, handing each event to `emit` as soon as it is framed: a message is
   * parsed, handled and let go before the next one is parsed. A 64 KiB read holds a hundred
   * requests; parsed all at once, every one of them (and what handling it allocates) was
   * still reachable when the young generation filled up in the middle of the read, so V8
   * copied them all and promoted them to the old generation (half of all the server
   * allocated survived its scavenges under REGISTER load).
   */
  pushEach(chunk: Buffer, emit: (event: FramerEvent) => void): void {
    if (this.closed || chunk.length === 0) return;
    if (this.pos >= this.buf.length) {
      this.buf = chunk;
    } else {
      // Rebase every stored index on the unconsumed data.
      const shift = this.pos;
      this.buf = Buffer.concat([this.buf.subarray(shift), chunk]);
      this.scanFrom = Math.max(0, this.scanFrom - shift);
      if (this.pending !== undefined) this.pending.bodyStart -= shift;
    }
    this.pos = 0;
    const crlfAtEnd = this.crlfAtEnd;
    this.crlfAtEnd = false;
    let first = true;
    while (!this.closed) {
      if (this.pending !== undefined) {
        const { head, bodyStart, bodyLength } = this.pending;
        if (this.buf.length - bodyStart < bodyLength) break;
        this.pending = undefined;
        this.pos = bodyStart + bodyLength;
        this.scanFrom = this.pos;
        emit(toEvent(finishMessage(head, this.buf.subarray(bodyStart, this.pos))));
        first = false;
        continue;
      }
      const remaining = this.buf.length - this.pos;
      if (remaining === 0) break;
      const buf = this.buf;
      const pos = this.pos;
      if (buf[pos] === 13) {
        // Keep-alives between messages (RFC 5626 4.4.1); RFC 3261 7.5 ignores CRLF before a start line.
        if (remaining < 2) {
          if (first) this.crlfAtEnd = crlfAtEnd;
          break;
        }
        if (buf[pos + 1] !== 10) {
          this.fatal(emit, 400, 'Bad Request - Stray CR');
          break;
        }
        if (first && crlfAtEnd) {
          this.advance(2);
          emit({ type: 'ping' });
          first = false;
          continue;
        }
        if (remaining >= 4 && buf[pos + 2] === 13 && buf[pos + 3] === 10) {
          this.advance(4);
          emit({ type: 'ping' });
        } else if (remaining === 3 && buf[pos + 2] === 13) {
          break;
        } else {
          this.advance(2);
          emit({ type: 'pong' });
          if (remaining === 2) this.crlfAtEnd = true;
        }
        first = false;
        continue;
      }
      first = false;
      // A start line begins with a method token or "SIP/": anything else (a TLS ClientHello
      // on the TCP port, binary junk) will never frame, so say so now rather than at the limit.
      if (!isTokenChar(buf[pos])) {
        this.fatal(emit, 400, 'Bad Request - Malformed Start Line');
        break;
      }
      const headEnd = buf.indexOf(CRLFCRLF, Math.max(pos, this.scanFrom));
      if (headEnd < 0) {
        if (remaining > this.maxHeaderSize) {
          this.fatal(emit, 413, 'Request Entity Too Large - Header Section Too Large');
        } else {
          this.scanFrom = Math.max(pos, buf.length - 3);
        }
        break;
      }
      if (headEnd - pos > this.maxHeaderSize) {
        this.fatal(emit, 413, 'Request Entity Too Large - Header Section Too Large');
        break;
      }
      const head = splitHead(buf, pos, headEnd);
      // RFC 3261 18.3: on a stream, Content-Length is the only way to find the next message.
      if (head.contentLengthError !== undefined) {
        this.fatal(emit, 400, head.contentLengthError, head);
        break;
      }
      if (head.contentLength === undefined) {
        this.fatal(emit, 400, 'Bad Request - Missing Content-Length', head);
        break;
      }
      const bodyStart = headEnd + 4;
      if (bodyStart - pos + head.contentLength > this.maxMessageSize) {
        this.fatal(emit, 413, 'Request Entity Too Large - Message Too Large', head);
        break;
      }
      this.pending = { head, bodyStart, bodyLength: head.contentLength };
    }
    if (this.pos >= this.buf.length && this.pending === undefined) {
      this.buf = EMPTY;
      this.pos = 0;
      this.scanFrom = 0;
    }
  }

  private advance(n: number): void {
    this.pos += n;
    this.scanFrom = this.pos;
  }

  private fatal(emit: (event: FramerEvent) => void, status: number, reason: string, head?: SplitHead): void {
    const event: FramerEvent = { type: 'error', status, reason, fatal: true };
    if (head !== undefined) {
      const error = fail(head, status, reason);
      if (error.partial !== undefined) event.partial = error.partial;
    }
    this.closed = true;
    this.buf = EMPTY;
    this.pos = 0;
    this.pending = undefined;
    emit(event);
  }
}

function toEvent(result: ReturnType<typeof finishMessage>): FramerEvent {
  if (result.ok) return { type: 'message', message: result.message };
  const event: FramerEvent = { type: 'error', status: result.status, reason: result.reason, fatal: false };
  if (result.partial !== undefined) event.partial = result.partial;
  return event;
}
