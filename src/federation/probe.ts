import { Resolver } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import { type Socket, connect as tcpConnect } from 'node:net';
import { type PeerCertificate, type TLSSocket, connect as tlsConnect } from 'node:tls';
import { StreamFramer } from '../sip/framer.js';
import { createBranch, createTag } from '../sip/ids.js';
import { SipMessage } from '../sip/message.js';
import { formatNameAddr } from '../sip/nameaddr.js';
import type { FederationPolicy } from './policy.js';
import { resolveFederationEdge, type SrvResolver } from './srv.js';

/** The steps of `parley federation test`, in the order they run. */
export type ProbeStepName = 'policy' | 'resolve' | 'connect' | 'tls' | 'certificate' | 'options';

export interface ProbeStep {
  step: ProbeStepName;
  ok: boolean;
  /** What was found, or why it failed, in words an administrator acts on. */
  detail: string;
  ms: number;
}

export interface ProbeResult {
  domain: string;
  /** Every connectivity step passed (the policy step only informs). */
  ok: boolean;
  allowed: boolean;
  target?: { host: string; port: number; via: 'pinned edge' | 'SRV' | 'clearinghouse' };
  steps: ProbeStep[];
}

export interface ProbeOptions {
  domain: string;
  /** Our own domain (the From of the OPTIONS). */
  ourDomain: string;
  policy: FederationPolicy;
  /** Our edge's certificate and key (mutual TLS) and the CA bundle partners are checked against. */
  tls: { cert: string; key: string; ca?: string };
  dnsServers?: string[];
  resolver?: SrvResolver;
  timeoutMs?: number;
}

/** The port of `_sipfederationtls._tcp` when an edge is pinned by name only. */
const FEDERATION_PORT = 5061;

/**
 * What an administrator asks first when federation does not work: is the partner allowed,
 * where is its edge, can we reach it, does its certificate check out against our CA bundle
 * and name that edge, does it accept our certificate and answer SIP. Each step says what it
 * found; the first failure stops the run and says why.
 */
export async function probeFederationPartner(opts: ProbeOptions): Promise<ProbeResult> {
  const timeoutMs = opts.timeoutMs ?? 5_000;
  const steps: ProbeStep[] = [];
  const result: ProbeResult = { domain: opts.domain, ok: false, allowed: false, steps };
  const run = async <T>(step: ProbeStepName, fn: () => Promise<{ value: T; detail: string }>) => {
    const started = performance.now();
    try {
      const { value, detail } = await fn();
      steps.push({ step, ok: true, detail, ms: Math.round(performance.now() - started) });
      return value;
    } catch (err) {
      steps.push({
        step,
        ok: false,
        detail: (err as Error).message,
        ms: Math.round(performance.now() - started),
      });
      return undefined;
    }
  };

  const route = opts.policy.outbound(opts.domain);
  result.allowed = route.kind !== 'refused';
  steps.push({
    step: 'policy',
    ok: result.allowed,
    detail:
      route.kind === 'refused'
        ? `${route.warning}: the edge refuses it until \`parley federation allow add ${opts.domain}\` (testing the connection anyway)`
        : `allowed${route.edgeFqdn ? `, pinned to ${route.edgeFqdn}` : ''}`,
    ms: 0,
  });

  type Target = NonNullable<ProbeResult['target']>;
  const target = await run<Target>('resolve', async () => {
    if (route.kind === 'direct' && route.edgeFqdn) {
      const t = { host: route.edgeFqdn, port: FEDERATION_PORT, via: 'pinned edge' as const };
      return { value: t, detail: `pinned edge ${t.host}:${t.port}` };
    }
    const resolver = opts.resolver ?? dnsResolver(opts.dnsServers);
    let srv: Awaited<ReturnType<typeof resolveFederationEdge>>;
    try {
      srv = await resolveFederationEdge(opts.domain, resolver);
    } catch (err) {
      throw new Error(
        `DNS lookup of _sipfederationtls._tcp.${opts.domain} failed: ${(err as Error).message}`,
      );
    }
    if (srv.length > 0) {
      const t = { host: srv[0].host, port: srv[0].port, via: 'SRV' as const };
      return {
        value: t,
        detail: `_sipfederationtls._tcp.${opts.domain} -> ${srv.map((s) => `${s.host}:${s.port}`).join(', ')}`,
      };
    }
    if (route.kind === 'direct' && route.fallback) {
      const t = { host: route.fallback, port: FEDERATION_PORT, via: 'clearinghouse' as const };
      return { value: t, detail: `no SRV record; through the clearinghouse ${t.host}:${t.port}` };
    }
    throw new Error(
      `no _sipfederationtls._tcp.${opts.domain} SRV record: ask the partner to publish one, or pin its edge with \`parley federation allow add ${opts.domain} --edge FQDN\``,
    );
  });
  if (!target) return result;
  result.target = target;

  const socket = await run('connect', async () => {
    const s = await connectTcp(target.host, target.port, timeoutMs);
    return { value: s, detail: `TCP to ${s.remoteAddress}:${s.remotePort}` };
  });
  if (!socket) return result;

  const secure = await run('tls', async () => {
    const t = await handshake(socket, target.host, opts.tls, timeoutMs);
    const peer = t.getPeerCertificate();
    return {
      value: t,
      detail: `${t.getProtocol()}; certificate ${subjectOf(peer)} issued by ${issuerOf(peer)}, valid until ${peer.valid_to}; our certificate accepted`,
    };
  });
  if (!secure) {
    socket.destroy();
    return result;
  }

  const named = await run('certificate', async () => {
    const names = certificateNames(secure.getPeerCertificate());
    if (!names.includes(target.host.toLowerCase()))
      throw new Error(`the certificate names ${names.join(', ') || 'nothing'}, not ${target.host}`);
    return { value: true, detail: `names ${target.host} (${names.join(', ')})` };
  });
  if (!named) {
    secure.destroy();
    return result;
  }

  const answered = await run('options', async () => {
    const status = await sendOptions(secure, target, opts, timeoutMs);
    if (status.code >= 300)
      throw new Error(
        `the partner's edge answered ${status.code} ${status.reason}${status.warning ? ` (${status.warning})` : ''}: it may not allow ${opts.ourDomain} yet`,
      );
    return { value: status, detail: `OPTIONS answered ${status.code} ${status.reason}` };
  });
  secure.destroy();
  result.ok = Boolean(answered);
  return result;
}

