import { BlockList, isIP } from 'node:net';
import type { ParleyConfig } from '../ops/config.js';
import type { Flow } from '../transport/flow.js';
import { addToBlockList } from '../transport/limits.js';

/**
 * Server peers (`trustedPeers`, docs/edge.md): the edge, directors and other homes, whose
 * requests are routed without a challenge. In `security: high` a peer is known by its address
 * and its certificate together (mutual TLS between servers): the transport refuses a TLS
 * connection from a peer address that presents no certificate valid for `tls.ca`, there are
 * no plain TCP listeners to arrive on, and a flow is trusted only when it is TLS with a
 * verified certificate (a WSS connection from the same address is a client's).
 */
export interface ServerPeers {
  /** Is this address a server peer's (for the transport's handshake check)? */
  isPeerAddress(address: string): boolean;
  /** Are requests on this flow a server peer's? */
  isTrustedPeer(flow: Pick<Flow, 'remoteAddress' | 'transport' | 'peerNames'>): boolean;
}

export function serverPeers(
  config: Pick<ParleyConfig, 'trustedPeers' | 'highSecurity'>,
): ServerPeers | undefined {
  if (config.trustedPeers.length === 0) return undefined;
  const list = new BlockList();
  for (const entry of config.trustedPeers) addToBlockList(list, entry);
  const isPeerAddress = (address: string): boolean => {
    const family = isIP(address);
    return family !== 0 && list.check(address, family === 6 ? 'ipv6' : 'ipv4');
  };
  return {
    isPeerAddress,
    isTrustedPeer: config.highSecurity
      ? (flow) => flow.transport === 'tls' && flow.peerNames.length > 0 && isPeerAddress(flow.remoteAddress)
      : (flow) => isPeerAddress(flow.remoteAddress),
  };
}
