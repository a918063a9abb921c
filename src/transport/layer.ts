import { createSocket, type Socket as DgramSocket, type RemoteInfo } from 'node:dgram';
import { lookup as dnsLookup, type LookupOneOptions } from 'node:dns';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import {
  type AddressInfo,
  createServer as createTcpServer,
  isIP,
  type Socket,
  type Server as TcpServer,
  connect as tcpConnect,
} from 'node:net';
import { createServer as createTlsServer, type TLSSocket, connect as tlsConnect } from 'node:tls';
import type { Logger } from 'pino';
import { WebSocketServer } from 'ws';
import { StreamFramer } from '../sip/framer.js';
import { hostKey } from '../sip/host.js';
import type { SipMessage } from '../sip/message.js';
import { parseMessage } from '../sip/parser.js';
import {
  type Flow,
  SocketFlow,
  stripV4Mapped,
  type TransportName,
  TurnBatchedUdpSender,
  UdpFlow,
  type UdpSocket,
  WebSocketFlow,
} from './flow.js';
import {
  ConnectionEventLog,
  type ConnectionLease,
  ConnectionLimiter,
  type ConnectionLimits,
  type ConnectionRefusal,
  type ConnectionTimeout,
  DEFAULT_CONNECTION_LIMITS,
  descriptorSoftLimit,
  effectiveMaxConnections,
} from './limits.js';
import { parseProxyHeader } from './proxy-protocol.js';
import { isStunBindingRequest, stunBindingSuccess } from './stun.js';
import { peerCertificateNames } from './tls-names.js';

export interface HostPort {
  host: string;
  port: number;
}

export interface TlsMaterial {
  cert: string | Buffer;
  key: string | Buffer;
  ca?: string | Buffer;
  /** Ask peers for a certificate and refuse those that do not present a valid one (mutual TLS). */
  requireClientCert?: boolean;
}

/**
 * A listener beside the one-per-transport `listen` set, with its own name: an edge's
 * inside-facing TCP listener, or its federation listener that demands a client certificate.
 */
export interface NamedListener {
  name: string;
  transport: 'tcp' | 'tls';
  at: HostPort;
  /** TLS only: refuse peers without a certificate valid for `tls.ca` (mutual TLS). */
  requireClientCert?: boolean;
  /** Largest message on its connections, instead of `maxMessageSize` (an edge's inside side). */
  maxMessageSize?: number;
}

export interface TransportLayerOptions {
  listen: Partial<Record<TransportName, HostPort>>;
  /** More listeners, each naming the flows it accepts (Flow.listener). */
  namedListeners?: NamedListener[];
  tls?: TlsMaterial;
  maxMessageSize?: number;
  log: Logger;
  limits?: Partial<ConnectionLimits>;
  /** RLIMIT_NOFILE soft limit the global limit stays below; read from the system when omitted. */
  descriptorLimit?: number;
  /** Counts refused connections (metrics); they are logged here. */
  onConnectionRefused?(reason: ConnectionRefusal): void;
  /** Counts connections closed by the header or idle timeout. */
  onConnectionTimedOut?(reason: ConnectionTimeout): void;
  /**
   * Mutual TLS between servers (`security: high`): TLS listeners ask every peer for a
   * certificate, and a connection from an address this names (a server peer) that presents
   * none valid for `tls.ca` is refused at the handshake. Clients may still present none.
   */
  serverPeerAddress?: (address: string) => boolean;
  /** Dial TLS only (`security: high`): a tcp or udp next hop is refused, never connected to. */
  dialTlsOnly?: boolean;
  /**
   * How long a UDP peer nothing came from or went to is remembered (its flow id keeps
   * working for requests to a NATed client until then): past the longest registration.
   */
  udpFlowIdleMs?: number;
}

/** Just past `registrar.maxExpires`' default (7200 s): a registered UDP client refreshes before. */
const DEFAULT_UDP_FLOW_IDLE_MS = 7_500_000;
/**
 * The UDP socket's receive and send buffers asked for: 16 MiB holds about 350 ms of requests
 * at 10,000 REGISTER calls a second, a long garbage-collector pause under overload
 * (bench/README.md, "The young generation").
 */
const UDP_BUFFER_BYTES = 16 * 1024 * 1024;
/** Past this many remembered UDP peers, those silent for a minute are forgotten at the next sweep. */
const UDP_FLOWS_SOFT_LIMIT = 200_000;

