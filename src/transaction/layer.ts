import type { Logger } from 'pino';
import { hopRequestFor } from '../sip/hop-request.js';
import { hostKey } from '../sip/host.js';
import { createTag } from '../sip/ids.js';
import type { SipMessage } from '../sip/message.js';
import { createResponse } from '../sip/response.js';
import { formatVia } from '../sip/via.js';
import type { Flow } from '../transport/flow.js';
import { CompletedTransactions } from './completed.js';
import { TransactionTable } from './table.js';
import { cancelTimer, type TimerHandle, type TimerWheel } from './timers.js';

// RFC 3261 17.1.1.1 and table 4. On reliable transports (TCP, TLS, WebSocket) the
// retransmission timers (A, E, G) never run and Timers D, I, J and K are zero; on UDP
// they run as the table says.
export const T1 = 500;
export const T2 = 4_000;
export const T4 = 5_000;
export const TIMER_B = 64 * T1;
export const TIMER_F = 64 * T1;
export const TIMER_H = 64 * T1;
/** UDP only: Completed non-INVITE server transactions answer retransmitted requests this long. */
export const TIMER_J = 64 * T1;
/** UDP only: how long a Completed client transaction absorbs retransmitted responses. */
export const TIMER_K = T4;
export const TIMER_I = T4;
/** UDP only: an INVITE client transaction answers retransmitted failures with its ACK (at least 32 s). */
export const TIMER_D = 32_000;
/**
 * RFC 3261 18.1.1: a request larger than this (the path MTU unknown: 1500 less 200) goes
 * over a congestion-controlled transport (TCP) rather than UDP.
 */
export const UDP_REQUEST_LIMIT = 1_300;
/** RFC 6026 8.7: how long an INVITE server transaction stays Accepted after a 2xx. */
export const TIMER_L = 64 * T1;
/** RFC 6026 8.4: how long an INVITE client transaction stays Accepted for 2xx retransmissions. */
export const TIMER_M = 64 * T1;
/** RFC 3261 16.2 (and 17.2.1): a stateful element answers an INVITE with 100 within 200 ms. */
export const TRYING_DELAY = 200;
/**
 * How long the TU may leave a server transaction without a final response before the layer
 * answers 500 itself: past Timer F for a forwarded non-INVITE (whose 408 comes first), and
 * past a proxy's Timer C (RFC 3261 16.8, 3 minutes) plus Timer B for an INVITE.
 */
export const TU_ANSWER_DEADLINE = TIMER_F + 8_000;
export const TU_ANSWER_DEADLINE_INVITE = 180_000 + TIMER_B + 8_000;

export type ServerState = 'Trying' | 'Proceeding' | 'Completed' | 'Confirmed' | 'Accepted' | 'Terminated';
export type ClientState = 'Calling' | 'Trying' | 'Proceeding' | 'Completed' | 'Accepted' | 'Terminated';

/** The transaction user: the proxy core, registrar and presence server sit behind this. */
export interface TransactionUser {
  onRequest(request: SipMessage, transaction: ServerTransaction): void;
  /** ACK for a 2xx: end to end, never part of the INVITE transaction (RFC 3261 17.2.1). */
  onAck(ack: SipMessage, flow: Flow): void;
  /** CANCEL matched a pending INVITE; the layer has already answered the CANCEL with 200. */
  onCancel(invite: ServerTransaction, cancel: SipMessage): void;
  /** A response that matches no client transaction (RFC 3261 16.7: forward statelessly). */
  onStrayResponse(response: SipMessage, flow: Flow): void;
}

export interface ClientTransactionHandler {
  onResponse(response: SipMessage, transaction: ClientTransaction): void;
  /** Timer B/F fired or the flow failed: the TU treats it as a 408 (RFC 3261 16.7 step 2 / 8.1.3.1). */
  onTimeout(transaction: ClientTransaction, reason: 'timeout' | 'transport'): void;
}

