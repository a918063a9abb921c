/**
 * A protocol fuzzer for a SIP server over TCP (and WebSocket when given a port): valid
 * messages of every method, mutated the ways parsers break (headers dropped, doubled,
 * emptied, reduced to a comma; bytes flipped, inserted, cut; lengths lied about; binary
 * noise; writes split at random places), many per connection. Deterministic for a seed, so
 * a failure found once is found again. Used by the suite (a fixed seed, a bounded count)
 * and by `npm run bench -- --fuzz N`.
 */
import { connect, type Socket } from 'node:net';
import { WebSocket } from 'ws';
import { seededRandom } from '../fixtures/random.js';

export interface FuzzOptions {
  host: string;
  port: number;
  /** A SIP-over-WebSocket port: one message in twenty goes there as a frame. */
  wsPort?: number;
  /** Messages to send in all. */
  count: number;
  seed: number;
  /** Connections open at once (default 4). */
  concurrency?: number;
  /** Messages per connection, at most (default 40). */
  perConnection?: number;
  onProgress?: (sent: number) => void;
}

export interface FuzzResult {
  sent: number;
  connections: number;
  webSocketFrames: number;
  /** Bytes that came back, and how many of them began a SIP response. */
  bytesReceived: number;
  responses: number;
  /** Connections the server refused or reset before we were done (not a failure by itself). */
  resets: number;
}

type Random = () => number;
const pick = <T>(r: Random, items: readonly T[]): T => items[Math.floor(r() * items.length)];
const int = (r: Random, max: number) => Math.floor(r() * max);

const METHODS = [
  'REGISTER',
  'INVITE',
  'MESSAGE',
  'SUBSCRIBE',
  'PUBLISH',
  'NOTIFY',
  'OPTIONS',
  'BYE',
  'ACK',
  'CANCEL',
  'INFO',
  'UPDATE',
  'REFER',
  'PRACK',
];
const USERS = ['alice', 'bob', 'user0', 'nobody', '', '%41lice', 'a'.repeat(300)];
const EXTRA_HEADERS = [
  'Route',
  'Record-Route',
  'Proxy-Require',
  'Require',
  'Supported',
  'Expires',
  'Event',
  'Authorization',
  'Proxy-Authorization',
  'Path',
  'SIP-If-Match',
  'Subscription-State',
  'Content-Type',
  'Date',
  'Accept',
  'Allow-Events',
  'Session-Expires',
  'Refer-To',
  'P-Asserted-Identity',
];
const ODD_VALUES = [
  '',
  ',',
  ' , ,',
  '<>',
  '<sip:>',
  '<sip:127.0.0.1;lr>',
  '<sip:127.0.0.1;lr>, <sip:127.0.0.1:1;lr>',
  'sip:;lr',
  '"unterminated',
  '<sip:a@b;tag=x;tag=y>',
  'Digest username="alice", realm="example.com", nonce="", uri="sip:x", response="00"',
  'Digest ,,,',
  '-1',
  '99999999999999999999',
  'presence;id=',
  'application/pidf+xml; charset=',
  '\u00ff\u00fe',
  'a'.repeat(2000),
  '%00',
];