function dnsResolver(servers: string[] | undefined): SrvResolver {
  const resolver = new Resolver({ timeout: 2_000, tries: 2 });
  if (servers && servers.length > 0) resolver.setServers(servers);
  return resolver;
}

function connectTcp(host: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer from ${host}:${port} within ${timeoutMs} ms (firewall?)`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const why =
        err.code === 'ECONNREFUSED'
          ? 'connection refused (nothing listens there)'
          : err.code === 'ENOTFOUND'
            ? `${host} does not resolve`
            : err.message;
      reject(new Error(`${host}:${port}: ${why}`));
    });
  });
}

function handshake(
  socket: Socket,
  servername: string,
  files: { cert: string; key: string; ca?: string },
  timeoutMs: number,
): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const t = tlsConnect({
      socket,
      servername,
      cert: readFileSync(files.cert),
      key: readFileSync(files.key),
      ca: files.ca ? readFileSync(files.ca) : undefined,
      // The name is checked in its own step, to say which names the certificate carries.
      checkServerIdentity: () => undefined,
    });
    const timer = setTimeout(() => {
      t.destroy();
      reject(new Error(`TLS handshake not finished within ${timeoutMs} ms`));
    }, timeoutMs);
    t.once('secureConnect', () => {
      // TLS 1.3 sends the server's verdict on our certificate after the handshake: wait a
      // moment for an alert before declaring it accepted.
      setTimeout(() => {
        clearTimeout(timer);
        if (t.destroyed)
          reject(
            new Error('the partner closed the connection after the handshake: it refused our certificate'),
          );
        else resolve(t);
      }, 100);
    });
    t.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new Error(tlsFailure(err)));
    });
  });
}

/** OpenSSL's codes in an administrator's words. */
function tlsFailure(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
      return `the partner's certificate is not signed by a CA in our bundle (tls.ca): ${err.message}`;
    case 'CERT_HAS_EXPIRED':
      return "the partner's certificate has expired";
    case 'CERT_NOT_YET_VALID':
      return "the partner's certificate is not valid yet (check both clocks)";
    default:
      if (/alert (bad certificate|certificate unknown|unknown ca|certificate required)/i.test(err.message))
        return `the partner refused our certificate: ${err.message}`;
      return `TLS failed: ${err.message}`;
  }
}

function certificateNames(cert: PeerCertificate): string[] {
  const names = (cert.subjectaltname ?? '')
    .split(/,\s*/)
    .filter((n) => n.startsWith('DNS:'))
    .map((n) => n.slice(4).toLowerCase());
  const cn = typeof cert.subject?.CN === 'string' ? cert.subject.CN.toLowerCase() : undefined;
  return names.length > 0 ? names : cn ? [cn] : [];
}

const subjectOf = (c: PeerCertificate) => (typeof c.subject?.CN === 'string' ? c.subject.CN : 'with no CN');
const issuerOf = (c: PeerCertificate) => (typeof c.issuer?.CN === 'string' ? c.issuer.CN : 'an unnamed CA');

/** An OPTIONS to the edge itself (RFC 3261 11): it answers for itself, whatever its users. */
function sendOptions(
  socket: TLSSocket,
  edge: { host: string; port: number },
  opts: ProbeOptions,
  timeoutMs: number,
): Promise<{ code: number; reason: string; warning?: string }> {
  return new Promise((resolve, reject) => {
    const callId = `${createTag()}@${opts.ourDomain}`;
    const request = SipMessage.request('OPTIONS', `sip:${edge.host}:${edge.port};transport=tls`, [
      {
        name: 'via',
        value: `SIP/2.0/TLS ${socket.localAddress}:${socket.localPort};branch=${createBranch()}`,
      },
      { name: 'max-forwards', value: '70' },
      { name: 'from', value: formatNameAddr({ uri: `sip:${opts.ourDomain}`, params: { tag: createTag() } }) },
      { name: 'to', value: formatNameAddr({ uri: `sip:${edge.host}`, params: {} }) },
      { name: 'call-id', value: callId },
      { name: 'cseq', value: '1 OPTIONS' },
      { name: 'accept', value: 'application/sdp' },
    ]);
    const framer = new StreamFramer();
    const timer = setTimeout(
      () => reject(new Error(`no answer to OPTIONS within ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.on('data', (chunk: Buffer) => {
      for (const ev of framer.push(chunk)) {
        if (ev.type !== 'message' || ev.message.isRequest || ev.message.callId !== callId) continue;
        if (ev.message.status < 200) continue;
        clearTimeout(timer);
        resolve({
          code: ev.message.status,
          reason: ev.message.reason,
          warning: ev.message.get('warning') || undefined,
        });
      }
    });
    socket.once('close', () => {
      clearTimeout(timer);
      reject(new Error('the partner closed the connection without answering OPTIONS'));
    });
    socket.write(request.toBuffer());
  });
}
