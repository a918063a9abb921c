import { Flags } from '@oclif/core';
import { ParleyCommand } from '../../src/cli/command.js';
import { listenFlags, logFlags } from '../../src/cli/flags.js';
import {
  bannerLines,
  checkDataFolder,
  firstStartNotice,
  loadServerConfig,
  serverLogger,
  startFailure,
} from '../../src/cli/server-start.js';
import {
  followLauncher,
  needsSemiSpaceRelaunch,
  relaunchWithSemiSpace,
  tuneServerHeap,
} from '../../src/roles/heap.js';
import type { ParleyServer } from '../../src/roles/server.js';

export interface ServerStartResult {
  role: string;
  domain: string;
  listening: string[];
  http: string;
  /** The data folder, or PostgreSQL. */
  store: string;
}

export default class ServerStart extends ParleyCommand {
  static override summary = 'Run a Parley server in the foreground.';
  static override description =
    `Starts the server in the role its configuration names (standard by default: registrar, presence and IM on the embedded database in the data folder). Stops cleanly on SIGTERM or SIGINT: subscribers are told to come back, connections close, the store is flushed.

With no parley.yaml and no flags it listens on UDP and TCP 5060 and WebSocket 5066 for the domain parley.local, with its data in ./.parley (created on the first start). Like \`parley init\`, it takes --udp, --tcp, --tls, --ws, --wss and --http.

Logs: readable lines on a terminal, JSON lines otherwise (--log-format, or log.format in parley.yaml); the banner saying where it listens goes to stderr, apart from them. With --json, stdout carries only the result when the server stops, and log lines go to stderr.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --domain example.com --tcp 0.0.0.0:5060 --ws 0.0.0.0:8080',
    '<%= config.bin %> <%= command.id %> --log-format json --log-level debug',
    '<%= config.bin %> <%= command.id %> --config /etc/parley/parley.yaml',
  ];
  static override flags = {
    config: Flags.string({
      char: 'c',
      summary: 'parley.yaml to read (default $PARLEY_CONFIG, else ./parley.yaml when present).',
    }),
    role: Flags.string({ summary: 'Server role.', options: ['standard', 'frontend', 'director', 'edge'] }),
    domain: Flags.string({ summary: 'SIP domain (and digest realm) this server is home for.' }),
    'server-id': Flags.string({ summary: 'Name of this server in the store (unique in a pool).' }),
    home: Flags.string({ summary: 'Home (standard server or pool name) this server serves.' }),
    'data-dir': Flags.string({ summary: 'Folder of the embedded database.' }),
    database: Flags.string({ summary: 'PostgreSQL URL (pools); the embedded database is used without it.' }),
    ...listenFlags,
    internal: Flags.string({
      summary: 'Edge: inside listen address host:port (Path routes, federation.edge).',
    }),
    federation: Flags.string({ summary: 'Edge: mutual-TLS federation listen address host:port.' }),
    next: Flags.string({ summary: 'Edge: SIP URI of the inside next hop (a director or a pool).' }),
    'semi-space-mb': Flags.integer({
      summary: "V8's semi-space in MiB (server.semiSpaceMb, default 64); 0 keeps V8's own in one process.",
      min: 0,
    }),
    ...logFlags,
  };
  static override enableJsonFlag = true;

  async run(): Promise<ServerStartResult> {
    tuneServerHeap();
    const { flags } = await this.parse(ServerStart);
    const config = loadServerConfig(flags);
    // V8 takes the young generation's size only at start: the server runs in a child node
    // given it (src/roles/heap.ts). The launcher loads no server code: it stays small.
    const semiSpace = config.server.semiSpaceMb;
    if (needsSemiSpaceRelaunch(semiSpace)) process.exit(await relaunchWithSemiSpace(semiSpace));
    followLauncher();
    const { clusterWorkerIndex, runClusterWorker } = await import('../../src/roles/cluster.js');
    const { startServer } = await import('../../src/roles/server.js');
    // A worker of a clustered server (server.workers): the main process owns the folder and the banner.
    if (clusterWorkerIndex() !== undefined) return runClusterWorker(() => startServer(config));
    checkDataFolder(config);
    const notice = firstStartNotice(config);
    if (notice && !this.jsonEnabled()) this.logToStderr(notice);
    const began = Date.now();
    let server: ParleyServer;
    try {
      server = await startServer(config, { log: serverLogger(config, this.jsonEnabled()) });
    } catch (err) {
      throw startFailure(err, config);
    }
    const listening = server.listening.map((l) => `${l.name ?? l.transport}://${l.host}:${l.port}`);
    if (!this.jsonEnabled()) {
      for (const line of bannerLines(config, listening, server.httpUrl, Date.now() - began)) {
        this.logToStderr(line);
      }
    }
    // SIGUSR2, like `parley server drain`, takes the server out of its pool gracefully.
    const onUsr2 = () => void server.drain();
    process.on('SIGUSR2', onUsr2);
    await Promise.race([waitForSignal(), server.drained]);
    process.off('SIGUSR2', onUsr2);
    if (!this.jsonEnabled()) this.logToStderr('Stopping...');
    await server.close();
    if (!this.jsonEnabled()) this.logToStderr('Stopped.');
    return {
      role: config.role,
      domain: config.domain,
      listening,
      http: server.httpUrl,
      store: config.database.url ? 'PostgreSQL' : config.database.dataDir,
    };
  }
}

/**
 * The first SIGINT or SIGTERM stops the server gracefully; another one more than a second
 * later ends the process at once. One within that second is the same stop delivered twice
 * (a supervisor signalling the whole group while the launcher, src/roles/heap.ts, passes
 * its own on) and is ignored.
 */
function waitForSignal(): Promise<void> {
  return new Promise((resolve) => {
    let first = 0;
    const on = (signal: NodeJS.Signals) => {
      if (first === 0) {
        first = Date.now();
        resolve();
      } else if (Date.now() - first > 1000) {
        process.off('SIGINT', on);
        process.off('SIGTERM', on);
        process.kill(process.pid, signal);
      }
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}