/** One valid request or response, as the templates mutations start from. */
function validMessage(r: Random, port: number): string {
  const method = pick(r, METHODS);
  const user = pick(r, ['alice', 'bob', 'user1']);
  const branch = `z9hG4bKfz${int(r, 1e9).toString(36)}`;
  const body =
    method === 'MESSAGE' || method === 'PUBLISH'
      ? pick(r, ['hello', '<presence/>', 'x'.repeat(int(r, 600))])
      : '';
  if (r() < 0.1) {
    const status = pick(r, [100, 180, 200, 401, 407, 481, 500]);
    return [
      `SIP/2.0 ${status} Whatever`,
      `Via: SIP/2.0/TCP 127.0.0.1:${port};branch=z9hG4bKparley${int(r, 1e9)}`,
      `From: <sip:${user}@example.com>;tag=${int(r, 1e6)}`,
      `To: <sip:bob@example.com>;tag=${int(r, 1e6)}`,
      `Call-ID: fz${int(r, 1e9)}`,
      `CSeq: 1 ${method}`,
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n');
  }
  const ruri =
    method === 'REGISTER'
      ? 'sip:example.com'
      : pick(r, [`sip:bob@example.com`, `sip:127.0.0.1:${port}`, 'sip:x@elsewhere.example', 'tel:+15551234']);
  const lines = [
    `${method} ${ruri} SIP/2.0`,
    `Via: SIP/2.0/TCP 127.0.0.1:${port};branch=${branch};rport`,
    `From: <sip:${user}@example.com>;tag=${int(r, 1e6)}`,
    `To: <sip:bob@example.com>${r() < 0.3 ? `;tag=${int(r, 1e6)}` : ''}`,
    `Call-ID: fz${int(r, 1e9)}@fuzz`,
    `CSeq: ${int(r, 1000) + 1} ${method}`,
    'Max-Forwards: 70',
    `Contact: <sip:${user}@127.0.0.1:${port};transport=tcp>`,
  ];
  if (method === 'SUBSCRIBE' || method === 'PUBLISH' || method === 'NOTIFY')
    lines.push(`Event: ${pick(r, ['presence', 'parley-contacts', 'presence.winfo', 'dialog'])}`);
  if (method === 'NOTIFY') lines.push('Subscription-State: active;expires=60');
  if (body) lines.push(`Content-Type: ${method === 'PUBLISH' ? 'application/pidf+xml' : 'text/plain'}`);
  lines.push(`Content-Length: ${Buffer.byteLength(body)}`);
  return `${lines.join('\r\n')}\r\n\r\n${body}`;
}

/** A valid message made wrong in one to three ways. */
export function fuzzMessage(r: Random, port: number): Buffer {
  let text = validMessage(r, port);
  const rounds = 1 + int(r, 3);
  for (let i = 0; i < rounds; i++) text = mutateText(r, text);
  let bytes: Buffer = Buffer.from(text, 'latin1');
  if (r() < 0.15) bytes = mutateBytes(r, bytes);
  return bytes;
}

function mutateText(r: Random, text: string): string {
  const end = text.indexOf('\r\n\r\n');
  const head = end < 0 ? text : text.slice(0, end);
  const body = end < 0 ? '' : text.slice(end + 4);
  const lines = head.split('\r\n');
  const at = 1 + int(r, Math.max(1, lines.length - 1));
  switch (int(r, 12)) {
    case 0: // drop a header
      lines.splice(at, 1);
      break;
    case 1: // double a header
      lines.splice(at, 0, lines[at] ?? 'X: y');
      break;
    case 2: // empty or odd value for a header it has
    case 3: {
      const line = lines[at] ?? '';
      const colon = line.indexOf(':');
      if (colon > 0) lines[at] = `${line.slice(0, colon)}: ${pick(r, ODD_VALUES)}`;
      break;
    }
    case 4: // an extra header with an odd value
    case 5:
      lines.splice(at, 0, `${pick(r, EXTRA_HEADERS)}: ${pick(r, ODD_VALUES)}`);
      break;
    case 6: // Content-Length that lies
      return `${lines.filter((l) => !/^content-length:/i.test(l)).join('\r\n')}\r\nContent-Length: ${pick(r, ['0', '1', '5', '-5', 'abc', '100000000', String(body.length + 3)])}\r\n\r\n${body}`;
    case 7: // a broken start line
      lines[0] = pick(r, [
        `${pick(r, METHODS)} sip:bob@example.com SIP/3.0`,
        `${pick(r, METHODS)}  SIP/2.0`,
        'INVITE sip:bob@example.com',
        `${'X'.repeat(int(r, 40))} mailto:a@b SIP/2.0`,
        'SIP/2.0 abc Not A Status',
        `INVITE sip:${pick(r, USERS)}@[::1 SIP/2.0`,
      ]);
      break;
    case 8: // header folding (obsolete but legal LWS) or whitespace games
      lines[at] = `${lines[at] ?? 'X: y'}\r\n ${pick(r, ['folded', ';tag=1', ',', ''])}`;
      break;
    case 9: // a header name with no colon, or a colon alone
      lines.splice(at, 0, pick(r, ['NoColonHere', ':', ': value', 'Via:', 'From:<sip:a@b']));
      break;
    case 10: // cut the message short
      return text.slice(0, int(r, text.length));
    default: // a CSeq whose method does not match, or a number out of range
      lines.splice(
        at,
        0,
        pick(r, [
          'CSeq: 1 OTHER',
          'CSeq: 4294967296 INVITE',
          'Max-Forwards: 999999',
          'Max-Forwards: -1',
          'Expires: -3',
        ]),
      );
  }
  return `${lines.join('\r\n')}\r\n\r\n${body}`;
}

function mutateBytes(r: Random, bytes: Buffer): Buffer {
  const out = Buffer.from(bytes);
  const n = 1 + int(r, 4);
  for (let i = 0; i < n && out.length > 0; i++) out[int(r, out.length)] = int(r, 256);
  if (r() < 0.3)
    return Buffer.concat([out, Buffer.from(Array.from({ length: int(r, 64) }, () => int(r, 256)))]);
  return out;
}

/** Sends `count` fuzzed messages; resolves when every connection is done. */
export async function fuzzServer(opts: FuzzOptions): Promise<FuzzResult> {
  const r = seededRandom(opts.seed);
  const result: FuzzResult = {
    sent: 0,
    connections: 0,
    webSocketFrames: 0,
    bytesReceived: 0,
    responses: 0,
    resets: 0,
  };
  const perConnection = opts.perConnection ?? 40;
  // Messages are taken from one budget as they are written: a connection the server closes
  // early leaves its share to the next.
  const budget = { left: opts.count };
  const worker = async () => {
    while (budget.left > 0) {
      const n = 1 + int(r, perConnection);
      if (opts.wsPort && r() < 0.05) await webSocketSession(opts, r, n, result, budget);
      else await tcpSession(opts, r, n, result, budget);
      opts.onProgress?.(result.sent);
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency ?? 4 }, worker));
  return result;
}

