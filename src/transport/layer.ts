import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import {
  type AddressInfo,
  createServer as createTcpServer,
  type Socket,
  type Server as TcpServer,
  connect as tcpConnect,
} from 'node:net';
import { createServer as createTlsServer, type TLSSocket, connect as tlsConnect } from 'node:tls';
import type { Logger } from 'pino';
import { WebSocketServer } from 'ws';
import { StreamFramer } from '../sip/framer.js';
import type { SipMessage } from '../sip/message.js';
import { parseMessage } from '../sip/parser.js';
import { type Flow, SocketFlow, type TransportName, WebSocketFlow } from './flow.js';
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

export interface TransportLayerOptions {
  listen: Partial<Record<TransportName, HostPort>>;
  tls?: TlsMaterial;
  maxMessageSize?: number;
  log: Logger;
}

export interface TransportHandler {
  onMessage(message: SipMessage, flow: Flow): void;
  /** A message that could not be parsed: answer it (when it can be) with the error's status. */
  onParseError(flow: Flow, status: number, reason: string, partial: unknown, fatal: boolean): void;
  onFlowClosed(flow: Flow): void;
}

export interface Listening {
  transport: TransportName;
  host: string;
  port: number;
}

/**
 * Owns every listening socket and every connection. Upper layers see only SIP messages
 * arriving on flows, and ask for a flow to a target when they must open one.
 */
export class TransportLayer {
  private readonly flows = new Map<string, Flow>();
  /** transport:host:port -> flow, for reusing connections to a peer (RFC 3261 18.1.1). */
  private readonly byRemote = new Map<string, Flow>();
  private readonly pendingConnects = new Map<string, Promise<Flow>>();
  private readonly servers: Array<TcpServer | HttpServer> = [];
  private readonly wsServers: WebSocketServer[] = [];
  readonly listening: Listening[] = [];
  private accepting = true;
  private handler!: TransportHandler;

  constructor(private readonly opts: TransportLayerOptions) {}

  async start(handler: TransportHandler): Promise<Listening[]> {
    this.handler = handler;
    const { listen, tls } = this.opts;
    if (listen.tcp) await this.listenStream('tcp', createTcpServer({ noDelay: true }), listen.tcp);
    if (listen.tls) {
      if (!tls) throw new Error('listen.tls needs tls.cert and tls.key');
      const server = createTlsServer({
        cert: tls.cert,
        key: tls.key,
        ca: tls.ca,
        requestCert: Boolean(tls.requireClientCert),
        rejectUnauthorized: Boolean(tls.requireClientCert),
      });
      await this.listenStream('tls', server, listen.tls, 'secureConnection');
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

  flow(id: string): Flow | undefined {
    return this.flows.get(id);
  }

  get flowCount(): number {
    return this.flows.size;
  }

  allFlows(): IterableIterator<Flow> {
    return this.flows.values();
  }

  /** A live flow to the peer, reusing an existing connection when there is one. */
  findFlow(transport: TransportName, host: string, port: number): Flow | undefined {
    const flow = this.byRemote.get(remoteKey(transport, host, port));
    return flow && !flow.closed ? flow : undefined;
  }

  /** Opens (or reuses) a stream connection to a peer. WebSocket peers cannot be dialled. */
  connect(transport: TransportName, host: string, port: number, servername?: string): Promise<Flow> {
    const existing = this.findFlow(transport, host, port);
    if (existing) return Promise.resolve(existing);
    if (transport === 'ws' || transport === 'wss') {
      return Promise.reject(new Error(`cannot open a ${transport} connection to ${host}:${port}`));
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
    for (const wss of this.wsServers) wss.close();
    for (const flow of this.flows.values()) flow.close();
    this.flows.clear();
    this.byRemote.clear();
  }

  private async listenStream(
    transport: 'tcp' | 'tls',
    server: TcpServer,
    at: HostPort,
    event: 'connection' | 'secureConnection' = 'connection',
  ): Promise<void> {
    server.on(event, (socket: Socket) => {
      if (!this.accepting) {
        socket.destroy();
        return;
      }
      socket.setNoDelay(true);
      this.adoptSocket(transport, socket);
    });
    server.on('tlsClientError', (err: Error) =>
      this.opts.log.debug({ err: err.message }, 'TLS handshake failed'),
    );
    server.on('error', (err) => this.opts.log.error({ err }, 'listener error'));
    await listenOn(server, at);
    this.servers.push(server);
    this.listening.push({ transport, host: at.host, port: (server.address() as AddressInfo).port });
  }

  private async listenWebSocket(transport: 'ws' | 'wss', server: HttpServer, at: HostPort): Promise<void> {
    const wss = new WebSocketServer({
      server,
      maxPayload: this.opts.maxMessageSize ?? 65_535,
      // RFC 7118 4: the client asks for the "sip" subprotocol.
      handleProtocols: (protocols) => (protocols.has('sip') ? 'sip' : false),
    });
    wss.on('connection', (ws, req) => {
      if (!this.accepting) {
        ws.terminate();
        return;
      }
      const socket = req.socket;
      const flow = new WebSocketFlow(
        transport,
        ws,
        socket.remoteAddress ?? '',
        socket.remotePort ?? 0,
        socket.localAddress ?? '',
        socket.localPort ?? 0,
      );
      this.register(flow);
      ws.on('message', (data: Buffer | ArrayBuffer | Buffer[]) => {
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
    await listenOn(server, at);
    this.servers.push(server);
    this.wsServers.push(wss);
    this.listening.push({ transport, host: at.host, port: (server.address() as AddressInfo).port });
  }

  private adoptSocket(transport: 'tcp' | 'tls', socket: Socket, dialledKey?: string): Flow {
    const flow = new SocketFlow(transport, socket);
    if (transport === 'tls') flow.peerNames = peerCertificateNames(socket as TLSSocket);
    this.register(flow, dialledKey);
    const framer = new StreamFramer({ maxMessageSize: this.opts.maxMessageSize });
    socket.on('data', (chunk: Buffer) => {
      const events = framer.push(chunk);
      for (let i = 0; i < events.length; i++) {
        const ev = events[i];
        switch (ev.type) {
          case 'message':
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
            if (ev.fatal) {
              flow.close();
              return;
            }
            break;
        }
      }
    });
    // Idle connections without registrations are closed by the upper layer's timers; this
    // only bounds half-open sockets that never speak.
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

  private register(flow: Flow, dialledKey?: string): void {
    this.flows.set(flow.id, flow);
    this.byRemote.set(remoteKey(flow.transport, flow.remoteAddress, flow.remotePort), flow);
    if (dialledKey) this.byRemote.set(dialledKey, flow);
  }

  private unregister(flow: Flow): void {
    if (!this.flows.delete(flow.id)) return;
    for (const [key, f] of this.byRemote) if (f === flow) this.byRemote.delete(key);
    try {
      this.handler.onFlowClosed(flow);
    } catch (err) {
      this.opts.log.error({ err }, 'flow close handler failed');
    }
  }
}

const CRLF = Buffer.from('\r\n');

function remoteKey(transport: TransportName, host: string, port: number): string {
  const bare = host.startsWith('[') ? host.slice(1, -1) : host;
  return `${transport}:${bare.toLowerCase()}:${port}`;
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
