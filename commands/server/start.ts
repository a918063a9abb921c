import { Command, Flags } from '@oclif/core';
import {
  ConfigError,
  type DeepPartial,
  loadConfig,
  type ParleyConfig,
  parseHostPort,
} from '../../src/ops/config.js';
import { type ParleyServer, startServer } from '../../src/roles/server.js';

export interface ServerStartResult {
  role: string;
  domain: string;
  listening: string[];
  http: string;
}

export default class ServerStart extends Command {
  static override summary = 'Run a Parley server in the foreground.';
  static override description =
    `Starts the server in the role its configuration names (standard by default: registrar, presence and IM on the embedded database in the data folder). Stops cleanly on SIGTERM or SIGINT: subscribers are told to come back, connections close, the store is flushed.

With no parley.yaml and no flags it listens on TCP 5060 and WebSocket 5066 for the domain parley.local, with its data in ./.parley.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --domain example.com --tcp 0.0.0.0:5060 --ws 0.0.0.0:8080',
    '<%= config.bin %> <%= command.id %> --config /etc/parley/parley.yaml',
  ];
  static override flags = {
    config: Flags.string({ char: 'c', summary: 'parley.yaml to read (default ./parley.yaml when present).' }),
    role: Flags.string({ summary: 'Server role.', options: ['standard', 'frontend', 'director', 'edge'] }),
    domain: Flags.string({ summary: 'SIP domain (and digest realm) this server is home for.' }),
    'server-id': Flags.string({ summary: 'Name of this server in the store (unique in a pool).' }),
    home: Flags.string({ summary: 'Home (standard server or pool name) this server serves.' }),
    'data-dir': Flags.string({ summary: 'Folder of the embedded database.' }),
    database: Flags.string({ summary: 'PostgreSQL URL (pools); the embedded database is used without it.' }),
    tcp: Flags.string({ summary: 'TCP listen address host:port.' }),
    ws: Flags.string({ summary: 'WebSocket listen address host:port.' }),
    tls: Flags.string({
      summary: 'TLS listen address host:port (needs tls.cert and tls.key in parley.yaml).',
    }),
    internal: Flags.string({
      summary: 'Edge: inside listen address host:port (Path routes, federation.edge).',
    }),
    federation: Flags.string({ summary: 'Edge: mutual-TLS federation listen address host:port.' }),
    next: Flags.string({ summary: 'Edge: SIP URI of the inside next hop (a director or a pool).' }),
    http: Flags.string({ summary: 'Metrics and health listen address host:port.' }),
    'log-level': Flags.string({
      summary: 'Log level.',
      options: ['fatal', 'error', 'warn', 'info', 'debug', 'trace'],
    }),
  };

  async run(): Promise<ServerStartResult> {
    const { flags } = await this.parse(ServerStart);
    let config: ParleyConfig;
    try {
      const overrides: DeepPartial<ParleyConfig> = {};
      if (flags.role) overrides.role = flags.role as ParleyConfig['role'];
      if (flags.domain) overrides.domain = flags.domain;
      if (flags['server-id']) overrides.serverId = flags['server-id'];
      if (flags.home) overrides.home = flags.home;
      if (flags['data-dir'] || flags.database) {
        overrides.database = { dataDir: flags['data-dir'], url: flags.database };
      }
      if (flags.tcp || flags.ws || flags.tls || flags.internal || flags.federation) {
        overrides.listen = {
          tcp: flags.tcp ? parseHostPort(flags.tcp, '--tcp') : undefined,
          ws: flags.ws ? parseHostPort(flags.ws, '--ws') : undefined,
          tls: flags.tls ? parseHostPort(flags.tls, '--tls') : undefined,
          internal: flags.internal ? parseHostPort(flags.internal, '--internal') : undefined,
          federation: flags.federation ? parseHostPort(flags.federation, '--federation') : undefined,
        };
      }
      if (flags.next) overrides.edge = { next: flags.next };
      if (flags.http) overrides.http = parseHostPort(flags.http, '--http');
      if (flags['log-level']) overrides.log = { level: flags['log-level'] as ParleyConfig['log']['level'] };
      config = loadConfig({ configPath: flags.config, overrides });
    } catch (err) {
      if (err instanceof ConfigError)
        this.error(err.message, {
          exit: 2,
          code: 'CONFIG_INVALID',
          suggestions: ['Fix the key named above, or run `parley init` to write a fresh parley.yaml.'],
        });
      throw err;
    }

    let server: ParleyServer;
    try {
      server = await startServer(config);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      const inUse = /EADDRINUSE/.test(message);
      this.error(`could not start the server: ${message}`, {
        exit: 1,
        code: inUse ? 'ADDRESS_IN_USE' : 'START_FAILED',
        suggestions: inUse
          ? ['Another process listens on that port: stop it, or choose other ports with --tcp/--ws/--http.']
          : ['Check the data folder and configuration; run with --log-level debug for details.'],
      });
    }
    const listening = server.listening.map((l) => `${l.name ?? l.transport}://${l.host}:${l.port}`);
    if (!this.jsonEnabled()) {
      this.log(`Parley ${config.role} server for domain ${config.domain}`);
      for (const l of listening) this.log(`  SIP   ${l}`);
      this.log(`  HTTP  ${server.httpUrl}/metrics  ${server.httpUrl}/health`);
      if (!config.database.url) this.log(`  data  ${config.database.dataDir}`);
      this.log(`Add a user: npx parley users add alice@${config.domain}`);
    }
    // SIGUSR2, like `parley server drain`, takes the server out of its pool gracefully.
    const onUsr2 = () => void server.drain();
    process.on('SIGUSR2', onUsr2);
    await Promise.race([waitForSignal(), server.drained]);
    process.off('SIGUSR2', onUsr2);
    this.logToStderr('Stopping...');
    await server.close();
    return { role: config.role, domain: config.domain, listening, http: server.httpUrl };
  }
}

function waitForSignal(): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      resolve();
    };
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
}
