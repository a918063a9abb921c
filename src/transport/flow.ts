import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';

export type TransportName = 'udp' | 'tcp' | 'tls' | 'ws' | 'wss';

/**
 * One connection to a peer. RFC 5626 calls it a flow: requests for an endpoint go back
 * over the flow it registered on, which is the only way to reach clients behind NAT or in
 * a browser.
 */
export interface Flow {
  readonly id: string;
  readonly transport: TransportName;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;
  readonly secure: boolean;
  /** Peer certificate's names when the peer presented a verified TLS client certificate. */
  readonly peerNames: readonly string[];
  /** The listener that accepted it (its transport or a named listener); undefined when we dialled. */
  readonly listener?: string;
  readonly closed: boolean;
  send(data: Buffer): boolean;
  close(): void;
  /** AORs this flow has proved it speaks for (a REGISTER or a 407 challenge answered on it). */
  readonly authenticated: Set<string>;
}

let nextFlowNumber = 1;
// A per-process prefix: flow ids (and the flow tokens naming them) never repeat across restarts.
const boot = randomBytes(4).toString('hex');
export function newFlowId(prefix: string): string {
  return `${prefix}${boot}${(nextFlowNumber++).toString(36)}`;
}

export function stripV4Mapped(address: string | undefined): string {
  if (!address) return '';
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

/**
 * How much a connection may have queued for its peer before it is closed: a peer that stops
 * reading (a hung client, an overloaded SIPp) would otherwise grow the server's memory by
 * every response and request sent its way. 16 MiB is tens of thousands of messages, seconds
 * behind at any rate a client sends; Kamailio closes such a connection too (tcp_conn_wq_max).
 */
export const MAX_WRITE_QUEUE_BYTES = 16 * 1024 * 1024;

/**
 * A flow over a TCP or TLS socket. Writes are corked and flushed once per event-loop turn:
 * under load many messages leave in one segment instead of one syscall each.
 */
export class SocketFlow implements Flow {
  readonly id: string;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;
  readonly authenticated = new Set<string>();
  peerNames: readonly string[] = [];
  listener?: string;
  closed = false;
  private corked = false;

  constructor(
    readonly transport: 'tcp' | 'tls',
    private readonly socket: Socket,
    /** The client's address when a trusted proxy told it (PROXY protocol), not the socket's. */
    remote?: { address: string; port: number },
    private readonly maxWriteQueue = MAX_WRITE_QUEUE_BYTES,
  ) {
    this.id = newFlowId(transport === 'tls' ? 's' : 't');
    this.remoteAddress = stripV4Mapped(remote?.address ?? socket.remoteAddress);
    this.remotePort = remote?.port ?? socket.remotePort ?? 0;
    this.localAddress = stripV4Mapped(socket.localAddress);
    this.localPort = socket.localPort ?? 0;
    socket.once('close', () => {
      this.closed = true;
    });
  }

  get secure(): boolean {
    return this.transport === 'tls';
  }

  send(data: Buffer): boolean {
    if (this.closed || this.socket.destroyed) return false;
    if (this.socket.writableLength + data.length > this.maxWriteQueue) {
      // The peer has not read what it was sent: the connection goes, as when it breaks.
      this.closed = true;
      this.socket.destroy(new Error(`over ${this.maxWriteQueue} bytes queued: the peer does not read`));
      return false;
    }
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      // Flushed once the event loop's turn is done (setImmediate), not after the current
      // callback (nextTick): each UDP datagram is a callback of its own, and MESSAGEs
      // arriving over UDP in one turn are forwarded over this connection in one write.
      setImmediate(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(data);
    return true;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }
}

/** A flow over a WebSocket (RFC 7118): one SIP message per WebSocket text/binary message. */
export class WebSocketFlow implements Flow {
  readonly id: string;
  readonly authenticated = new Set<string>();
  peerNames: readonly string[] = [];
  listener?: string;
  closed = false;

  constructor(
    readonly transport: 'ws' | 'wss',
    private readonly ws: WebSocket,
    readonly remoteAddress: string,
    readonly remotePort: number,
    readonly localAddress: string,
    readonly localPort: number,
  ) {
    this.id = newFlowId('w');
    this.remoteAddress = stripV4Mapped(remoteAddress);
    this.localAddress = stripV4Mapped(localAddress);
    ws.once('close', () => {
      this.closed = true;
    });
  }

  get secure(): boolean {
    return this.transport === 'wss';
  }

  send(data: Buffer): boolean {
    if (this.closed || this.ws.readyState !== this.ws.OPEN) return false;
    // RFC 7118 5.2: SIP messages with a UTF-8 payload go as text frames.
    this.ws.send(data, { binary: false });
    return true;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ws.close(1001, 'server closing');
    setTimeout(() => this.ws.terminate(), 2000).unref();
  }
}

/** A set that remembers nothing: on UDP a source address proves nothing (it is easily forged). */
class ForgetfulSet extends Set<string> {
  override add(_value: string): this {
    return this;
  }
}

/**
 * A peer reached over UDP (RFC 3261 18): its address and port on one of our UDP sockets.
 * There is no connection, so nothing closes it and nothing it sent once vouches for the
 * next datagram: every request is authenticated on its own (`authenticated` stays empty).
 */
export class UdpFlow implements Flow {
  readonly id: string;
  readonly transport = 'udp' as const;
  readonly secure = false;
  readonly peerNames: readonly string[] = [];
  readonly authenticated: Set<string> = new ForgetfulSet();
  readonly listener = 'udp';
  readonly closed = false;
  /** Date.now() when a datagram last came from or went to the peer (idle UDP flows are forgotten). */
  lastActive = Date.now();

  constructor(
    private readonly socket: UdpSocket,
    readonly remoteAddress: string,
    readonly remotePort: number,
    readonly localAddress: string,
    readonly localPort: number,
  ) {
    this.id = newFlowId('u');
  }

  send(data: Buffer): boolean {
    // RFC 768: a datagram carries at most 65,507 bytes of payload over IPv4.
    if (data.length > 65_507) return false;
    this.lastActive = Date.now();
    this.socket.send(data, this.remotePort, this.remoteAddress);
    return true;
  }

  close(): void {
    // Nothing to close: the socket is shared with every other UDP peer.
  }
}

/** What a UdpFlow needs of a dgram socket (send errors surface on the socket's 'error'). */
export interface UdpSocket {
  send(data: Buffer, port: number, address: string): void;
}

/**
 * Sends the datagrams of one event-loop turn together, once the turn's input is handled
 * (setImmediate), instead of each in the middle of it. Each send is a system call that on
 * loopback also delivers the datagram and wakes its reader: interleaved with the turn's
 * work, nearly every response woke a reader that had gone back to sleep (33-54 us a send
 * under REGISTER over UDP); back to back, the first wakes it and the rest find it awake.
 * Node reads up to 32 datagrams a turn, so a response waits for at most the rest of them.
 */
export class TurnBatchedUdpSender implements UdpSocket {
  private queue: Array<{ data: Buffer; port: number; address: string }> = [];
  private scheduled = false;

  constructor(
    private readonly socket: UdpSocket,
    /** A datagram that could not be handed to the socket (it closed meanwhile). */
    private readonly onError: (err: unknown) => void = () => undefined,
  ) {}

  send(data: Buffer, port: number, address: string): void {
    this.queue.push({ data, port, address });
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  /** Hands every queued datagram to the socket now. */
  flush(): void {
    this.scheduled = false;
    const queue = this.queue;
    this.queue = [];
    for (const { data, port, address } of queue) {
      try {
        this.socket.send(data, port, address);
      } catch (err) {
        this.onError(err);
      }
    }
  }
}
