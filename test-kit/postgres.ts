import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { ensureDebianCommand } from './debian.js';

export interface TestPostgres {
  /** URL of the server's `postgres` database (superuser, trust auth, unix socket). */
  readonly url: string;
  /** Creates an empty database and returns its URL: one per suite keeps suites apart. */
  createDatabase(name?: string): Promise<string>;
  stop(): Promise<void>;
}

function postgresBinDirs(): string[] {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .sort((a, b) => Number(b) - Number(a))
    .map((version) => join(root, version, 'bin'));
}

let counter = 0;

/**
 * Starts a throwaway PostgreSQL (Debian's `postgresql` package) in a temp folder, listening
 * only on a unix socket in that folder, so parallel test files never collide on a port.
 * Durability is off (fsync, synchronous_commit, full_page_writes): the cluster dies with
 * the test. PostgreSQL refuses to run as root, so as root the cluster belongs to the
 * `postgres` OS user (created by the package) and runs through runuser.
 */
export async function startTestPostgres(): Promise<TestPostgres> {
  const initdb = ensureDebianCommand('initdb', 'postgresql', postgresBinDirs());
  const binDir = initdb.slice(0, initdb.lastIndexOf('/'));
  const pgCtl = join(binDir, 'pg_ctl');
  const dir = mkdtempSync(join(tmpdir(), 'parley-pg-'));
  const dataDir = join(dir, 'data');
  const asRoot = process.getuid?.() === 0;
  const run = (cmd: string, args: string[]) =>
    asRoot
      ? execFileSync('runuser', ['-u', 'postgres', '--', cmd, ...args], { stdio: 'pipe', cwd: dir })
      : execFileSync(cmd, args, { stdio: 'pipe', cwd: dir });
  if (asRoot) execFileSync('chown', ['postgres:', dir]);
  chmodSync(dir, 0o700);
  run(initdb, [
    '-D',
    dataDir,
    '-U',
    'postgres',
    '--auth=trust',
    '-E',
    'UTF8',
    '--no-sync',
    '--no-instructions',
  ]);
  const options = [
    "-c listen_addresses=''",
    `-c unix_socket_directories=${dir}`,
    '-c fsync=off',
    '-c synchronous_commit=off',
    '-c full_page_writes=off',
    '-c max_connections=200',
  ].join(' ');
  run(pgCtl, ['-D', dataDir, '-o', options, '-l', join(dir, 'log'), '-w', '-t', '60', 'start']);
  const url = `postgresql://postgres@localhost/postgres?host=${encodeURIComponent(dir)}`;
  let stopped = false;
  return {
    url,
    async createDatabase(name = `parley_test_${process.pid}_${++counter}`) {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE "${name}"`);
      } finally {
        await client.end();
      }
      return `postgresql://postgres@localhost/${name}?host=${encodeURIComponent(dir)}`;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      try {
        run(pgCtl, ['-D', dataDir, '-m', 'immediate', '-w', 'stop']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