export interface TransportHandler {
  onMessage(message: SipMessage, flow: Flow): void;
  /** A message that could not be parsed: answer it (when it can be) with the error's status. */
  onParseError(flow: Flow, status: number, reason: string, partial: unknown, fatal: boolean): void;
  onFlowClosed(flow: Flow): void;
}

/** An accepted connection, from its first byte until it closes, with its limits' state. */
interface Inbound {
  readonly raw: Socket;
  /** Every socket carrying it (the TCP socket, then the TLS socket over it), to close them all. */
  readonly sockets: Socket[];
  readonly lease: ConnectionLease;
  /** The real client's per-address count, when a trusted proxy named it. */
  clientLease?: ConnectionLease;
  /** The real client, when a trusted proxy named it (PROXY protocol). */
  remote?: { address: string; port: number };
  /** Runs while a message is awaited: from accept until the first, and while one is partial. */
  headerTimer?: NodeJS.Timeout;
  idleTimer?: NodeJS.Timeout;
  seenMessage: boolean;
  flow?: Flow;
  /** The listener that accepted it: its transport, or a named listener's name. */
  listener: string;
  maxMessageSize?: number;
}

interface FlowRecord {
  readonly flow: Flow;
  /** Its keys in byRemote, so closing a flow costs the same however many flows are open. */
  readonly keys: string[];
  readonly inbound?: Inbound;
}

export interface Listening {
  transport: TransportName;
  host: string;
  port: number;
  /** Set for named listeners (NamedListener.name). */
  name?: string;
}

/**
 * Owns every listening socket and every connection. Upper layers see only SIP messages
 * arriving on flows, and ask for a flow to a target when they must open one.
 */
export class TransportLayer {
  private readonly flows = new Map<string, FlowRecord>();
  /** transport:host:port -> flow, for reusing connections to a peer (RFC 3261 18.1.1). */
  private readonly byRemote = new Map<string, Flow>();
  private readonly pendingConnects = new Map<string, Promise<Flow>>();
  private readonly servers: Array<TcpServer | HttpServer> = [];
  private readonly wsServers: WebSocketServer[] = [];
  /** UDP peers by `address|port`, and by flow id. */
  private readonly udpPeers = new Map<string, UdpFlow>();
  private readonly udpById = new Map<string, UdpFlow>();
  /** The peer of the last datagram (still in udpPeers). */
  private lastUdpPeer?: UdpFlow;
  private udpSocket?: DgramSocket;
  /** Sends a turn's datagrams together; a dual-stack (udp6) socket reaches an IPv4 peer at its IPv4-mapped address. */
  private udpSender?: TurnBatchedUdpSender;
  /** Datagrams read in this pass of the event loop's poll phase, handled together after it. */
  private udpInbox: Buffer[] = [];
  private udpInboxFrom: RemoteInfo[] = [];
  private udpInboxScheduled = false;
  private udpLocal?: { address: string; port: number };
  private udpSweep?: NodeJS.Timeout;
  readonly listening: Listening[] = [];
  /** Accepted connections handed to a TLS or HTTP server, found again when it hands them back. */
  private readonly handedOff = new Map<string, Inbound>();
  private accepting = true;
  private handler!: TransportHandler;
  readonly limits: Readonly<ConnectionLimits> & { maxConnections: number };
  private readonly limiter: ConnectionLimiter;
  private readonly connectionLog: ConnectionEventLog;

  constructor(private readonly opts: TransportLayerOptions) {
    const limits = { ...DEFAULT_CONNECTION_LIMITS, ...opts.limits };
    const maxConnections = effectiveMaxConnections(
      limits.maxConnections,
      opts.descriptorLimit ?? descriptorSoftLimit(),
    );
    if (limits.maxConnections !== undefined && maxConnections < limits.maxConnections) {
      opts.log.warn(
        { configured: limits.maxConnections, maxConnections },
        'limits.maxConnections lowered to leave descriptors for the operations server and outgoing connections',
      );
    }
    this.limits = { ...limits, maxConnections };
    this.limiter = new ConnectionLimiter(
      limits.maxConnectionsPerAddress,
      maxConnections,
      limits.trustedProxies,
    );
    this.connectionLog = new ConnectionEventLog(opts.log);
  }