export class ServerTransaction {
  state: ServerState;
  lastResponse?: SipMessage;
  /** performance.now() at arrival, for the transaction latency metric. */
  readonly startedAt = performance.now();
  /** Free slot for the TU (the proxy keeps its response context here). */
  context: unknown;
  timer?: TimerHandle;
  tryingTimer?: TimerHandle;
  /**
   * When it came (the wheel's clock): a transaction its TU leaves without a final response
   * past TU_ANSWER_DEADLINE from here is ended by the layer's sweep (a bug, or a lost promise).
   */
  readonly arrivedAt: number;
  /** Timer G's current interval (UDP INVITE: retransmitting a failure until the ACK). */
  private interval = T1;
  /**
   * When the TU's challenge to this request (a 401 or 407 to a request without credentials)
   * was issued: set by the TU, which derives the challenge's nonce and To tag from it and the
   * key, so over UDP the layer keeps only this for Timer J (CompletedTransactions); set by the
   * layer before the TU sees a retransmission of a request so challenged, so the TU sends the
   * same challenge again.
   */
  challengeIssuedAt?: number;

  constructor(
    readonly layer: TransactionLayer,
    readonly key: string,
    readonly request: SipMessage,
    /** The flow the request came over (what the TU authenticates and binds to). */
    readonly flow: Flow,
    /** Where responses go: the same flow, except on UDP (RFC 3261 18.2.2, RFC 3581 4). */
    readonly responseFlow: Flow = flow,
  ) {
    this.state = request.method === 'INVITE' ? 'Proceeding' : 'Trying';
    this.arrivedAt = layer.timers.now();
  }

  get reliable(): boolean {
    return this.flow.transport !== 'udp';
  }

  get isInvite(): boolean {
    return this.request.method === 'INVITE';
  }

  get isFinal(): boolean {
    return this.state !== 'Trying' && this.state !== 'Proceeding';
  }

  /** Sends a response from the TU, moving the state machine (RFC 3261 17.2.1, 17.2.2; RFC 6026 7.1). */
  respond(response: SipMessage): void {
    if (this.state === 'Terminated' || this.state === 'Completed' || this.state === 'Confirmed') return;
    const status = response.status;
    if (this.state === 'Accepted') {
      // RFC 6026 7.1: further 2xx from the TU are passed to the transport.
      if (status >= 200 && status < 300) this.layer.sendOn(this.responseFlow, response);
      return;
    }
    cancelTimer(this.tryingTimer);
    this.lastResponse = response;
    // Serialized once: a UDP non-INVITE final response is kept as these bytes (Timer J).
    const wire = response.toBuffer();
    this.layer.sendOn(this.responseFlow, response, wire);
    if (status < 200) {
      this.state = 'Proceeding';
      return;
    }
    this.layer.finalSent(this);
    if (!this.isInvite) {
      if (this.reliable) {
        // Timer J is zero on a reliable transport: Completed -> Terminated at once.
        this.terminate();
        return;
      }
      // RFC 3261 17.2.2: Completed answers retransmitted requests until Timer J. For those
      // 32 s the layer keeps only the key and the response's bytes (CompletedTransactions), not
      // this transaction with its messages and the proxy's context: at thousands of
      // requests a second they would be most of the heap.
      this.state = 'Completed';
      if ((status === 401 || status === 407) && this.challengeIssuedAt !== undefined)
        this.layer.completeChallengeOverUdp(this, this.challengeIssuedAt);
      else this.layer.completeOverUdp(this, wire);
    } else if (status < 300) {
      this.state = 'Accepted';
      this.timer = this.layer.timers.schedule(TIMER_L, () => this.terminate());
    } else {
      this.state = 'Completed';
      // Timer H: give up waiting for the ACK.
      this.timer = this.layer.timers.schedule(TIMER_H, () => this.terminate());
      // RFC 3261 17.2.1: Timer G retransmits the failure over UDP until the ACK comes.
      if (!this.reliable) this.armTimerG();
    }
  }

  private armTimerG(): void {
    this.tryingTimer = this.layer.timers.schedule(this.interval, () => {
      if (this.state !== 'Completed' || !this.lastResponse) return;
      this.layer.sendOn(this.responseFlow, this.lastResponse);
      this.interval = Math.min(this.interval * 2, T2);
      this.armTimerG();
    });
  }

  /** Convenience for the TU: build and send a response to this transaction's request. */
  reply(status: number, reason?: string, opts?: Parameters<typeof createResponse>[3]): SipMessage {
    // RFC 3261 25.1 Reason-Phrase allows neither line breaks nor quotes or angle brackets:
    // text from elsewhere (an XML parser's message) is cut down to what strict parsers
    // (JsSIP's among them) accept.
    const phrase = reason === undefined ? undefined : toReasonPhrase(reason);
    const response = createResponse(this.request, status, phrase, opts);
    this.respond(response);
    return response;
  }

