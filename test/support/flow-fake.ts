import type { SipMessage } from '../../src/sip/message.js';
import { parseMessage } from '../../src/sip/parser.js';
import type { Flow, TransportName } from '../../src/transport/flow.js';

/** An in-memory flow: records what the layer sends, so transaction tests run without sockets. */
export class FakeFlow implements Flow {
  readonly sent: SipMessage[] = [];
  readonly raw: Buffer[] = [];
  readonly authenticated = new Set<string>();
  readonly peerNames: readonly string[] = [];
  closed = false;
  constructor(
    readonly id = 'f1',
    readonly transport: TransportName = 'tcp',
    readonly remoteAddress = '192.0.2.10',
    readonly remotePort = 40000,
    readonly localAddress = '127.0.0.1',
    readonly localPort = 5060,
  ) {}

  get secure(): boolean {
    return false;
  }

  send(data: Buffer): boolean {
    if (this.closed) return false;
    this.raw.push(data);
    const parsed = parseMessage(data);
    if (parsed.ok) this.sent.push(parsed.message);
    return true;
  }

  close(): void {
    this.closed = true;
  }
}

export function sipMessage(text: string): SipMessage {
  const parsed = parseMessage(Buffer.from(text.replace(/\r?\n/g, '\r\n')));
  if (!parsed.ok) throw new Error(`test message does not parse: ${parsed.reason}`);
  return parsed.message;
}