  async start(handler: TransportHandler): Promise<Listening[]> {
    this.handler = handler;
    const { listen, tls } = this.opts;
    if (listen.udp) await this.listenUdp(listen.udp);
    if (listen.tcp) {
      await this.listenGated('tcp', listen.tcp, (raw, inbound) => {
        this.adoptSocket('tcp', raw, undefined, inbound);
        // The gate pauses a trusted proxy's socket to read its PROXY header. (TLS and HTTP
        // servers take the handle over themselves and must not see it resumed first.)
        raw.resume();
      });
    }
    if (listen.tls) {
      if (!tls) throw new Error('listen.tls needs tls.cert and tls.key');
      await this.listenTls(listen.tls, Boolean(tls.requireClientCert));
    }
    for (const named of this.opts.namedListeners ?? []) {
      if (named.transport === 'tcp') {
        await this.listenGated(
          'tcp',
          named.at,
          (raw, inbound) => {
            inbound.maxMessageSize = named.maxMessageSize;
            this.adoptSocket('tcp', raw, undefined, inbound);
            raw.resume();
          },
          named.name,
        );
      } else {
        if (!tls) throw new Error(`the ${named.name} listener needs tls.cert and tls.key`);
        await this.listenTls(named.at, Boolean(named.requireClientCert), named.name);
      }
    }
    if (listen.ws) await this.listenWebSocket('ws', createHttpServer(), listen.ws);
    if (listen.wss) {
      if (!tls) throw new Error('listen.wss needs tls.cert and tls.key');
      await this.listenWebSocket(
        'wss',
        createHttpsServer({
          cert: tls.cert,
          key: tls.key,
          ca: tls.ca,
          // Mutual TLS applies to secure WebSocket peers as to TLS ones.
          requestCert: Boolean(tls.requireClientCert),
          rejectUnauthorized: Boolean(tls.requireClientCert),
        }),
        listen.wss,
      );
    }
    return this.listening;
  }

  private async listenTls(at: HostPort, requireClientCert: boolean, name?: string): Promise<void> {
    const tls = this.opts.tls!;
    const serverPeer = this.opts.serverPeerAddress;
    const server = createTlsServer({
      cert: tls.cert,
      key: tls.key,
      ca: tls.ca,
      requestCert: requireClientCert || serverPeer !== undefined,
      rejectUnauthorized: requireClientCert,
    });
    server.on('secureConnection', (socket: TLSSocket) => {
      const inbound = this.takeHandedOff(socket);
      if (!inbound) {
        socket.destroy();
        return;
      }
      const address = inbound.remote?.address ?? stripV4Mapped(inbound.raw.remoteAddress ?? '');
      if (serverPeer?.(address) && !socket.authorized) {
        this.refuse(socket, 'peer_certificate', address);
        return;
      }
      this.adoptSocket('tls', socket, undefined, inbound);
    });
    server.on('tlsClientError', (err: Error, socket: TLSSocket) => {
      this.opts.log.debug({ err: err.message, listener: name ?? 'tls' }, 'TLS handshake failed');
      const inbound = this.takeHandedOff(socket);
      if (inbound) this.closeInbound(inbound);
    });
    await this.listenGated('tls', at, (raw, inbound) => this.handOff(server, raw, inbound), name);
  }

  flow(id: string): Flow | undefined {
    return this.flows.get(id)?.flow ?? this.udpById.get(id);
  }

  /**
   * The UDP peer at this address and port (RFC 3261 18.2.2: where responses and requests to
   * a UDP client go); undefined when we do not listen on UDP.
   */
  udpFlowTo(host: string, port: number): Flow | undefined {
    return this.udpPeer(stripV4Mapped(hostKey(host)), port);
  }

  /** The UDP peer at an address as Node reports it (RFC 5952 text, IPv4-mapped stripped). */
  private udpPeer(address: string, port: number): UdpFlow | undefined {
    const socket = this.udpSocket;
    const local = this.udpLocal;
    if (!socket || !local) return undefined;
    // The peer of the last datagram first: a client sends many in a row, and the key below is
    // a new string, hashed again, each time (1.2 us a REGISTER call over UDP at 18:38).
    const last = this.lastUdpPeer;
    if (last !== undefined && last.remotePort === port && last.remoteAddress === address) return last;
    const key = `${address}|${port}`;
    let flow = this.udpPeers.get(key);
    if (!flow) {
      flow = new UdpFlow(this.udpSender ?? socket, address, port, local.address, local.port);
      this.udpPeers.set(key, flow);
      this.udpById.set(flow.id, flow);
    }
    this.lastUdpPeer = flow;
    return flow;
  }

  /** Accepted connections counted against the global limit (before and after they become flows). */
  get connectionCount(): number {
    return this.limiter.count;
  }

  get flowCount(): number {
    return this.flows.size;
  }

  *allFlows(): IterableIterator<Flow> {
    for (const record of this.flows.values()) yield record.flow;
  }

