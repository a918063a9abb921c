import { createSocket, type Socket } from 'node:dgram';

/** A record the test zone answers with. */
export type ZoneRecord =
  | { type: 'SRV'; name: string; priority: number; weight: number; port: number; target: string }
  | { type: 'A'; name: string; address: string };

const TYPE = { A: 1, SRV: 33 } as const;

/**
 * A tiny authoritative DNS server over UDP on loopback (RFC 1035 4.1), for the SRV lookups
 * federation does: the test points `federation.dnsServers` at it. It answers A and SRV
 * questions from its zone and NXDOMAIN for any other name.
 */
export class TestDnsServer {
  readonly queries: string[] = [];
  private constructor(
    private readonly socket: Socket,
    readonly zone: ZoneRecord[],
  ) {}

  static async start(zone: ZoneRecord[]): Promise<TestDnsServer> {
    const socket = createSocket('udp4');
    const server = new TestDnsServer(socket, zone);
    socket.on('message', (msg, rinfo) => {
      const answer = server.answer(msg);
      if (answer) socket.send(answer, rinfo.port, rinfo.address);
    });
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    return server;
  }

  /** `127.0.0.1:PORT`, as federation.dnsServers takes it. */
  get address(): string {
    return `127.0.0.1:${this.socket.address().port}`;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }

  private answer(query: Buffer): Buffer | undefined {
    if (query.length < 12) return undefined;
    const { name, end } = readName(query, 12);
    if (end + 4 > query.length) return undefined;
    const qtype = query.readUInt16BE(end);
    this.queries.push(`${name} ${qtype === TYPE.SRV ? 'SRV' : qtype === TYPE.A ? 'A' : qtype}`);
    const records = this.zone.filter(
      (r) => r.name.toLowerCase() === name.toLowerCase() && TYPE[r.type] === qtype,
    );
    const known = this.zone.some((r) => r.name.toLowerCase() === name.toLowerCase());
    const header = Buffer.alloc(12);
    header.writeUInt16BE(query.readUInt16BE(0), 0);
    // QR, AA, RD copied, RA; RCODE 3 (NXDOMAIN) for a name the zone does not have.
    header.writeUInt16BE(0x8400 | (query.readUInt16BE(2) & 0x0100) | 0x0080 | (known ? 0 : 3), 2);
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(records.length, 6);
    const question = query.subarray(12, end + 4);
    const answers = records.map((r) => {
      const rdata =
        r.type === 'A'
          ? Buffer.from(r.address.split('.').map(Number))
          : Buffer.concat([u16(r.priority), u16(r.weight), u16(r.port), encodeName(r.target)]);
      // Name as a pointer to the question (offset 12).
      return Buffer.concat([u16(0xc00c), u16(TYPE[r.type]), u16(1), u32(60), u16(rdata.length), rdata]);
    });
    return Buffer.concat([header, question, ...answers]);
  }
}

function readName(buf: Buffer, start: number): { name: string; end: number } {
  const labels: string[] = [];
  let i = start;
  while (i < buf.length && buf[i] !== 0) {
    const len = buf[i];
    labels.push(buf.subarray(i + 1, i + 1 + len).toString('latin1'));
    i += 1 + len;
  }
  return { name: labels.join('.'), end: i + 1 };
}

function encodeName(name: string): Buffer {
  const parts = name.replace(/\.$/, '').split('.');
  return Buffer.concat([
    ...parts.map((p) => Buffer.concat([Buffer.from([p.length]), Buffer.from(p, 'latin1')])),
    Buffer.from([0]),
  ]);
}

const u16 = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
};
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