  onRetransmission(request: SipMessage): void {
    if (request.method === 'ACK') {
      if (this.state === 'Completed') {
        this.state = 'Confirmed';
        cancelTimer(this.tryingTimer);
        // Timer I is zero on a reliable transport; on UDP, Confirmed absorbs ACK retransmissions.
        if (this.reliable) this.terminate();
        else {
          cancelTimer(this.timer);
          this.timer = this.layer.timers.schedule(TIMER_I, () => this.terminate());
        }
      }
      return;
    }
    if ((this.state === 'Proceeding' || this.state === 'Completed') && this.lastResponse) {
      this.layer.sendOn(this.responseFlow, this.lastResponse);
    }
  }

  terminate(): void {
    if (this.state === 'Terminated') return;
    this.state = 'Terminated';
    cancelTimer(this.timer);
    cancelTimer(this.tryingTimer);
    this.layer.forgetServer(this);
  }
}

export class ClientTransaction {
  state: ClientState;
  timer?: TimerHandle;
  context: unknown;
  /** Timer A or E (UDP only): the next retransmission. */
  retransmitTimer?: TimerHandle;
  /** The request as sent, for retransmissions. */
  wire?: Buffer;
  private interval = T1;
  /** The ACK for a failure, sent again when the failure is (UDP, Completed). */
  private ack?: Buffer;
  /** When it started (the wheel's clock): Timer B or F counts from here. */
  readonly startedAt: number;
  /**
   * Timer B (INVITE, until something answers) or F (non-INVITE, until the final response)
   * still runs: the layer's sweep times the transaction out at 64*T1 from `startedAt`.
   */
  timeoutArmed = true;

  constructor(
    readonly layer: TransactionLayer,
    readonly key: string,
    readonly request: SipMessage,
    /** The flow it went out on: a TCP one instead of UDP for a large request (RFC 3261 18.1.1). */
    public flow: Flow,
    readonly handler: ClientTransactionHandler,
  ) {
    this.state = request.method === 'INVITE' ? 'Calling' : 'Trying';
    this.startedAt = layer.timers.now();
  }

  get reliable(): boolean {
    return this.flow.transport !== 'udp';
  }

  /** RFC 3261 17.1.1.2 Timer A, 17.1.2.2 Timer E: retransmit over UDP, T1 doubling (capped at T2 for non-INVITE). */
  armRetransmission(): void {
    if (this.reliable) return;
    this.retransmitTimer = this.layer.timers.schedule(this.interval, () => {
      const resend =
        this.state === 'Calling' ||
        (!this.isInvite && (this.state === 'Trying' || this.state === 'Proceeding'));
      if (!resend || !this.wire) return;
      this.layer.sendRaw(this.flow, this.wire);
      // In Proceeding a non-INVITE retransmits every T2 (17.1.2.2).
      this.interval =
        this.state === 'Proceeding'
          ? T2
          : this.isInvite
            ? this.interval * 2
            : Math.min(this.interval * 2, T2);
      this.armRetransmission();
    });
  }

  get isInvite(): boolean {
    return this.request.method === 'INVITE';
  }

  onResponse(response: SipMessage): void {
    const status = response.status;
    switch (this.state) {
      case 'Calling':
      case 'Trying':
      case 'Proceeding':
        if (status < 200) {
          // RFC 3261 17.1.1.2: Timer B guards only the Calling state; once something answers,
          // the proxy's Timer C (RFC 3261 16.8) decides how long ringing may last.
          if (this.isInvite && this.state === 'Calling') {
            this.timeoutArmed = false;
            cancelTimer(this.retransmitTimer);
          }
          this.state = 'Proceeding';
          this.handler.onResponse(response, this);
          return;
        }
        this.timeoutArmed = false;
        cancelTimer(this.retransmitTimer);
        if (this.isInvite && status < 300) {
          // RFC 6026 8.4: Accepted, so 2xx retransmissions from other forks still reach the TU.
          this.state = 'Accepted';
          this.timer = this.layer.timers.schedule(TIMER_M, () => this.terminate());
        } else {
          if (this.isInvite) this.sendAckForFailure(response);
          if (this.reliable) {
            // Timers D and K are zero on a reliable transport.
            this.terminate();
          } else {
            // Completed absorbs retransmitted final responses (an INVITE's get the ACK again).
            this.state = 'Completed';
            this.timer = this.layer.timers.schedule(this.isInvite ? TIMER_D : TIMER_K, () =>
              this.terminate(),
            );
          }
        }
        this.handler.onResponse(response, this);
        return;
      case 'Completed':
        if (this.ack && status >= 300) this.layer.sendRaw(this.flow, this.ack);
        return;
      case 'Accepted':
        if (status >= 200 && status < 300) this.handler.onResponse(response, this);
        return;
      default:
        return;
    }
  }