  /** A live flow to the peer, reusing an existing connection when there is one. */
  findFlow(transport: TransportName, host: string, port: number): Flow | undefined {
    if (transport === 'udp') return this.udpFlowTo(host, port);
    const flow = this.byRemote.get(remoteKey(transport, host, port));
    return flow && !flow.closed ? flow : undefined;
  }

  /** Opens (or reuses) a stream connection to a peer. WebSocket peers cannot be dialled. */
  connect(transport: TransportName, host: string, port: number, servername?: string): Promise<Flow> {
    const existing = this.findFlow(transport, host, port);
    if (existing) return Promise.resolve(existing);
    if (transport === 'udp') return Promise.reject(new Error('no UDP listener to send from'));
    if (transport === 'ws' || transport === 'wss') {
      return Promise.reject(new Error(`cannot open a ${transport} connection to ${host}:${port}`));
    }
    if (transport === 'tcp' && this.opts.dialTlsOnly) {
      return Promise.reject(new Error(`security: high dials TLS only; refused tcp to ${host}:${port}`));
    }
    const key = remoteKey(transport, host, port);
    const pending = this.pendingConnects.get(key);
    if (pending) return pending;
    const promise = new Promise<Flow>((resolve, reject) => {
      const bareHost = host.startsWith('[') ? host.slice(1, -1) : host;
      let socket: Socket;
      const onError = (err: Error) => reject(err);
      if (transport === 'tls') {
        const tls = this.opts.tls;
        socket = tlsConnect({
          host: bareHost,
          port,
          servername: servername ?? (isIp(bareHost) ? undefined : bareHost),
          ca: tls?.ca,
          // Present our certificate: federation and server-to-server links are mutual TLS.
          cert: tls?.cert,
          key: tls?.key,
          rejectUnauthorized: true,
        });
        // As on TCP: SIP messages are small and answered; Nagle would hold each one back.
        socket.setNoDelay(true);
        socket.once('secureConnect', () => {
          socket.off('error', onError);
          socket.setTimeout(0);
          resolve(this.adoptSocket('tls', socket, key));
        });
      } else {
        socket = tcpConnect({ host: bareHost, port, noDelay: true });
        socket.once('connect', () => {
          socket.off('error', onError);
          socket.setTimeout(0);
          resolve(this.adoptSocket('tcp', socket, key));
        });
      }
      socket.setTimeout(10_000, () => socket.destroy(new Error(`connect to ${host}:${port} timed out`)));
      socket.once('error', onError);
    }).finally(() => this.pendingConnects.delete(key));
    this.pendingConnects.set(key, promise);
    return promise;
  }

  /** Stop taking new connections (drain); existing flows keep working. */
  stopAccepting(): void {
    this.accepting = false;
    for (const server of this.servers) server.close();
  }

  async stop(): Promise<void> {
    this.stopAccepting();
    if (this.udpSweep) clearInterval(this.udpSweep);
    this.udpSender?.flush();
    this.udpSender = undefined;
    this.udpSocket?.close();
    this.udpSocket = undefined;
    this.udpPeers.clear();
    this.udpById.clear();
    this.lastUdpPeer = undefined;
    for (const wss of this.wsServers) wss.close();
    for (const record of this.flows.values()) record.flow.close();
    this.flows.clear();
    this.byRemote.clear();
  }