/** One connection's end, whichever comes first: its close, an error (a reset), or 5 s. */
function sessionEnd(result: FuzzResult, close: () => void, done: () => void) {
  const end = {
    finished: false,
    finish: () => {
      if (end.finished) return;
      end.finished = true;
      clearTimeout(timer);
      close();
      done();
    },
    failed: () => {
      result.resets++;
      end.finish();
    },
  };
  const timer = setTimeout(end.finish, 5_000);
  return end;
}

/** The next message of the run's budget, or undefined once it is spent. */
function takeMessage(
  r: Random,
  port: number,
  budget: { left: number },
  result: FuzzResult,
): Buffer | undefined {
  if (budget.left <= 0) return undefined;
  budget.left--;
  result.sent++;
  return fuzzMessage(r, port);
}

function countReceived(result: FuzzResult, d: Buffer): void {
  result.bytesReceived += d.length;
  for (let i = d.indexOf('SIP/2.0 '); i >= 0; i = d.indexOf('SIP/2.0 ', i + 8)) result.responses++;
}

function tcpSession(
  opts: FuzzOptions,
  r: Random,
  n: number,
  result: FuzzResult,
  budget: { left: number },
): Promise<void> {
  return new Promise((done) => {
    result.connections++;
    const socket: Socket = connect(opts.port, opts.host);
    const end = sessionEnd(result, () => socket.destroy(), done);
    socket.on('data', (d: Buffer) => countReceived(result, d));
    socket.on('error', end.failed);
    socket.on('close', end.finish);
    socket.on('connect', async () => {
      for (let i = 0; i < n && !end.finished; i++) {
        const message = takeMessage(r, socket.localPort ?? 0, budget, result);
        if (!message) break;
        if (r() < 0.2) {
          // Split the write: the framer must reassemble whatever the cut.
          const cut = int(r, message.length);
          socket.write(message.subarray(0, cut));
          await new Promise((res) => setImmediate(res));
          socket.write(message.subarray(cut));
        } else socket.write(message);
        if (i % 8 === 7) await new Promise((res) => setImmediate(res));
      }
      // Give the server a moment to answer, then go (sometimes abruptly).
      setTimeout(() => (r() < 0.5 ? end.finish() : socket.end()), 20);
    });
  });
}