  /** RFC 3261 17.1.1.3: the ACK for a non-2xx final response belongs to the transaction. */
  private sendAckForFailure(response: SipMessage): void {
    const ack = hopRequestFor('ACK', this.request, response);
    if (!this.reliable) this.ack = ack;
    this.layer.sendRaw(this.flow, ack);
  }

  terminate(): void {
    if (this.state === 'Terminated') return;
    this.state = 'Terminated';
    this.timeoutArmed = false;
    cancelTimer(this.timer);
    cancelTimer(this.retransmitTimer);
    this.layer.forgetClient(this);
  }
}

export interface TransactionLayerOptions {
  timers: TimerWheel;
  log: Logger;
  /** Called for every message the layer sends; lets the server count and trace. */
  onSend?: (message: SipMessage, flow: Flow) => void;
  /** Called once per server transaction, when its first final response leaves. */
  onFinal?: (transaction: ServerTransaction) => void;
  /** A request its TU threw on or never answered (a bug to look at: counted as an internal failure). */
  onAbandoned?: (transaction: ServerTransaction) => void;
  /** The UDP peer at an address and port (responses to a sent-by port, RFC 3261 18.2.2). */
  udpFlowTo?: (host: string, port: number) => Flow | undefined;
  /**
   * RFC 3261 18.1.1: a connection to the same peer for a request too large for UDP, with the
   * request's top Via rewritten for it; rejected when none can be opened (UDP is used then).
   */
  streamFor?: (request: SipMessage, udpFlow: Flow) => Promise<Flow>;
  /**
   * Server transactions open at once (unset: no bound). Past it a new request is answered
   * 503 with Retry-After statelessly: an overloaded server sheds load instead of holding
   * every request it cannot serve until Timer F.
   */
  maxServerTransactions?: number;
  /** A request refused because `maxServerTransactions` were open. */
  onOverload?: (request: SipMessage) => void;
}

/** How often client transactions are checked against Timer B and F: the wheel's resolution. */
const CLIENT_SWEEP_MS = 50;

/** How often server transactions are checked against their TU deadline. */
const DEADLINE_SWEEP_MS = 1_000;

/** RFC 3261 21.5.4: when a client may try again after an overload 503. */
const OVERLOAD_RETRY_AFTER = '5';

/**
 * RFC 3261 17: matches requests to server transactions and responses to client
 * transactions, and hands everything new to the transaction user.
 */
export class TransactionLayer {
  private readonly servers = new TransactionTable<ServerTransaction>();
  /** UDP non-INVITE server transactions in Completed, until Timer J. */
  private readonly completed = new CompletedTransactions();
  /** The next sweep of `completed` (one at a time, while it is not empty). */
  private completedSweep?: TimerHandle;
  /** The next TU-deadline sweep of `servers` (one at a time, while it is not empty). */
  private deadlineSweep?: TimerHandle;
  private readonly clients = new TransactionTable<ClientTransaction>();
  /** The next Timer B/F sweep of `clients` (one at a time, while it is not empty). */
  private clientSweep?: TimerHandle;
  readonly timers: TimerWheel;
  private tu!: TransactionUser;
  /** Requests the TU threw on or left unanswered, since start. */
  tuFailures = 0;
  private lastFailureLog = 0;

  constructor(private readonly opts: TransactionLayerOptions) {
    this.timers = opts.timers;
  }

  setUser(tu: TransactionUser): void {
    this.tu = tu;
  }

  get serverCount(): number {
    return this.servers.size + this.completed.size;
  }

  get clientCount(): number {
    return this.clients.size;
  }

  receive(message: SipMessage, flow: Flow): void {
    if (message.isRequest) this.receiveRequest(message, flow);
    else this.receiveResponse(message, flow);
  }