  /**
   * SIP over UDP (RFC 3261 18): one socket, each datagram one message, each source address
   * and port a flow. Keep-alives are answered as RFC 5626 4.4 has clients send them:
   * a STUN Binding request with its success response, a double CRLF with a CRLF.
   */
  private async listenUdp(at: HostPort): Promise<void> {
    const socket = createSocket({
      type: at.host.includes(':') ? 'udp6' : 'udp4',
      reuseAddr: false,
      lookup: lookupUnlessAddress,
    });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(at.port, at.host, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    // A failed send (ICMP unreachable on some systems) is not the listener's end.
    socket.on('error', (err) => this.opts.log.debug({ err: err.message }, 'UDP socket error'));
    // Datagrams queue in the kernel while the thread is busy (a garbage-collector pause): what
    // does not fit is dropped, and comes back as the client's retransmission T1 (500 ms) later.
    // Linux caps the size at net.core.rmem_max (wmem_max), and reports twice what it granted.
    try {
      socket.setRecvBufferSize(UDP_BUFFER_BYTES);
      socket.setSendBufferSize(UDP_BUFFER_BYTES);
    } catch {
      // Refused outright on some systems: the default then applies.
    }
    const granted = socket.getRecvBufferSize() / 2;
    this.opts.log.info(
      { receiveBufferBytes: granted, asked: UDP_BUFFER_BYTES },
      granted < UDP_BUFFER_BYTES
        ? 'UDP receive buffer capped by the system: raise net.core.rmem_max (docs/config.md, UDP)'
        : 'UDP receive buffer',
    );
    socket.on('message', (data: Buffer, rinfo: RemoteInfo) => this.queueDatagram(data, rinfo));
    const address = socket.address();
    this.udpSocket = socket;
    const direct: UdpSocket =
      address.family === 'IPv6'
        ? {
            send: (data, port, host) => socket.send(data, port, host.includes(':') ? host : `::ffff:${host}`),
          }
        : socket;
    this.udpSender = new TurnBatchedUdpSender(direct, (err) =>
      this.opts.log.debug({ err: err instanceof Error ? err.message : String(err) }, 'UDP send failed'),
    );
    this.udpLocal = { address: stripV4Mapped(address.address), port: address.port };
    this.listening.push({ transport: 'udp', host: at.host, port: address.port });
    const idleMs = this.opts.udpFlowIdleMs ?? DEFAULT_UDP_FLOW_IDLE_MS;
    this.udpSweep = setInterval(() => this.forgetIdleUdpPeers(Date.now(), idleMs), 30_000);
    this.udpSweep.unref();
  }

  private forgetIdleUdpPeers(now: number, idleMs: number): void {
    const crowded = this.udpPeers.size > UDP_FLOWS_SOFT_LIMIT;
    for (const [key, flow] of this.udpPeers) {
      const idle = now - flow.lastActive;
      if (idle > idleMs || (crowded && idle > 60_000)) {
        this.udpPeers.delete(key);
        this.udpById.delete(flow.id);
        if (flow === this.lastUdpPeer) this.lastUdpPeer = undefined;
      }
    }
  }

  /**
   * A datagram just read: handled with the others read in the same pass of the poll phase,
   * once the pass is over (setImmediate), and their responses sent right after the last.
   * libuv reads up to 32 datagrams a pass, one system call each, and called in here after
   * each: every message's work ran between two system calls (on this VM each flushes the
   * TLB: PTI without PCID), and in the REGISTER profiles of 3 December the same parser and
   * digest functions cost 1.5-3 times as much per call over UDP as over TCP, where one read
   * brings many messages and one write takes their responses. This is the same for UDP.
   */
  private queueDatagram(data: Buffer, rinfo: RemoteInfo): void {
    this.udpInbox.push(data);
    this.udpInboxFrom.push(rinfo);
    if (this.udpInboxScheduled) return;
    this.udpInboxScheduled = true;
    setImmediate(() => this.drainUdpInbox());
  }

  private drainUdpInbox(): void {
    this.udpInboxScheduled = false;
    const inbox = this.udpInbox;
    const from = this.udpInboxFrom;
    this.udpInbox = [];
    this.udpInboxFrom = [];
    for (let i = 0; i < inbox.length; i++) this.receiveDatagram(inbox[i], from[i]);
    this.udpSender?.flush();
  }

  private receiveDatagram(data: Buffer, rinfo: RemoteInfo): void {
    if (!this.accepting || !this.udpSocket) return;
    const flow = this.udpPeer(stripV4Mapped(rinfo.address), rinfo.port) as UdpFlow;
    flow.lastActive = Date.now();
    if (data.length === 0) return;
    if (isStunBindingRequest(data)) {
      flow.send(stunBindingSuccess(data, flow.remoteAddress, flow.remotePort));
      return;
    }
    if (isOnlyCrlf(data)) {
      if (data.length >= 4) flow.send(CRLF);
      return;
    }
    const result = parseMessage(data);
    if (result.ok) this.deliver(result.message, flow);
    else this.handler.onParseError(flow, result.status, result.reason, result.partial, false);
  }

  /**
   * Every listener accepts on a plain TCP server first: limits, the PROXY header of a
   * trusted proxy and the header timer apply before TLS or HTTP sees a byte. Then the
   * socket goes to `handoff` (SIP framing, or the TLS or HTTP server that owns the protocol).
   */
  private async listenGated(
    transport: TransportName,
    at: HostPort,
    handoff: (raw: Socket, inbound: Inbound) => void,
    name?: string,
  ): Promise<void> {
    const server = createTcpServer({ noDelay: true });
    server.on('connection', (raw: Socket) => this.accept(raw, handoff, name ?? transport));
    server.on('error', (err) => this.opts.log.error({ err }, 'listener error'));
    await listenOn(server, at);
    this.servers.push(server);
    const port = (server.address() as AddressInfo).port;
    this.listening.push(name ? { transport, host: at.host, port, name } : { transport, host: at.host, port });
  }

  private accept(raw: Socket, handoff: (raw: Socket, inbound: Inbound) => void, listener: string): void {
    if (!this.accepting) {
      raw.destroy();
      return;
    }
    const address = stripV4Mapped(raw.remoteAddress);
    const lease = this.limiter.admit(address);
    if (typeof lease === 'string') {
      this.refuse(raw, lease, address);
      return;
    }
    const inbound: Inbound = { raw, sockets: [raw], lease, seenMessage: false, listener };
    raw.on('error', (err) => this.opts.log.debug({ address, err: err.message }, 'socket error'));
    raw.once('close', () => this.releaseInbound(inbound));
    this.armHeaderTimer(inbound);
    if (!this.limiter.isTrusted(address)) {
      handoff(raw, inbound);
      return;
    }
    // A trusted proxy may open with a PROXY header (v1 or v2) naming the client.
    let buffered: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      const header = parseProxyHeader(buffered);
      if (header.kind === 'incomplete') return;
      raw.off('data', onData);
      raw.pause();
      if (header.kind === 'invalid') {
        this.refuse(raw, 'bad_proxy_header', address);
        return;
      }
      let rest = buffered;
      if (header.kind === 'header') {
        rest = buffered.subarray(header.length);
        if (header.source) {
          const client = stripV4Mapped(header.source.address);
          const clientLease = this.limiter.admitBehindProxy(client);
          if (typeof clientLease === 'string') {
            this.refuse(raw, clientLease, client);
            return;
          }
          inbound.clientLease = clientLease;
          inbound.remote = { address: client, port: header.source.port };
        }
      }
      if (rest.length > 0) raw.unshift(rest);
      handoff(raw, inbound);
    };
    raw.on('data', onData);
  }

