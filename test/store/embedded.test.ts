import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedDatabaseServer, OWNER_FILE, serveEmbeddedDatabase } from '../../src/store/embedded.js';
import { DataFolderInUseError, openDatabase } from '../../src/store/open.js';
import { createPgliteDatabase, PgliteDatabase } from '../../src/store/pglite.js';
import type { Database } from '../../src/store/sql.js';
import { migratedDataFolder, queryNumber } from '../support/database.js';
import { scratchDir } from '../support/scratch.js';

const run = promisify(execFile);

// Folders start as copies of the migrated store template (test/support/database.ts): these
// tests are about owning and serving a folder, not about making its store.

describe('embedded database served to other processes', () => {
  let dataDir: string;
  let db: Database;
  let server: EmbeddedDatabaseServer;

  beforeAll(async () => {
    dataDir = migratedDataFolder(mkdtempSync(join(tmpdir(), 'parley-embedded-')));
    db = await openDatabase({ dataDir });
    expect(db).toBeInstanceOf(PgliteDatabase);
    server = await serveEmbeddedDatabase(db as PgliteDatabase, dataDir);
  });

  afterAll(async () => {
    await server?.close();
    await db?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('lets a second open in the same process go through the socket', async () => {
    const remote = await openDatabase({ dataDir });
    try {
      expect(remote.engine).toBe('postgres');
      await remote.query("INSERT INTO homes (name, kind, address) VALUES ('local', 'standard', 'sip:local')");
      expect(await queryNumber(db, 'SELECT count(*) AS n FROM homes')).toBe(1);
    } finally {
      await remote.close();
    }
  });

  it('keeps a socket transaction apart from in-process queries', async () => {
    const remote = await openDatabase({ dataDir, migrate: false });
    try {
      let inside!: () => void;
      const gate = new Promise<void>((r) => {
        inside = r;
      });
      const tx = remote.transaction(async (t) => {
        await t.query("INSERT INTO homes (name, kind, address) VALUES ('tx', 'pool', 'sip:tx')");
        inside();
        await new Promise((r) => setTimeout(r, 50));
        throw new Error('roll back');
      });
      await gate;
      // Runs after the socket transaction ends, so never sees its uncommitted row.
      const seen = await db.query("SELECT 1 FROM homes WHERE name = 'tx'");
      expect(seen.rows).toHaveLength(0);
      await expect(tx).rejects.toThrow('roll back');
      const after = await db.query("SELECT 1 FROM homes WHERE name = 'tx'");
      expect(after.rows).toHaveLength(0);
    } finally {
      await remote.close();
    }
  });

  it('serves several socket clients and in-process callers at once without mixing their statements', async () => {
    const a = await openDatabase({ dataDir, migrate: false });
    const b = await openDatabase({ dataDir, migrate: false });
    try {
      await db.query(
        "INSERT INTO homes (name, kind, address) VALUES ('mix', 'pool', 'sip:mix') ON CONFLICT DO NOTHING",
      );
      const work: Promise<unknown>[] = [];
      for (let i = 0; i < 40; i++) {
        const who = [a, b, db][i % 3];
        // Parameterized statements (Parse/Bind/Execute/Sync) checked against their own parameters.
        work.push(
          who
            .query<{ v: string }>('SELECT $1::text AS v', [`q${i}`])
            .then((r) => expect(r.rows).toEqual([{ v: `q${i}` }])),
        );
        work.push(
          who
            .transaction(async (tx) => {
              await tx.query('INSERT INTO users (aor, home) VALUES ($1, $2)', [`mix${i}@example.com`, 'mix']);
              if (i % 4 === 0) throw new Error('rollback');
            })
            .catch((err: Error) => expect(err.message).toBe('rollback')),
        );
      }
      await Promise.all(work);
      expect(await queryNumber(db, "SELECT count(*) AS n FROM users WHERE home = 'mix'")).toBe(30);
      await db.exec("DELETE FROM users WHERE home = 'mix'");
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('runs the messages of a client in order when a statement completes in a later read while the session is busy', async () => {
    // pglite-socket handles each read of a socket in a task of its own. A client whose Parse
    // waits for the session (another client is in a transaction) and whose Bind arrives in a
    // later read (a mirror batch of a few hundred KiB does) must still be run Parse, Bind,
    // Describe, Execute, Sync; and the session must be free for everyone afterwards.
    const holder = await openDatabase({ dataDir, migrate: false });
    const raw = await rawProtocolClient(socketPathOf(server.url));
    try {
      let inside!: () => void;
      let finish!: () => void;
      const began = new Promise<void>((r) => {
        inside = r;
      });
      const hold = new Promise<void>((r) => {
        finish = r;
      });
      const tx = holder.transaction(async (t) => {
        await t.query('SELECT 1');
        inside();
        await hold;
      });
      await began;
      raw.write(parseMessage('SELECT $1::text AS v'));
      await new Promise((r) => setTimeout(r, 100));
      const answer = raw.until('Z');
      raw.write(
        Buffer.concat([bindMessage(['in order']), describePortal(), executeMessage(), syncMessage()]),
      );
      await new Promise((r) => setTimeout(r, 100));
      finish();
      await tx;
      const reply = await answer;
      expect(reply.errors).toEqual([]);
      expect(reply.values).toEqual(['in order']);
      // Nobody holds the session any more.
      const after = await Promise.race([
        db.query<{ v: number }>('SELECT 2 AS v').then((r) => r.rows[0].v),
        new Promise((r) => setTimeout(() => r('session still taken'), 5_000)),
      ]);
      expect(after).toBe(2);
    } finally {
      raw.close();
      await holder.close();
    }
  });

  it('delivers a NOTIFY sent over the socket to in-process listeners', async () => {
    const got: string[] = [];
    const stop = await db.listen('Policy', (p) => got.push(p));
    const remote = await openDatabase({ dataDir, migrate: false });
    try {
      await remote.notify('Policy', 'federation');
      await expect.poll(() => got).toEqual(['federation']);
    } finally {
      await remote.close();
      await stop();
    }
  });

  it('serves a child process that finds it through the owner file', async () => {
    // Node 20 cannot import our .ts from a child, so the child speaks plain pg to the URL
    // the owner file advertises (what openDatabase does); the CLI e2e test runs openDatabase itself.
    const script = join(dataDir, 'child.mjs');
    const pgUrl = import.meta.resolve('pg');
    writeFileSync(
      script,
      `import { readFileSync } from 'node:fs';
import pg from ${JSON.stringify(pgUrl)};
const owner = JSON.parse(readFileSync(${JSON.stringify(join(dataDir, OWNER_FILE))}, 'utf8'));
const client = new pg.Client({ connectionString: owner.url });
await client.connect();
await client.query("INSERT INTO homes (name, kind, address) VALUES ($1, 'pool', 'sip:child')", ['child']);
console.log(String(owner.pid));
await client.end();
`,
    );
    const { stdout } = await run(process.execPath, [script]);
    expect(stdout.trim()).toBe(String(process.pid));
    const res = await db.query("SELECT 1 FROM homes WHERE name = 'child'");
    expect(res.rows).toHaveLength(1);
  });
});

describe('data folder ownership', () => {
  it('refuses a second open of a folder that is not served', async () => {
    const dataDir = migratedDataFolder(mkdtempSync(join(tmpdir(), 'parley-owned-')));
    const db = await openDatabase({ dataDir });
    try {
      await expect(openDatabase({ dataDir })).rejects.toBeInstanceOf(DataFolderInUseError);
    } finally {
      await db.close();
    }
    expect(existsSync(join(dataDir, OWNER_FILE))).toBe(false);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('waits for a folder another opener releases, when asked to', async () => {
    const dataDir = migratedDataFolder(mkdtempSync(join(tmpdir(), 'parley-wait-')));
    const first = await openDatabase({ dataDir });
    const second = openDatabase({ dataDir, waitForFolderMs: 60_000 });
    await new Promise((r) => setTimeout(r, 300));
    await first.close();
    const db = await second;
    try {
      expect(db.engine).toBe('pglite');
    } finally {
      await db.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('does not take a reused pid for the owner', async () => {
    const dataDir = migratedDataFolder(mkdtempSync(join(tmpdir(), 'parley-reused-')));
    // A record left by an earlier process that had this process's pid (a container restart).
    writeFileSync(
      join(dataDir, OWNER_FILE),
      JSON.stringify({ pid: process.pid, procStart: '1', url: 'postgresql://x@/y?host=/nope' }),
    );
    const db = await openDatabase({ dataDir });
    try {
      expect(db.engine).toBe('pglite');
    } finally {
      await db.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('cleans up the lock of a dead owner', async () => {
    const dataDir = migratedDataFolder(mkdtempSync(join(tmpdir(), 'parley-stale-')));
    const { stdout } = await run(process.execPath, ['-e', 'console.log(process.pid)']);
    const deadPid = Number(stdout.trim());
    writeFileSync(
      join(dataDir, OWNER_FILE),
      JSON.stringify({ pid: deadPid, url: 'postgresql://x@/y?host=/nope' }),
    );
    const db = await openDatabase({ dataDir });
    try {
      expect(db.engine).toBe('pglite');
    } finally {
      await db.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('pglite engine specifics', () => {
  it('keeps data across reopening the folder', async () => {
    const dataDir = migratedDataFolder(mkdtempSync(join(tmpdir(), 'parley-persist-')));
    try {
      const first = await openDatabase({ dataDir });
      await first.query("INSERT INTO homes (name, kind, address) VALUES ('kept', 'standard', 'sip:kept')");
      await first.close();
      const second = await openDatabase({ dataDir });
      try {
        expect((await second.query("SELECT name FROM homes WHERE name = 'kept'")).rows).toEqual([
          { name: 'kept' },
        ]);
      } finally {
        await second.close();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('fails fast instead of deadlocking when the database is used inside its own transaction', async () => {
    const db = await createPgliteDatabase();
    try {
      await expect(db.transaction(async () => db.query('SELECT 1'))).rejects.toThrow(
        /use the transaction handle/,
      );
      let later: Promise<unknown> | undefined;
      await db.transaction(async (tx) => {
        await tx.query('SELECT 1');
        later = new Promise((r) => setTimeout(r, 10)).then(() => db.query('SELECT 2 AS n'));
      });
      expect(((await later) as { rows: unknown[] }).rows).toEqual([{ n: 2 }]);
      // The check is switched off between transactions (no promise hook while none is open)
      // and on again for the next one.
      await expect(
        db.transaction(async (tx) => tx.query('SELECT 1').then(() => db.query('SELECT 3'))),
      ).rejects.toThrow(/use the transaction handle/);
    } finally {
      await db.close();
    }
  });
});

describe('a data folder whose path is too long for a socket address', () => {
  it('serves over a unix socket in a private temporary folder, never over TCP', async () => {
    const dataDir = migratedDataFolder(join(scratchDir('parley-long-'), 'x'.repeat(120)));
    const db = await openDatabase({ dataDir });
    const served = await serveEmbeddedDatabase(db as PgliteDatabase, dataDir);
    try {
      const host = new URL(served.url).searchParams.get('host') ?? '';
      expect(host).not.toBe('');
      expect(host.startsWith(dataDir)).toBe(false);
      expect(statSync(host).mode & 0o777).toBe(0o700);
      expect(served.url).not.toMatch(/127\.0\.0\.1/);
      const other = await openDatabase({ dataDir });
      expect(other.engine).toBe('postgres');
      expect((await other.query<{ one: number }>('SELECT 1 AS one')).rows[0].one).toBe(1);
      await other.close();
    } finally {
      await served.close();
      await db.close();
    }
  });
});

/** The unix socket path of an embedded server's postgresql:// URL (host=DIR, port 5432). */
function socketPathOf(url: string): string {
  return join(decodeURIComponent(new URL(url).searchParams.get('host') ?? ''), '.s.PGSQL.5432');
}

function message(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

const cstring = (text: string) => Buffer.from(`${text}\0`, 'utf8');
const int16 = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n);
  return b;
};
const int32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};

const parseMessage = (sql: string) => message('P', Buffer.concat([cstring(''), cstring(sql), int16(0)]));
const bindMessage = (values: string[]) =>
  message(
    'B',
    Buffer.concat([
      cstring(''),
      cstring(''),
      int16(0),
      int16(values.length),
      ...values.flatMap((v) => [int32(Buffer.byteLength(v)), Buffer.from(v)]),
      int16(0),
    ]),
  );
const describePortal = () => message('D', Buffer.concat([Buffer.from('P'), cstring('')]));
const executeMessage = () => message('E', Buffer.concat([cstring(''), int32(0)]));
const syncMessage = () => message('S', Buffer.alloc(0));

/**
 * A PostgreSQL wire-protocol client that writes exactly the bytes it is given, when it is
 * told to (pg writes a statement's messages in one go): started up, it collects the text
 * values of DataRows and the messages of ErrorResponses until a message type arrives.
 */
async function rawProtocolClient(path: string) {
  const socket = createConnection(path);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  let buffer = Buffer.alloc(0);
  let waiting: { type: string; done: (r: { values: string[]; errors: string[] }) => void } | undefined;
  let values: string[] = [];
  let errors: string[] = [];
  socket.on('data', (chunk: Buffer) => {
    buffer = Buffer.concat([buffer, chunk]);
    while (buffer.length >= 5) {
      const length = buffer.readInt32BE(1);
      if (buffer.length < length + 1) break;
      const type = String.fromCharCode(buffer[0]);
      const body = buffer.subarray(5, length + 1);
      buffer = buffer.subarray(length + 1);
      if (type === 'D' && body.readInt16BE(0) > 0) {
        const size = body.readInt32BE(2);
        values.push(body.subarray(6, 6 + size).toString('utf8'));
      } else if (type === 'E') {
        errors.push(body.toString('utf8').replace(/\0/g, ' ').trim());
      }
      if (waiting && type === waiting.type) {
        const w = waiting;
        waiting = undefined;
        w.done({ values, errors });
        values = [];
        errors = [];
      }
    }
  });
  const until = (type: string) =>
    new Promise<{ values: string[]; errors: string[] }>((done) => {
      waiting = { type, done };
    });
  const ready = until('Z');
  const startup = Buffer.concat([
    int32(196608),
    cstring('user'),
    cstring('postgres'),
    cstring('database'),
    cstring('postgres'),
    Buffer.from([0]),
  ]);
  // A startup message has no type byte: its length (itself included) goes first.
  socket.write(Buffer.concat([int32(startup.length + 4), startup]));
  await ready;
  return {
    write: (bytes: Buffer) => socket.write(bytes),
    until,
    close: () => socket.destroy(),
  };
}