  private receiveRequest(request: SipMessage, flow: Flow): void {
    stampReceived(request, flow);
    const method = request.method;
    if (method === 'ACK') {
      const st = this.servers.get(serverKey(request, 'INVITE'));
      if (st && (st.state === 'Completed' || st.state === 'Confirmed')) {
        st.onRetransmission(request);
        return;
      }
      this.tu.onAck(request, flow);
      return;
    }
    if (method === 'CANCEL') {
      const key = serverKey(request, 'CANCEL');
      const existingCancel = this.servers.get(key);
      if (existingCancel) {
        existingCancel.onRetransmission(request);
        return;
      }
      const cancelSt = new ServerTransaction(this, key, request, flow, this.responseFlowFor(request, flow));
      this.servers.set(key, cancelSt);
      const invite = this.servers.get(serverKey(request, 'INVITE'));
      if (!invite || invite.isFinal) {
        // RFC 3261 9.2: no matching transaction.
        cancelSt.reply(481, 'Call/Transaction Does Not Exist');
        return;
      }
      cancelSt.reply(200);
      this.tu.onCancel(invite, request);
      return;
    }
    const key = serverKey(request, method);
    const existing = this.servers.get(key);
    if (existing) {
      existing.onRetransmission(request);
      return;
    }
    // A retransmission of a request answered over UDP gets the same response again; one
    // challenged, the same challenge, which the TU builds again from its issue time. Only UDP
    // transactions are kept, so a request over a connection costs no hashing of its key here.
    const done = flow.transport === 'udp' ? this.completed.find(key) : undefined;
    if (done !== undefined && 'wire' in done) {
      this.sendRaw(done.flow, done.wire);
      return;
    }
    const challengedAt = done?.issuedAt;
    const max = this.opts.maxServerTransactions;
    if (challengedAt === undefined && max !== undefined && this.servers.size >= max) {
      this.refuseOverloaded(request, flow);
      return;
    }
    const st = new ServerTransaction(this, key, request, flow, this.responseFlowFor(request, flow));
    st.challengeIssuedAt = challengedAt;
    this.servers.set(key, st);
    if (method === 'INVITE') {
      st.tryingTimer = this.timers.schedule(TRYING_DELAY, () => {
        if (st.state === 'Proceeding' && !st.lastResponse) st.reply(100);
      });
    }
    if (!this.deadlineSweep) this.sweepDeadlinesLater();
    try {
      this.tu.onRequest(request, st);
    } catch (err) {
      this.abandon(st, err);
    }
  }

  /**
   * RFC 3261 21.5.4: 503 with Retry-After, sent without a transaction (none is created: that
   * is the point). A retransmission gets another 503, which is what it would get anyway.
   */
  private refuseOverloaded(request: SipMessage, flow: Flow): void {
    this.opts.onOverload?.(request);
    const response = createResponse(request, 503, 'Service Unavailable', {
      toTag: createTag(),
      headers: [{ name: 'retry-after', value: OVERLOAD_RETRY_AFTER }],
    });
    this.sendOn(this.responseFlowFor(request, flow), response);
  }

  /**
   * A request its TU threw on, or never answered: answer 500 if nothing final went out and free
   * the transaction, so no input can leave state behind (a thrown header parse must not leak).
   */
  private abandon(st: ServerTransaction, err: unknown): void {
    this.tuFailures++;
    this.opts.onAbandoned?.(st);
    const now = Date.now();
    // One line a second at most: a flood of bad requests must not become a flood of logs.
    if (now - this.lastFailureLog >= 1000) {
      this.opts.log.error(
        { err, method: st.request.method, callId: st.request.callId, failures: this.tuFailures },
        err === undefined
          ? 'request left unanswered by its handler; answered 500'
          : 'request handler failed; answered 500',
      );
      this.lastFailureLog = now;
    }
    if (!st.isFinal) {
      try {
        st.reply(500, 'Server Internal Error');
      } catch {
        // The request is too broken even to answer: dropping it is all that is left.
      }
    }
    if (st.state !== 'Accepted' && st.state !== 'Completed') st.terminate();
  }

  private receiveResponse(response: SipMessage, flow: Flow): void {
    const via = response.topVia;
    const key = `${via?.branch ?? ''}|${response.cseq.method}`;
    const ct = this.clients.get(key);
    if (ct) ct.onResponse(response);
    else this.tu.onStrayResponse(response, flow);
  }