  private refuse(socket: Socket, reason: ConnectionRefusal, address: string): void {
    socket.destroy();
    this.connectionLog.report(reason, address);
    this.opts.onConnectionRefused?.(reason);
  }

  /** Gives an accepted socket to the TLS or HTTP server that speaks its protocol. */
  private handOff(server: TcpServer, raw: Socket, inbound: Inbound): void {
    const key = handOffKey(raw);
    this.handedOff.set(key, inbound);
    raw.once('close', () => {
      if (this.handedOff.get(key) === inbound) this.handedOff.delete(key);
    });
    server.emit('connection', raw);
  }

  /** The accepted connection under a socket the TLS or HTTP server hands back (same 4-tuple). */
  private takeHandedOff(socket: Socket): Inbound | undefined {
    const key = handOffKey(socket);
    const inbound = this.handedOff.get(key);
    if (!inbound) return undefined;
    this.handedOff.delete(key);
    if (!inbound.sockets.includes(socket)) {
      inbound.sockets.push(socket);
      socket.once('close', () => this.releaseInbound(inbound));
    }
    return inbound;
  }

  private armHeaderTimer(inbound: Inbound): void {
    if (inbound.headerTimer) clearTimeout(inbound.headerTimer);
    inbound.headerTimer = setTimeout(
      () => this.timeOut(inbound, 'header_timeout'),
      this.limits.headerTimeoutMs,
    );
    inbound.headerTimer.unref();
  }

  private clearHeaderTimer(inbound: Inbound): void {
    if (!inbound.headerTimer) return;
    clearTimeout(inbound.headerTimer);
    inbound.headerTimer = undefined;
  }

  private armIdleTimer(inbound: Inbound): void {
    inbound.idleTimer = setTimeout(() => {
      const flow = inbound.flow;
      // A flow someone registered or authenticated on is how we reach them: keep it.
      if (flow && flow.authenticated.size > 0) {
        inbound.idleTimer?.refresh();
        return;
      }
      this.timeOut(inbound, 'idle_timeout');
    }, this.limits.idleTimeoutMs);
    inbound.idleTimer.unref();
  }

  /** After data on an accepted stream: `completed` if a message was framed, `partial` if one is still open. */
  private noteProgress(inbound: Inbound, completed: boolean, partial: boolean): void {
    if (completed) {
      inbound.seenMessage = true;
      inbound.idleTimer?.refresh();
    }
    if (partial) {
      // Slowloris: the clock runs from the start of a message, not from its latest byte.
      if (completed || !inbound.headerTimer) this.armHeaderTimer(inbound);
    } else if (inbound.seenMessage) {
      // Keep-alives alone do not stop the clock running since the connection opened.
      this.clearHeaderTimer(inbound);
    }
  }

