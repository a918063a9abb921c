import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { ParleyConfig } from '../ops/config.js';
import { SERVERS_CHANNEL } from '../ops/drain.js';
import { type EmbeddedDatabaseServer, serveEmbeddedDatabase } from '../store/embedded.js';
import { PgliteDatabase } from '../store/pglite.js';
import type { Database } from '../store/sql.js';
import type { TlsMaterial } from '../transport/layer.js';
import type { ParleyServer } from './parley-server.js';

/**
 * What every role's start (server.ts, edge.ts) holds from first to last: its store, the
 * socket server that lets admin commands reach an embedded one, and the cleanups the start
 * registers on the way (listeners, hooks). A start that fails half-way abandons them; a
 * running server closes them after its own layers.
 */
export class RoleStore {
  /** Run newest first when the server closes or its start fails. */
  readonly cleanups: Array<() => Promise<void> | void> = [];
  private embedded: EmbeddedDatabaseServer | undefined;

  private constructor(readonly db: Database) {}

  /**
   * Takes the store a role opened. `ownFolder`: a data folder opened by this process must be
   * its own (openDatabase reached another server's socket instead: that server runs there).
   */
  static async own(db: Database, config: ParleyConfig, ownFolder = true): Promise<RoleStore> {
    if (ownFolder && !config.database.url && !(db instanceof PgliteDatabase)) {
      await db.close();
      throw new Error(`another Parley server already runs on the data folder ${config.database.dataDir}`);
    }
    return new RoleStore(db);
  }

  /** Serves an embedded store to admin commands while the server runs (store/embedded.ts). */
  async serve(dataDir: string): Promise<void> {
    if (this.db instanceof PgliteDatabase) this.embedded = await serveEmbeddedDatabase(this.db, dataDir);
  }

  /** A stop request for this server (`parley server drain`, SERVERS_CHANNEL) drains it. */
  async followDrainRequests(server: ParleyServer, log: Logger): Promise<void> {
    this.cleanups.push(
      await this.db.listen(SERVERS_CHANNEL, (id) => {
        if (id === server.config.serverId)
          server.drain().catch((err: unknown) => log.error({ err }, 'drain failed'));
      }),
    );
  }

  /** The cleanups newest first, then the socket server and the store; a failure is thrown. */
  async close(): Promise<void> {
    for (const c of this.cleanups.reverse()) await c();
    if (this.embedded) await this.embedded.close();
    await this.db.close();
  }

  /** After a failed start: closes all it can and ignores failures (the start's error is the one to report). */
  async abandon(): Promise<void> {
    for (const c of this.cleanups.reverse()) await Promise.resolve(c()).catch(() => undefined);
    if (this.embedded) await this.embedded.close().catch(() => undefined);
    await this.db.close().catch(() => undefined);
  }
}

export function readTls(config: ParleyConfig): TlsMaterial | undefined {
  if (!config.tls) return undefined;
  return {
    cert: readFileSync(config.tls.cert),
    key: readFileSync(config.tls.key),
    ca: config.tls.ca ? readFileSync(config.tls.ca) : undefined,
    requireClientCert: config.tls.requireClientCert,
  };
}

/** A promise and the function that resolves it (a server's `drained`). */
export function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}
