import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PGLiteSocketHandler } from '@electric-sql/pglite-socket';
import { analyzeStaleTables } from './analyze.js';
import { processAlive } from './holder.js';
import type { PgliteDatabase } from './pglite.js';

/**
 * PGlite is one process's: a running standard server owns its data folder, yet admin
 * commands (`parley users add`) must still reach the store. The owner records itself in
 * `<dataDir>/parley-db.json`; when it serves the database (serveEmbeddedDatabase) the file
 * also carries a PostgreSQL URL, and openDatabase in another process connects there with
 * the postgres engine instead of opening the folder.
 */
export interface EmbeddedOwner {
  pid: number;
  /**
   * Kernel start time of the owner process (Linux /proc/PID/stat field 22), so a pid
   * reused after a crash or a container restart (a server as pid 1 again) is not taken
   * for the owner. Absent where /proc is not available.
   */
  procStart?: string;
  /** postgresql:// URL of the socket server, when the owner serves the database. */
  url?: string;
  startedAt: string;
}

export const OWNER_FILE = 'parley-db.json';
/** The name libpq and pg expect for a socket in a host directory (port 5432). */
const SOCKET_NAME = '.s.PGSQL.5432';
/** Linux sun_path is 108 bytes including the terminator. */
const MAX_SOCKET_PATH = 103;

function ownerPath(dataDir: string): string {
  return join(dataDir, OWNER_FILE);
}

function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces) start after the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

const OWN_START = processStart(process.pid);

function isAlive(owner: EmbeddedOwner): boolean {
  if (owner.procStart !== undefined) {
    const start = owner.pid === process.pid ? OWN_START : processStart(owner.pid);
    if (start !== undefined) return start === owner.procStart;
  }
  return owner.pid === process.pid || processAlive(owner.pid);
}

/** True when the record is this very process (not an earlier one that had the same pid). */
export function ownedByMe(owner: EmbeddedOwner): boolean {
  return owner.pid === process.pid && (owner.procStart === undefined || owner.procStart === OWN_START);
}

function me(url?: string): EmbeddedOwner {
  const owner: EmbeddedOwner = { pid: process.pid, startedAt: new Date().toISOString() };
  if (OWN_START !== undefined) owner.procStart = OWN_START;
  if (url !== undefined) owner.url = url;
  return owner;
}

/**
 * Reads the owner of a data folder. A file left by a dead process (a crash, kill -9) is
 * removed with its socket, and undefined returned: the folder is free.
 */
export function readEmbeddedOwner(dataDir: string): EmbeddedOwner | undefined {
  const path = ownerPath(dataDir);
  if (!existsSync(path)) return undefined;
  let owner: EmbeddedOwner;
  try {
    owner = JSON.parse(readFileSync(path, 'utf8')) as EmbeddedOwner;
  } catch {
    rmSync(path, { force: true });
    return undefined;
  }
  if (!isAlive(owner)) {
    rmSync(path, { force: true });
    rmSync(join(dataDir, SOCKET_NAME), { force: true });
    return undefined;
  }
  return owner;
}

export function writeEmbeddedOwner(dataDir: string, owner: EmbeddedOwner): void {
  writeFileSync(ownerPath(dataDir), `${JSON.stringify(owner)}\n`, { mode: 0o600 });
}

/**
 * Atomically claims a free data folder for this process (exclusive create, so two
 * processes opening at once cannot both win). Returns the owner that holds it afterwards:
 * this process, or the winner of the race.
 */
export function claimEmbeddedOwner(dataDir: string): EmbeddedOwner {
  const mine = me();
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(ownerPath(dataDir), `${JSON.stringify(mine)}\n`, { mode: 0o600, flag: 'wx' });
      return mine;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = readEmbeddedOwner(dataDir);
      if (owner) return owner;
    }
  }
  throw new Error(`could not claim the data folder ${dataDir}`);
}

/** Removes the owner file if this process wrote it. */
export function releaseEmbeddedOwner(dataDir: string): void {
  const path = ownerPath(dataDir);
  try {
    const owner = JSON.parse(readFileSync(path, 'utf8')) as EmbeddedOwner;
    if (ownedByMe(owner)) rmSync(path, { force: true });
  } catch {
    // Already gone.
  }
}