  private timeOut(inbound: Inbound, reason: ConnectionTimeout): void {
    this.connectionLog.report(reason, inbound.remote?.address ?? stripV4Mapped(inbound.raw.remoteAddress));
    this.opts.onConnectionTimedOut?.(reason);
    this.closeInbound(inbound);
  }

  private closeInbound(inbound: Inbound): void {
    for (const socket of inbound.sockets) socket.destroy();
    this.releaseInbound(inbound);
  }

  private releaseInbound(inbound: Inbound): void {
    this.clearHeaderTimer(inbound);
    if (inbound.idleTimer) clearTimeout(inbound.idleTimer);
    inbound.lease.release();
    inbound.clientLease?.release();
  }

  private async listenWebSocket(transport: 'ws' | 'wss', server: HttpServer, at: HostPort): Promise<void> {
    const wss = new WebSocketServer({
      noServer: true,
      maxPayload: this.opts.maxMessageSize ?? 65_535,
      // RFC 7118 4: the client asks for the "sip" subprotocol.
      handleProtocols: (protocols) => (protocols.has('sip') ? 'sip' : false),
    });
    server.on('upgrade', (req, socket, head) => {
      wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
    });
    wss.on('connection', (ws, req) => {
      const socket = req.socket;
      const inbound = this.takeHandedOff(socket);
      if (!this.accepting || !inbound) {
        ws.terminate();
        return;
      }
      const flow = new WebSocketFlow(
        transport,
        ws,
        inbound.remote?.address ?? socket.remoteAddress ?? '',
        inbound.remote?.port ?? socket.remotePort ?? 0,
        socket.localAddress ?? '',
        socket.localPort ?? 0,
      );
      flow.listener = inbound.listener;
      inbound.flow = flow;
      this.register(flow, undefined, inbound);
      // The upgrade is the first message; from here the header clock runs from the first
      // byte of a WebSocket message until ws delivers it (prepended: it must see bytes first).
      inbound.seenMessage = true;
      this.clearHeaderTimer(inbound);
      this.armIdleTimer(inbound);
      socket.prependListener('data', () => {
        if (!inbound.headerTimer) this.armHeaderTimer(inbound);
      });
      const settled = () => this.clearHeaderTimer(inbound);
      ws.on('ping', settled);
      ws.on('pong', settled);
      ws.on('message', (data: Buffer | ArrayBuffer | Buffer[]) => {
        this.clearHeaderTimer(inbound);
        inbound.idleTimer?.refresh();
        const buf = Buffer.isBuffer(data)
          ? data
          : Array.isArray(data)
            ? Buffer.concat(data)
            : Buffer.from(data);
        const result = parseMessage(buf);
        if (result.ok) this.deliver(result.message, flow);
        else this.handler.onParseError(flow, result.status, result.reason, result.partial, false);
      });
      ws.on('close', () => this.unregister(flow));
      ws.on('error', () => this.unregister(flow));
    });
    server.on('error', (err) => this.opts.log.error({ err }, 'listener error'));
    // The gate's header timer bounds the upgrade request; Node's own is a fallback.
    server.headersTimeout = Math.max(this.limits.headerTimeoutMs, 1000);
    server.requestTimeout = Math.max(this.limits.headerTimeoutMs, 1000);
    this.wsServers.push(wss);
    await this.listenGated(transport, at, (raw, inbound) => {
      this.handOff(server, raw, inbound);
      // Node's HTTP server reads the socket's handle itself: bytes the gate read past a
      // PROXY header (unshifted into the stream) reach it only once the stream flows. A TLS
      // socket (wss) takes such bytes over on its own.
      if (transport === 'ws' && raw.readableLength > 0) raw.resume();
    });
  }

