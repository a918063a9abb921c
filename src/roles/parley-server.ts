import type { ParleyConfig } from '../ops/config.js';
import type { ParleyMetrics } from '../ops/metrics.js';
import type { Database } from '../store/sql.js';
import type { Listening } from '../transport/layer.js';

/** A running server of any role, as `server start`, the tests and the other roles see it. */
export interface ParleyServer {
  readonly config: ParleyConfig;
  readonly listening: Listening[];
  readonly httpUrl: string;
  readonly metrics: ParleyMetrics;
  readonly db: Database;
  /** Resolves once a drain has emptied the server (or its timeout passed). */
  readonly drained: Promise<void>;
  /** Stop taking new connections and tell endpoints to go elsewhere; resolves when empty or after the timeout. */
  drain(timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}
