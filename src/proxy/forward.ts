import type { Logger } from 'pino';
import { hopRequestFor } from '../sip/hop-request.js';
import { createBranch } from '../sip/ids.js';
import type { SipMessage } from '../sip/message.js';
import { createResponse } from '../sip/response.js';
import type {
  ClientTransaction,
  ClientTransactionHandler,
  ServerTransaction,
  TransactionLayer,
} from '../transaction/layer.js';
import { cancelTimer, type TimerHandle } from '../transaction/timers.js';
import type { Flow } from '../transport/flow.js';
import type { LocalIdentity } from './local.js';

/** RFC 3261 16.6 step 11 / 16.8: Timer C, how long an INVITE branch may stay provisional. */
export const TIMER_C = 180_000;

/** One place to send a forwarded request: its Request-URI, optional Route set, and how to reach it. */
export interface ForwardTarget {
  uri: string;
  /** Route headers to put on the request (a registered Path, or the rest of a route set). */
  route?: string[];
  /** The flow itself when it is known and open (no promise and no turn of the microtask queue per request). */
  resolve(): Flow | Promise<Flow>;
}

interface Branch {
  target: ForwardTarget;
  ct?: ClientTransaction;
  request?: SipMessage;
  done: boolean;
  provisional: boolean;
  cancelPending: boolean;
  timerC?: TimerHandle;
}

export interface ForwardOptions {
  /** Record-Route with this dialog signature (record-route.ts); no Record-Route when absent. */
  recordRoute?: string;
  /** Called once with the final status this proxy sent upstream (for metrics and archiving). */
  onFinal?: (status: number) => void;
  /** Every response a branch receives, with the flow it came on (the core learns callee Contacts). */
  onBranchResponse?: (response: SipMessage, flow: Flow) => void;
  /**
   * Topology hiding (an edge): the request leaves with our Via alone; the Vias it arrived
   * with stay in this context and are put back on every response sent upstream.
   */
  hideVias?: boolean;
  /** Last change to each copy sent to a target (an edge seals internal routes and contacts). */
  rewriteRequest?: (request: SipMessage, flow: Flow) => void;
  /** Last change to each response sent upstream (an edge seals or restores what crosses it). */
  rewriteResponse?: (response: SipMessage) => void;
  /** Record-Route twice (RFC 5658) even when both sides share a transport and address: an edge faces two networks. */
  doubleRecordRoute?: boolean;
  /** Status sent upstream when a branch times out (default 408; an edge towards a partner says 504). */
  timeoutStatus?: number;
}

/**
 * The stateful proxy's response context (RFC 3261 16.7): forks a request to its targets in
 * parallel, forwards provisional and 2xx responses as they come, and sends upstream the
 * best final response once every branch has finished.
 */
export class ProxyContext {
  private readonly branches: Branch[] = [];
  private best?: SipMessage;
  private readonly challenges: SipMessage[] = [];
  private finalSent = false;
  private cancelled = false;

  constructor(
    private readonly st: ServerTransaction,
    private readonly layer: TransactionLayer,
    private readonly local: LocalIdentity,
    private readonly log: Logger,
    private readonly opts: ForwardOptions,
  ) {
    st.context = this;
  }

  start(targets: ForwardTarget[]): void {
    if (targets.length === 0) {
      this.sendFinal(createResponse(this.st.request, 480, 'Temporarily Unavailable'));
      return;
    }
    // Every branch is known before any starts: one whose flow is at hand starts at once, and
    // its failure must not look like the last branch's.
    for (const target of targets) {
      this.branches.push({ target, done: false, provisional: false, cancelPending: false });
    }
    const branches = this.branches.slice();
    for (const branch of branches) this.launch(branch);
  }

  private launch(branch: Branch): void {
    let resolved: Flow | Promise<Flow>;
    try {
      resolved = branch.target.resolve();
    } catch (err) {
      this.unreachable(branch, err as Error);
      return;
    }
    if (resolved instanceof Promise) {
      resolved.then(
        (flow) => this.send(branch, flow),
        (err: Error) => this.unreachable(branch, err),
      );
    } else {
      this.send(branch, resolved);
    }
  }

  private send(branch: Branch, flow: Flow): void {
    // A target whose connection came up after another branch's final response still gets a
    // non-INVITE (a MESSAGE goes to every endpoint, RFC 3428 via 16.6); an INVITE's pending
    // branches would only be cancelled (RFC 3261 16.7 step 10), so they are not started.
    if (this.cancelled || (this.finalSent && this.st.request.method === 'INVITE')) {
      this.branchDone(branch, undefined);
      return;
    }
    const request = this.buildRequest(branch.target, flow);
    branch.request = request;
    const handler: ClientTransactionHandler = {
      onResponse: (res, ct) => this.onResponse(branch, res, ct),
      onTimeout: () => this.onTimeout(branch),
    };
    branch.ct = this.layer.request(request, flow, handler);
  }

  private unreachable(branch: Branch, err: Error): void {
    this.log.debug({ target: branch.target.uri, err: err.message }, 'target unreachable');
    this.branchDone(branch, createResponse(this.st.request, 480, 'Temporarily Unavailable'));
  }