  /** Starts a client transaction; the request must already carry our topmost Via with a unique branch. */
  request(request: SipMessage, flow: Flow, handler: ClientTransactionHandler): ClientTransaction {
    const key = `${request.topVia.branch ?? ''}|${request.method}`;
    const ct = new ClientTransaction(this, key, request, flow, handler);
    this.clients.set(key, ct);
    if (!this.clientSweep) this.sweepClientsLater();
    if (flow.transport === 'udp') {
      const wire = request.toBuffer();
      if (wire.length > UDP_REQUEST_LIMIT && this.opts.streamFor) {
        this.opts.streamFor(request, flow).then(
          (stream) => {
            if (ct.state === 'Terminated') return;
            ct.flow = stream;
            this.sendFirst(ct, request.toBuffer());
          },
          // No TCP to that peer: UDP it is, fragmented or not.
          () => this.sendFirst(ct, wire),
        );
        return ct;
      }
      this.sendFirst(ct, wire);
      return ct;
    }
    this.sendFirst(ct, request.toBuffer());
    return ct;
  }

  private sendFirst(ct: ClientTransaction, wire: Buffer): void {
    if (ct.state === 'Terminated') return;
    this.opts.onSend?.(ct.request, ct.flow);
    if (!ct.flow.send(wire)) {
      ct.terminate();
      // Report asynchronously so callers see one code path for every failure.
      queueMicrotask(() => ct.handler.onTimeout(ct, 'transport'));
      return;
    }
    if (!ct.reliable) {
      ct.wire = wire;
      ct.armRetransmission();
    }
  }

  /**
   * RFC 3261 18.2.2 and RFC 3581 4: over UDP a response goes to the source address, and to
   * the source port only when the client asked with `rport`, else to its sent-by port.
   */
  private responseFlowFor(request: SipMessage, flow: Flow): Flow {
    if (flow.transport !== 'udp' || !this.opts.udpFlowTo) return flow;
    const via = request.topVia;
    if (via.rport !== undefined) return flow;
    const port = via.port ?? 5060;
    if (port === flow.remotePort) return flow;
    return this.opts.udpFlowTo(flow.remoteAddress, port) ?? flow;
  }

  sendOn(flow: Flow, message: SipMessage, wire: Buffer = message.toBuffer()): boolean {
    this.opts.onSend?.(message, flow);
    return flow.send(wire);
  }

  finalSent(st: ServerTransaction): void {
    this.opts.onFinal?.(st);
  }

  sendRaw(flow: Flow, data: Buffer): boolean {
    return flow.send(data);
  }

  forgetServer(st: ServerTransaction): void {
    if (this.servers.get(st.key) === st) this.servers.delete(st.key);
  }

  /**
   * A UDP non-INVITE transaction's final response left: keep its bytes until Timer J. Timer J
   * is the same for every one of them, so they expire in the order they came; one sweep
   * removes the expired ones from the front, instead of a timer (and its closure) per
   * transaction.
   */
  completeOverUdp(st: ServerTransaction, wire: Buffer): void {
    this.forgetServer(st);
    this.completed.addResponse(st.key, st.responseFlow, wire, this.timers.now() + TIMER_J);
    if (!this.completedSweep) this.sweepCompletedLater(TIMER_J);
  }

  /**
   * A UDP non-INVITE transaction answered with a challenge the TU derived from its key and
   * `issuedAt`: only that time is kept until Timer J (CompletedTransactions), not the response.
   */
  completeChallengeOverUdp(st: ServerTransaction, issuedAt: number): void {
    this.forgetServer(st);
    this.completed.addChallenge(st.key, issuedAt, this.timers.now() + TIMER_J);
    if (!this.completedSweep) this.sweepCompletedLater(TIMER_J);
  }

  private sweepCompletedLater(ms: number): void {
    this.completedSweep = this.timers.schedule(ms, () => {
      this.completedSweep = undefined;
      const now = this.timers.now();
      const next = this.completed.expire(now);
      if (next !== undefined) this.sweepCompletedLater(Math.max(next - now, 50));
    });
  }

