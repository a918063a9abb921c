import { createHmac, timingSafeEqual } from 'node:crypto';

const PREFIX = 'f-';
const MAC_CHARS = 16;

/**
 * Flow tokens (RFC 5626 5.3): the user part of a Route URI that names one connection on one
 * server, signed with the pool's shared secret so nobody outside the pool can forge a route
 * into someone else's connection. A front-end publishes them in the Path of its bindings;
 * another front-end routes a request for the endpoint through it with that Route.
 */
export class FlowTokens {
  constructor(
    private readonly secret: Buffer,
    private readonly serverId: string,
  ) {}

  token(flowId: string): string {
    return `${PREFIX}${flowId}.${this.mac(flowId)}`;
  }

  /** The flow id a token names, if this server signed it. */
  verify(user: string | undefined): string | undefined {
    if (!user?.startsWith(PREFIX)) return undefined;
    const dot = user.lastIndexOf('.');
    if (dot < PREFIX.length) return undefined;
    const flowId = user.slice(PREFIX.length, dot);
    const given = Buffer.from(user.slice(dot + 1));
    const expected = Buffer.from(this.mac(flowId));
    return given.length === expected.length && timingSafeEqual(given, expected) ? flowId : undefined;
  }

  private mac(flowId: string): string {
    return createHmac('sha256', this.secret)
      .update(`${this.serverId}|${flowId}`)
      .digest('base64url')
      .slice(0, MAC_CHARS);
  }
}
