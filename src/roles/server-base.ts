import type { Logger } from 'pino';
import type { ParleyConfig } from '../ops/config.js';
import type { Database } from '../store/sql.js';
import type { RoleStore } from './lifecycle.js';

/** What every piece of a home server's start (server.ts) shares: its settings, logs and store. */
export interface ServerBase {
  readonly config: ParleyConfig;
  /** The SIP domain, lower case. */
  readonly domain: string;
  readonly log: Logger;
  /** The `sip` component's log: transport, transactions, proxy. */
  readonly sipLog: Logger;
  readonly db: Database;
  /** Run newest first when the server closes or its start fails (RoleStore). */
  readonly cleanups: RoleStore['cleanups'];
  /** A member of a pool: a front-end, or a worker of a clustered server (src/roles/cluster.ts). */
  readonly pool: boolean;
  readonly workerIndex: number | undefined;
}