  private adoptSocket(
    transport: 'tcp' | 'tls',
    socket: Socket,
    dialledKey?: string,
    inbound?: Inbound,
  ): Flow {
    const flow = new SocketFlow(transport, socket, inbound?.remote);
    if (transport === 'tls') flow.peerNames = peerCertificateNames(socket as TLSSocket);
    if (inbound) {
      flow.listener = inbound.listener;
      inbound.flow = flow;
      this.armIdleTimer(inbound);
    }
    this.register(flow, dialledKey, inbound);
    // Connections we dial (to servers we chose) take the framer's default.
    const framer = new StreamFramer({
      maxMessageSize: inbound ? (inbound.maxMessageSize ?? this.opts.maxMessageSize) : undefined,
    });
    // Only a trusted proxy's PROXY header is read (by the gate); anyone else's is refused.
    let first = inbound !== undefined && !this.limiter.isTrusted(stripV4Mapped(inbound.raw.remoteAddress));
    socket.on('data', (chunk: Buffer) => {
      if (first) {
        first = false;
        const header = parseProxyHeader(chunk).kind;
        if (header === 'header' || header === 'invalid') {
          this.refuse(socket, 'untrusted_proxy', flow.remoteAddress);
          return;
        }
      }
      let completed = false;
      // Each message is handled as soon as it is framed (StreamFramer.pushEach says why).
      framer.pushEach(chunk, (ev) => {
        switch (ev.type) {
          case 'message':
            completed = true;
            this.deliver(ev.message, flow);
            break;
          case 'ping':
            // RFC 5626 4.4.1: answer a double-CRLF keep-alive with a single CRLF.
            flow.send(CRLF);
            break;
          case 'pong':
            break;
          case 'error':
            this.handler.onParseError(flow, ev.status, ev.reason, ev.partial, ev.fatal);
            // A fatal error is the framer's last event: it reads nothing more.
            if (ev.fatal) flow.close();
            else completed = true;
            break;
        }
      });
      if (inbound && !flow.closed) this.noteProgress(inbound, completed, framer.buffered > 0);
    });
    // Idle connections are closed by the idle timer; keep-alive probes find dead peers of
    // the ones kept (registered flows).
    socket.setKeepAlive(true, 30_000);
    socket.on('error', (err) => this.opts.log.debug({ flow: flow.id, err: err.message }, 'socket error'));
    socket.on('close', () => this.unregister(flow));
    return flow;
  }

  private deliver(message: SipMessage, flow: Flow): void {
    try {
      this.handler.onMessage(message, flow);
    } catch (err) {
      // STYLE 9: nothing on the network path throws past the connection handler.
      this.opts.log.error({ err, flow: flow.id }, 'message handler failed');
    }
  }

  private register(flow: Flow, dialledKey?: string, inbound?: Inbound): void {
    const keys = [remoteKey(flow.transport, flow.remoteAddress, flow.remotePort)];
    if (dialledKey && dialledKey !== keys[0]) keys.push(dialledKey);
    this.flows.set(flow.id, { flow, keys, inbound });
    for (const key of keys) this.byRemote.set(key, flow);
  }

  private unregister(flow: Flow): void {
    const record = this.flows.get(flow.id);
    if (!record) return;
    this.flows.delete(flow.id);
    for (const key of record.keys) if (this.byRemote.get(key) === flow) this.byRemote.delete(key);
    if (record.inbound) this.releaseInbound(record.inbound);
    try {
      this.handler.onFlowClosed(flow);
    } catch (err) {
      this.opts.log.error({ err }, 'flow close handler failed');
    }
  }
}

const CRLF = Buffer.from('\r\n');

function isOnlyCrlf(data: Buffer): boolean {
  for (let i = 0; i < data.length; i++) if (data[i] !== 13 && data[i] !== 10) return false;
  return true;
}

/** One key for every spelling of the peer's address ("[2001:DB8::1]", "2001:db8:0::1"). */
function remoteKey(transport: TransportName, host: string, port: number): string {
  return `${transport}:${stripV4Mapped(hostKey(host))}:${port}`;
}

function handOffKey(socket: Socket): string {
  return `${socket.localPort}|${socket.remoteAddress}|${socket.remotePort}`;
}

/**
 * The UDP socket's resolver: an IP address (every response, and every request to a client's
 * address) is its own answer at once; only a name goes to dns.lookup. dgram resolves each
 * destination of each datagram, and dns.lookup answers even an address on the next tick: a
 * nextTick, its queue's run and a second call per datagram sent (1.7 us a REGISTER call over
 * UDP in the profile of 18:28).
 */
function lookupUnlessAddress(
  hostname: string,
  options: LookupOneOptions | number,
  callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void,
): void {
  const family = isIP(hostname);
  if (family !== 0) callback(null, hostname, family);
  else dnsLookup(hostname, options as LookupOneOptions, callback);
}

function isIp(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(':');
}

function listenOn(server: TcpServer | HttpServer, at: HostPort): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: at.host, port: at.port, backlog: 4096 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