  /**
   * The TU deadline, for every server transaction by one sweep a second instead of a timer
   * each: at 10,000 REGISTER calls a second a timer each was 20,000 handles a second that
   * lived 40 s in the wheel (cancelled, they stay in their bucket until it comes round),
   * promoted by the garbage collector and dying old. The table keeps arrival order, so the
   * sweep stops at the first transaction younger than the shorter deadline; only INVITEs
   * still ringing (a longer deadline) or Accepted past it are passed over on the way.
   */
  private sweepDeadlinesLater(): void {
    this.deadlineSweep = this.timers.schedule(DEADLINE_SWEEP_MS, () => {
      this.deadlineSweep = undefined;
      const now = this.timers.now();
      for (const st of this.servers.oldestFirst()) {
        const age = now - st.arrivedAt;
        if (age < TU_ANSWER_DEADLINE) break;
        if (!st.isFinal && age >= (st.isInvite ? TU_ANSWER_DEADLINE_INVITE : TU_ANSWER_DEADLINE))
          this.abandon(st, undefined);
      }
      if (this.servers.size > 0) this.sweepDeadlinesLater();
    });
  }

  /**
   * Timers B and F, for every client transaction by one sweep a tick instead of a timer each,
   * as the TU deadline: almost every such timer is cancelled by the final response, and its
   * handle then stayed in the wheel for the full 32 s (two a MESSAGE relayed). Both are
   * 64*T1 from the start, and the table keeps start order: the sweep stops at the first
   * transaction younger than that, passing over INVITEs that a provisional answer took
   * off Timer B (the proxy's Timer C decides how long they ring).
   */
  private sweepClientsLater(): void {
    this.clientSweep = this.timers.schedule(CLIENT_SWEEP_MS, () => {
      this.clientSweep = undefined;
      const now = this.timers.now();
      for (const ct of this.clients.oldestFirst()) {
        const age = now - ct.startedAt;
        if (age < Math.min(TIMER_B, TIMER_F)) break;
        if (ct.timeoutArmed && age >= (ct.isInvite ? TIMER_B : TIMER_F)) {
          ct.terminate();
          ct.handler.onTimeout(ct, 'timeout');
        }
      }
      if (this.clients.size > 0) this.sweepClientsLater();
    });
  }

  forgetClient(ct: ClientTransaction): void {
    if (this.clients.get(ct.key) === ct) this.clients.delete(ct.key);
  }

  /** Shutdown: every transaction ends, pending client transactions are reported as timed out. */
  stop(): void {
    for (const ct of this.clients.list()) {
      ct.terminate();
      ct.handler.onTimeout(ct, 'transport');
    }
    for (const st of this.servers.list()) st.terminate();
    cancelTimer(this.deadlineSweep);
    this.deadlineSweep = undefined;
    cancelTimer(this.clientSweep);
    this.clientSweep = undefined;
    cancelTimer(this.completedSweep);
    this.completedSweep = undefined;
    this.completed.clear();
  }
}

/**
 * RFC 3261 18.2.1: the top Via gets `received` when its sent-by host is not the address the
 * request came from, and RFC 3581 4: `rport` asked for is filled with the source port (and
 * `received` added even when the host matches). Responses find their way back by these.
 */
export function stampReceived(request: SipMessage, flow: Flow): void {
  const via = request.topVia;
  if (via.host === '') return;
  const asksRport = via.rport === null;
  const source = flow.remoteAddress;
  if (!asksRport && via.received === undefined) {
    if (via.host === source || hostKey(via.host) === hostKey(source)) return;
  }
  // RFC 3261 25.1: received holds an IPv6address, without the brackets of the sent-by.
  const stamped = { ...via, received: source, rport: asksRport ? flow.remotePort : via.rport };
  request.removeFirst('via');
  request.prepend('via', formatVia(stamped));
}

function toReasonPhrase(text: string): string {
  return text
    .replace(/[\r\n\t]+/g, ' ')
    .replace(/[^A-Za-z0-9\-_.!~*'();/?:@&=+$, \u0080-\uffff]/g, '')
    .slice(0, 200);
}

/**
 * RFC 3261 17.2.3: branch (with the magic cookie) plus sent-by plus method identifies a
 * server transaction; ACK and CANCEL look for the INVITE's. Pre-RFC 3261 peers without the
 * cookie are matched by Call-ID, CSeq number, From tag and Via.
 */
function serverKey(request: SipMessage, method: string): string {
  const via = request.topVia;
  const branch = via?.branch;
  const sentBy = via ? `${via.host}:${via.port ?? ''}` : '';
  if (branch?.startsWith('z9hG4bK')) return `${branch}|${sentBy}|${method}`;
  return `2543|${request.callId}|${request.cseq.seq}|${request.from.tag ?? ''}|${sentBy}|${method}`;
}