  /** RFC 3261 16.6 steps 1-8: the copy sent to one target. */
  private buildRequest(target: ForwardTarget, flow: Flow): SipMessage {
    const req = this.st.request.clone();
    req.uri = target.uri;
    const mf = req.maxForwards;
    req.set('max-forwards', String(mf === undefined ? 70 : mf - 1));
    const signature = this.opts.recordRoute;
    if (signature !== undefined) {
      const inbound = this.st.flow;
      // RFC 5658: when the two sides reach us by different transports, record both.
      if (
        this.opts.doubleRecordRoute ||
        inbound.transport !== flow.transport ||
        inbound.localAddress !== flow.localAddress
      ) {
        req.prepend('record-route', this.local.recordRoute(inbound, signature));
      }
      req.prepend('record-route', this.local.recordRoute(flow, signature));
    }
    if (target.route && target.route.length > 0) {
      const existing = req.getAll('route');
      req.remove('route');
      for (const r of [...target.route, ...existing]) req.append('route', r);
    }
    if (this.opts.hideVias) req.remove('via');
    req.prepend('via', this.local.via(flow, createBranch()));
    this.opts.rewriteRequest?.(req, flow);
    return req;
  }

  private onResponse(branch: Branch, response: SipMessage, ct: ClientTransaction): void {
    const status = response.status;
    this.opts.onBranchResponse?.(response, ct.flow);
    if (status < 200) {
      if (!branch.provisional) {
        branch.provisional = true;
        if (ct.isInvite) branch.timerC = this.layer.timers.schedule(TIMER_C, () => this.cancelBranch(branch));
      }
      if (branch.cancelPending) this.cancelBranch(branch);
      // RFC 3261 16.7 step 5: forward provisional responses except 100.
      if (status > 100 && !this.finalSent) this.st.respond(this.upstream(response));
      return;
    }
    cancelTimer(branch.timerC);
    if (status < 300) {
      // A 2xx goes upstream at once, every one of them for INVITE (RFC 3261 16.7 step 5).
      branch.done = true;
      this.finalSent = true;
      this.opts.onFinal?.(status);
      this.st.respond(this.upstream(response));
      if (this.st.isInvite) this.cancelOthers(branch);
      return;
    }
    if (status >= 600) this.cancelOthers(branch);
    const upstream = this.upstream(response);
    if (status === 401 || status === 407) this.challenges.push(upstream);
    this.branchDone(branch, upstream);
  }

  private onTimeout(branch: Branch): void {
    cancelTimer(branch.timerC);
    // RFC 3261 16.7 step 2 / 16.8: a timed-out branch counts as a 408.
    const status = this.opts.timeoutStatus ?? 408;
    this.branchDone(
      branch,
      createResponse(this.st.request, status, status === 408 ? 'Request Timeout' : undefined),
    );
  }

  private branchDone(branch: Branch, response: SipMessage | undefined): void {
    if (branch.done) return;
    branch.done = true;
    if (response && isBetter(response, this.best)) this.best = response;
    if (this.branches.every((b) => b.done)) this.finish();
  }

  private finish(): void {
    if (this.finalSent) return;
    const best = this.best;
    if (!best) {
      this.sendFinal(createResponse(this.st.request, this.cancelled ? 487 : 408));
      return;
    }
    let response = best;
    // RFC 3261 16.7 step 6: a 503 from downstream becomes 500 upstream.
    if (response.status === 503) response = createResponse(this.st.request, 500, 'Server Internal Error');
    else if (response.status === 401 || response.status === 407) response = this.withAllChallenges(response);
    this.sendFinal(response);
  }

  /** RFC 3261 16.7 step 7: the chosen 401/407 carries the challenges of every branch that sent one. */
  private withAllChallenges(response: SipMessage): SipMessage {
    if (this.challenges.length < 2) return response;
    const merged = response.clone();
    for (const name of ['www-authenticate', 'proxy-authenticate']) {
      const values = this.challenges.flatMap((r) => r.getAll(name));
      merged.remove(name);
      for (const v of new Set(values)) merged.append(name, v);
    }
    return merged;
  }

  private sendFinal(response: SipMessage): void {
    if (this.finalSent) return;
    this.finalSent = true;
    this.opts.onFinal?.(response.status);
    this.st.respond(response);
  }

  /** Strip our Via (RFC 3261 16.7 step 3) before sending a response upstream. */
  private upstream(response: SipMessage): SipMessage {
    const copy = response.clone();
    copy.removeFirst('via');
    if (this.opts.hideVias) {
      copy.remove('via');
      for (const v of this.st.request.getAll('via')) copy.append('via', v);
    }
    this.opts.rewriteResponse?.(copy);
    return copy;
  }

  /** CANCEL from upstream (RFC 3261 16.10): cancel every pending branch; 487 comes back through them. */
  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    for (const b of this.branches) this.cancelBranch(b);
    if (this.branches.every((b) => b.done)) this.finish();
  }

  private cancelOthers(except: Branch): void {
    for (const b of this.branches) if (b !== except) this.cancelBranch(b);
  }

  private cancelBranch(branch: Branch): void {
    if (branch.done || !branch.ct || !branch.request) {
      if (!branch.ct) branch.cancelPending = true;
      return;
    }
    if (!branch.ct.isInvite) return;
    // RFC 3261 9.1: no CANCEL before a provisional response has arrived.
    if (!branch.provisional) {
      branch.cancelPending = true;
      return;
    }
    branch.cancelPending = false;
    const req = branch.request;
    // The CANCEL is its own non-INVITE transaction; its 200 needs no handling.
    this.layer.sendRaw(branch.ct.flow, hopRequestFor('CANCEL', req));
  }
}

/** RFC 3261 16.7 step 6: 6xx beats everything, then the lowest class; 408/480 lose to anything specific. */
function isBetter(candidate: SipMessage, current: SipMessage | undefined): boolean {
  if (!current) return true;
  const a = candidate.status;
  const b = current.status;
  if (b >= 600) return false;
  if (a >= 600) return true;
  const rank = (s: number) =>
    s === 408 || s === 480 || s === 503 ? 1000 + s : Math.floor(s / 100) * 100 + (s % 100) / 1000;
  return rank(a) < rank(b);
}
