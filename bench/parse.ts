/**
 * Micro benchmark of the SIP message core: parse a typical REGISTER and MESSAGE, touch the
 * headers a registrar/proxy reads, re-serialize. Prints messages per second; no assertions.
 *
 *   node dist/bench/parse.js [iterations]
 */
import { parseMessage } from '../src/sip/parser.js';

const REGISTER = Buffer.from(
  [
    'REGISTER sip:example.com SIP/2.0',
    'Via: SIP/2.0/TCP 192.0.2.10:50123;branch=z9hG4bK-524287-1---a7c3d1f0e2b4;rport',
    'Max-Forwards: 70',
    'Contact: <sip:alice@192.0.2.10:50123;transport=tcp;ob>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=1;expires=3600',
    'To: "Alice" <sip:alice@example.com>',
    'From: "Alice" <sip:alice@example.com>;tag=e9b8f2a1',
    'Call-ID: ZGY1MjM0ZmUzYjQ5NjI5ZDc1ZjQ0MmNmYmE2MTJkNWQ',
    'CSeq: 2 REGISTER',
    'Expires: 3600',
    'Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE',
    'Supported: replaces, outbound, path, gruu',
    'User-Agent: Parley Bench 1.0',
    'Authorization: Digest username="alice",realm="example.com",nonce="5f2c1b7a9e",uri="sip:example.com",response="0a4f113b7e1c2d3f4a5b6c7d8e9f0a1b",algorithm=MD5,cnonce="abc123",qop=auth,nc=00000001',
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n'),
);

const BODY = 'Hello Bob, are we still meeting at 3pm? Let me know. Ünïcödé too.';
const MESSAGE = Buffer.from(
  [
    'MESSAGE sip:bob@example.com SIP/2.0',
    'Via: SIP/2.0/TLS 192.0.2.10:50124;branch=z9hG4bK-524287-1---b8d4e2a1f3c5;rport',
    'Max-Forwards: 70',
    'Route: <sip:192.0.2.1:5061;transport=tls;lr>',
    'To: <sip:bob@example.com>',
    'From: "Alice" <sip:alice@example.com>;tag=4fa3b2c1',
    'Call-ID: NmM3YjE5ZDI4ZTRhNDFiMmE5ZjA1MmJjNDdkYTk4ZmU',
    'CSeq: 1 MESSAGE',
    'Content-Type: text/plain;charset=UTF-8',
    'User-Agent: Parley Bench 1.0',
    `Content-Length: ${Buffer.byteLength(BODY)}`,
    '',
    BODY,
  ].join('\r\n'),
);

function pass(buf: Buffer, iterations: number, touch: boolean): number {
  let sink = 0;
  for (let i = 0; i < iterations; i++) {
    const result = parseMessage(buf);
    if (!result.ok) throw new Error(result.reason);
    const m = result.message;
    if (touch) {
      // What the transaction layer and registrar read, plus a proxy-style edit.
      sink += m.topVia.branch?.length ?? 0;
      sink += m.cseq.seq + m.callId.length + (m.from.tag?.length ?? 0) + m.to.uri.length;
      sink += m.contacts.length + (m.maxForwards ?? 0);
      m.set('max-forwards', String((m.maxForwards ?? 70) - 1));
    }
    sink += m.toBuffer().length;
  }
  return sink;
}

/** Best of three runs, by wall clock and by CPU time (steadier on a shared machine). */
function run(name: string, buf: Buffer, iterations: number, touch: boolean): void {
  let bestWall = Number.POSITIVE_INFINITY;
  let bestCpu = Number.POSITIVE_INFINITY;
  for (let round = 0; round < 3; round++) {
    const cpu = process.cpuUsage();
    const started = process.hrtime.bigint();
    pass(buf, iterations, touch);
    bestWall = Math.min(bestWall, Number(process.hrtime.bigint() - started) / 1e9);
    const used = process.cpuUsage(cpu);
    bestCpu = Math.min(bestCpu, (used.user + used.system) / 1e6);
  }
  const wallRate = Math.round(iterations / bestWall);
  const cpuRate = Math.round(iterations / bestCpu);
  const label = `${name} ${touch ? 'parse+access+serialize' : 'parse+serialize'}`;
  console.log(
    `${label.padEnd(34)} ${wallRate.toLocaleString('en-US').padStart(10)} msg/s wall ${cpuRate
      .toLocaleString('en-US')
      .padStart(10)} msg/s cpu  (${(1e6 / cpuRate).toFixed(2)} µs cpu/msg)`,
  );
}

const iterations = Number(process.argv[2] ?? 100_000);
for (const [name, buf] of [
  ['REGISTER', REGISTER],
  ['MESSAGE', MESSAGE],
] as const) {
  pass(buf, Math.min(20_000, iterations), true); // warm-up: let the JIT settle
  run(name, buf, iterations, false);
  run(name, buf, iterations, true);
}