/** Message types after which a client's session may be handed to someone else (protocol 3.0). */
const SYNC = 0x53; // 'S'
const QUERY = 0x51; // 'Q'
const TERMINATE = 0x58; // 'X'
const NOTIFICATION_RESPONSE = 0x41; // 'A'
const PROTOCOL_3 = 196608;

function isStartupMessage(message: Uint8Array): boolean {
  if (message.length < 8) return false;
  const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
  return view.getInt32(4) === PROTOCOL_3;
}

/**
 * Gives socket clients turns on the single PGlite session. pglite-socket's own queue
 * interleaves messages of different clients between Parse and Sync and ignores in-process
 * callers; here a client owns the session (the same SessionLock in-process queries take)
 * from its first message until a Sync or simple Query leaves no transaction open.
 */
class SessionQueue {
  private owner?: number;
  private release?: () => void;
  private readonly detached = new Set<number>();
  /** Each client's last message in flight: the next one runs after it. */
  private readonly tails = new Map<number, Promise<unknown>>();

  constructor(private readonly db: PgliteDatabase) {}

  /**
   * pglite-socket handles each read of a socket in a task of its own, so a message that
   * completes in a later read (a Bind of a few hundred KiB) is handed over while the client's
   * earlier message still waits for the session: run a client's messages strictly one after
   * another, in the order they were handed over. (Out of order, its Describe and Execute ran
   * before its Bind, and the Bind took the session a second time and never gave it back:
   * every other client of the store waited for good.)
   */
  enqueue(handlerId: number, message: Uint8Array, onData: (data: Uint8Array) => void): Promise<number> {
    const previous = this.tails.get(handlerId);
    const run = previous
      ? previous.then(
          () => this.execute(handlerId, message, onData),
          () => this.execute(handlerId, message, onData),
        )
      : this.execute(handlerId, message, onData);
    const tail = run.catch(() => undefined);
    this.tails.set(handlerId, tail);
    void tail.then(() => {
      if (this.tails.get(handlerId) === tail) this.tails.delete(handlerId);
    });
    return run;
  }

  private async execute(
    handlerId: number,
    message: Uint8Array,
    onData: (data: Uint8Array) => void,
  ): Promise<number> {
    if (this.owner !== handlerId) {
      const release = await this.db.lock.acquire();
      if (this.detached.has(handlerId)) {
        release();
        throw new Error('Handler disconnected');
      }
      this.owner = handlerId;
      this.release = release;
    }
    let bytes = 0;
    const response: Uint8Array[] = [];
    try {
      await this.db.pglite.runExclusive(() =>
        this.db.pglite.execProtocolRawStream(message, {
          onRawData: (data: Uint8Array) => {
            bytes += data.length;
            response.push(data.slice());
            onData(data);
          },
        }),
      );
    } finally {
      this.dispatchNotifications(response);
      const type = message[0];
      const boundary = type === SYNC || type === QUERY || type === TERMINATE || isStartupMessage(message);
      if (boundary && !this.db.pglite.isInTransaction()) this.handOver();
    }
    return bytes;
  }

  private handOver(): void {
    const release = this.release;
    this.owner = undefined;
    this.release = undefined;
    release?.();
  }

  /** NOTIFY from a socket client reaches in-process listeners (the server's change feed). */
  private dispatchNotifications(chunks: Uint8Array[]): void {
    if (chunks.length === 0) return;
    const buf = Buffer.concat(chunks);
    let offset = 0;
    while (offset + 5 <= buf.length) {
      const type = buf[offset];
      const length = buf.readInt32BE(offset + 1);
      const end = offset + 1 + length;
      if (end > buf.length) break;
      if (type === NOTIFICATION_RESPONSE) {
        const body = buf.subarray(offset + 9, end);
        const channelEnd = body.indexOf(0);
        const payloadEnd = body.indexOf(0, channelEnd + 1);
        const channel = body.subarray(0, channelEnd).toString('utf8');
        const payload = body.subarray(channelEnd + 1, payloadEnd).toString('utf8');
        this.db.dispatchNotification(channel, payload);
      }
      offset = end;
    }
  }

  getQueueLength(): number {
    return 0;
  }