function webSocketSession(
  opts: FuzzOptions,
  r: Random,
  n: number,
  result: FuzzResult,
  budget: { left: number },
): Promise<void> {
  return new Promise((done) => {
    result.connections++;
    const ws = new WebSocket(`ws://${opts.host}:${opts.wsPort}`, pick(r, [['sip'], ['sip'], ['nope'], []]));
    const end = sessionEnd(result, () => ws.terminate(), done);
    ws.on('message', (d: Buffer) => countReceived(result, d));
    ws.on('error', end.failed);
    ws.on('close', end.finish);
    ws.on('open', () => {
      for (let i = 0; i < n; i++) {
        const message = takeMessage(r, 0, budget, result);
        if (!message) break;
        result.webSocketFrames++;
        ws.send(r() < 0.5 ? message.toString('latin1') : message, { binary: r() < 0.2 });
      }
      setTimeout(end.finish, 20);
    });
  });
}

export interface FuzzSuiteResult extends FuzzResult {
  seed: number;
  seconds: number;
  /** The server process died (0 or 1). */
  crashes: number;
  /** A well-formed OPTIONS on a new connection was answered after the run. */
  servingAfter: boolean;
  rssStartMiB: number;
  rssEndMiB: number;
}

/** `npm run bench -- --fuzz N`: a Parley server process, N fuzzed messages, its memory before and after. */
export async function benchFuzz(opts: {
  count: number;
  seed?: number;
  log: (line: string) => void;
}): Promise<FuzzSuiteResult> {
  const { startParley, memoryKiB } = await import('./sip.js');
  const seed = opts.seed ?? Date.now() % 1_000_000_007;
  const parley = await startParley({ users: 10, log: opts.log });
  try {
    const rssStart = memoryKiB(parley.pids()).rss;
    opts.log(
      `fuzz: seed ${seed}, ${opts.count.toLocaleString('en-US')} messages to tcp 127.0.0.1:${parley.port}`,
    );
    const started = Date.now();
    let lastLog = 0;
    const result = await fuzzServer({
      host: parley.host,
      port: parley.port,
      count: opts.count,
      seed,
      onProgress: (sent) => {
        if (Date.now() - lastLog > 5_000) {
          lastLog = Date.now();
          opts.log(
            `fuzz: ${sent.toLocaleString('en-US')} sent, RSS ${Math.round(memoryKiB(parley.pids()).rss / 1024)} MiB`,
          );
        }
      },
    });
    const seconds = (Date.now() - started) / 1000;
    const alive = parley.pids().length > 0;
    const servingAfter = alive && (await answersOptions(parley.host, parley.port));
    return {
      ...result,
      seed,
      seconds,
      crashes: alive ? 0 : 1,
      servingAfter,
      rssStartMiB: Math.round(rssStart / 1024),
      rssEndMiB: Math.round(memoryKiB(parley.pids()).rss / 1024),
    };
  } finally {
    await parley.stop();
  }
}

function answersOptions(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, host);
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(false);
    }, 5_000);
    socket.on('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
    socket.on('connect', () => {
      socket.write(
        `OPTIONS sip:${host}:${port} SIP/2.0\r\nVia: SIP/2.0/TCP ${host}:${socket.localPort};branch=z9hG4bKfuzzprobe\r\nFrom: <sip:probe@example.com>;tag=1\r\nTo: <sip:${host}>\r\nCall-ID: fuzz-probe\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n`,
      );
    });
    socket.on('data', (d: Buffer) => {
      if (d.toString('latin1').startsWith('SIP/2.0 ')) {
        clearTimeout(timer);
        socket.destroy();
        resolve(true);
      }
    });
  });
}

export function renderFuzz(r: FuzzSuiteResult): string {
  return [
    `fuzz (seed ${r.seed}): ${r.sent.toLocaleString('en-US')} messages over ${r.connections.toLocaleString('en-US')} connections in ${r.seconds.toFixed(1)} s (${Math.round(r.sent / Math.max(r.seconds, 0.001)).toLocaleString('en-US')}/s)`,
    `  responses ${r.responses.toLocaleString('en-US')}, connections reset ${r.resets.toLocaleString('en-US')}`,
    `  crashes ${r.crashes}, serving after: ${r.servingAfter ? 'yes' : 'NO'}`,
    `  RSS ${r.rssStartMiB} MiB at start, ${r.rssEndMiB} MiB at end`,
  ].join('\n');
}
