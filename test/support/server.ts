import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { type DeepPartial, loadConfig, type ParleyConfig } from '../../src/ops/config.js';
import { createLogger, silentLogger } from '../../src/ops/log.js';
import { computeHa1 } from '../../src/registrar/digest.js';
import { type ParleyServer, startServer } from '../../src/roles/server.js';
import { UserRepository } from '../../src/store/users.js';
import { memoryTmpdir, migratedDataFolder } from './database.js';

/**
 * One sample of a Prometheus series from a server's /metrics, as a scraper reads it: the
 * series named, with every label given (others may be present); NaN when absent.
 */
export async function readMetric(
  httpUrl: string,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const text = await (await fetch(`${httpUrl}/metrics`)).text();
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || (line[name.length] !== '{' && line[name.length] !== ' ')) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) {
      return Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return Number.NaN;
}

export interface TestServer {
  server: ParleyServer;
  domain: string;
  tcpPort: number;
  wsPort: number;
  dataDir: string;
  addUser(name: string, password: string): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A standard server on ephemeral loopback ports with a throwaway data folder, holding a copy
 * of the migrated store template (database.ts) so it starts without initdb or migrations.
 * With `logLines`, every JSON line the server logs (at the configured level, `warn` unless
 * overridden) is appended to it, for tests that read the log as an administrator's tools would.
 */
export async function startTestServer(
  overrides: DeepPartial<ParleyConfig> = {},
  opts: { logLines?: Array<Record<string, unknown>> } = {},
): Promise<TestServer> {
  const dataDir = migratedDataFolder(mkdtempSync(join(memoryTmpdir(), 'parley-test-')));
  const domain = overrides.domain ?? 'example.com';
  const config = loadConfig({
    cwd: dataDir,
    env: {},
    overrides: {
      domain,
      serverId: 'test',
      listen: { tcp: { host: '127.0.0.1', port: 0 }, ws: { host: '127.0.0.1', port: 0 } },
      http: { host: '127.0.0.1', port: 0 },
      database: { dataDir },
      log: { level: 'warn' },
      ...overrides,
    },
  });
  const { logLines } = opts;
  const log = logLines
    ? createLogger(config, {
        destination: new Writable({
          write(chunk: Buffer, _enc, done) {
            for (const line of chunk.toString().split('\n')) if (line) logLines.push(JSON.parse(line));
            done();
          },
        }),
      })
    : process.env.PARLEY_TEST_LOG
      ? undefined
      : silentLogger();
  const server = await startServer(config, { log });
  const users = new UserRepository(server.db);
  return {
    server,
    domain,
    dataDir,
    tcpPort: server.listening.find((l) => l.transport === 'tcp')?.port ?? 0,
    wsPort: server.listening.find((l) => l.transport === 'ws')?.port ?? 0,
    async addUser(name, password) {
      const user = await users.createUser({ aor: `${name}@${domain}`, displayName: name });
      await users.setCredentials(user.id, domain, {
        ha1Md5: computeHa1(name, domain, password, 'MD5'),
        ha1Sha256: computeHa1(name, domain, password, 'SHA-256'),
      });
    },
    async stop() {
      await server.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