  clearQueueForHandler(handlerId: number): void {
    this.detached.add(handlerId);
    this.tails.delete(handlerId);
  }

  /** A client that disconnects mid-transaction has it rolled back, and frees the session. */
  async clearTransactionIfNeeded(handlerId: number): Promise<void> {
    if (this.owner !== handlerId) return;
    try {
      if (this.db.pglite.isInTransaction()) await this.db.pglite.exec('ROLLBACK');
    } finally {
      this.handOver();
    }
  }
}

export interface ServeOptions {
  /**
   * How often the tables that changed much since their last statistics are ANALYZEd
   * (analyze.ts; PGlite runs no autovacuum), whoever changed them: this process or admin
   * commands over the socket. Default every 5 minutes; 0: never.
   */
  analyzeEveryMs?: number;
}

/** Five minutes: an import or a sync that filled the store gets statistics soon after. */
const ANALYZE_EVERY_MS = 5 * 60_000;

export interface EmbeddedDatabaseServer {
  /** postgresql:// URL other processes connect to. */
  readonly url: string;
  close(): Promise<void>;
}

/**
 * Serves an open embedded database to admin commands of other processes, on a unix socket
 * in the data folder (mode 0600: only the server's user may connect; PGlite has no
 * authentication), or on 127.0.0.1 with an ephemeral port when the folder's path is too
 * long for a socket address. Records the URL in the owner file; close() removes both.
 */
export async function serveEmbeddedDatabase(
  db: PgliteDatabase,
  dataDir: string,
  options: ServeOptions = {},
): Promise<EmbeddedDatabaseServer> {
  const existing = readEmbeddedOwner(dataDir);
  if (existing && !ownedByMe(existing)) {
    throw new Error(`data folder ${dataDir} is already owned by process ${existing.pid}`);
  }
  const queue = new SessionQueue(db);
  const handlers = new Set<PGLiteSocketHandler>();
  const server: Server = createServer((socket: Socket) => {
    const handler = new PGLiteSocketHandler({
      // SessionQueue implements the queue manager's public surface the handler uses.
      queryQueue: queue as unknown as ConstructorParameters<typeof PGLiteSocketHandler>[0]['queryQueue'],
      closeOnDetach: true,
    });
    handlers.add(handler);
    const forget = () => handlers.delete(handler);
    handler.addEventListener('close', forget);
    handler.addEventListener('error', forget);
    handler.attach(socket).catch(() => socket.destroy());
  });
  // The socket lives in the data folder; when that path is too long for a socket address,
  // in a private (0700) folder under the system's temporary directory. Never on TCP: PGlite
  // has no authentication, so only the server's own user may reach it.
  let socketDir = dataDir;
  let privateDir: string | undefined;
  if (join(dataDir, SOCKET_NAME).length > MAX_SOCKET_PATH) {
    privateDir = mkdtempSync(join(tmpdir(), 'parley-'));
    chmodSync(privateDir, 0o700);
    socketDir = privateDir;
  }
  const socketPath = join(socketDir, SOCKET_NAME);
  rmSync(socketPath, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  chmodSync(socketPath, 0o600);
  const url = `postgresql://postgres@localhost/postgres?host=${encodeURIComponent(socketDir)}`;
  writeEmbeddedOwner(dataDir, me(url));
  const analyzeEveryMs = options.analyzeEveryMs ?? ANALYZE_EVERY_MS;
  let analyzing: Promise<void> | undefined;
  const analyze =
    analyzeEveryMs > 0
      ? setInterval(() => {
          // A pass still running (a large table) is not started twice.
          analyzing ??= analyzeStaleTables(db).then(
            () => {
              analyzing = undefined;
            },
            () => {
              analyzing = undefined;
            },
          );
        }, analyzeEveryMs)
      : undefined;
  analyze?.unref();
  return {
    url,
    async close() {
      clearInterval(analyze);
      await analyzing;
      for (const handler of handlers) await handler.detach(true).catch(() => {});
      handlers.clear();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(socketPath, { force: true });
      if (privateDir) rmSync(privateDir, { recursive: true, force: true });
      // The process still owns the folder until the database itself closes.
      writeEmbeddedOwner(dataDir, me());
    },
  };
}
