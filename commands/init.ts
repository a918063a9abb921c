import { confirm, input, select } from '@inquirer/prompts';
import { Command, Flags } from '@oclif/core';
import { DEFAULT_CONFIG_FILE, formatHostPort, redactDatabaseUrl, SERVER_ROLES } from '../src/ops/config.js';
import { type InitAnswers, InitError, type InitPrompter, runInit } from '../src/ops/init.js';

export interface InitCommandResult {
  path: string;
  domain: string;
  role: string;
  listen: Record<string, string>;
  database: { dataDir: string; url?: string };
}

export default class Init extends Command {
  static override summary = 'Write a parley.yaml for a new server.';
  static override description =
    `Asks for the domain, role, listen addresses, store (data folder or PostgreSQL URL) and TLS files, then writes parley.yaml and checks it loads. Every question has a flag; with --yes, or when stdin is not a terminal, defaults are used for anything not given and a required answer that is missing fails naming its flag. Listen addresses take host:port, or "none".`;
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --yes --domain example.com',
    '<%= config.bin %> <%= command.id %> --yes --role frontend --home pool1 --database postgres://parley@db/parley --tls 0.0.0.0:5061 --tls-cert pki/fe1.crt --tls-key pki/fe1.key',
    '<%= config.bin %> <%= command.id %> --yes --role edge --tls-cert pki/edge.crt --tls-key pki/edge.key --config /etc/parley/parley.yaml --force',
  ];
  static override enableJsonFlag = true;
  static override flags = {
    config: Flags.string({ char: 'c', summary: 'File to write.', default: DEFAULT_CONFIG_FILE }),
    yes: Flags.boolean({
      char: 'y',
      summary: 'Accept defaults for everything not given by a flag; never prompt.',
    }),
    force: Flags.boolean({ char: 'f', summary: 'Overwrite an existing file.' }),
    domain: Flags.string({ summary: 'SIP domain (and digest realm).' }),
    role: Flags.string({ summary: 'Server role.', options: [...SERVER_ROLES] }),
    home: Flags.string({ summary: 'Pool name a frontend serves.' }),
    'high-security': Flags.boolean({ summary: 'TLS/WSS only.', allowNo: true }),
    tcp: Flags.string({ summary: 'TCP listen address host:port, or none.' }),
    tls: Flags.string({ summary: 'TLS listen address host:port, or none.' }),
    ws: Flags.string({ summary: 'WebSocket listen address host:port, or none.' }),
    wss: Flags.string({ summary: 'Secure WebSocket listen address host:port, or none.' }),
    'data-dir': Flags.string({ summary: 'Folder of the embedded store.' }),
    database: Flags.string({ summary: 'PostgreSQL URL (required for a frontend).' }),
    'tls-cert': Flags.string({ summary: 'TLS certificate file (PEM).' }),
    'tls-key': Flags.string({ summary: 'TLS private key file (PEM).' }),
    'tls-ca': Flags.string({ summary: 'CA certificate file used to verify peers (PEM).' }),
  };

  async run(): Promise<InitCommandResult> {
    const { flags } = await this.parse(Init);
    const given: Partial<InitAnswers> = {
      domain: flags.domain,
      role: flags.role as InitAnswers['role'] | undefined,
      home: flags.home,
      highSecurity: flags['high-security'],
      tcp: flags.tcp,
      tls: flags.tls,
      ws: flags.ws,
      wss: flags.wss,
      dataDir: flags['data-dir'],
      databaseUrl: flags.database,
      tlsCert: flags['tls-cert'],
      tlsKey: flags['tls-key'],
      tlsCa: flags['tls-ca'],
    };
    const interactive = !flags.yes && !this.jsonEnabled() && process.stdin.isTTY === true;
    try {
      const result = await runInit({
        path: flags.config,
        given,
        force: flags.force,
        prompter: interactive ? inquirer : undefined,
      });
      const listen = Object.fromEntries(
        Object.entries(result.config.listen).map(([t, hp]) => [t, formatHostPort(hp)]),
      );
      const { dataDir, url } = result.config.database;
      this.log(`Wrote ${result.path} (${result.config.role} server for ${result.config.domain}).`);
      this.log('Next: parley db migrate, then parley server start.');
      return {
        path: result.path,
        domain: result.config.domain,
        role: result.config.role,
        listen,
        database: url ? { dataDir, url: redactDatabaseUrl(url) } : { dataDir },
      };
    } catch (err) {
      if (err instanceof InitError) {
        this.error(err.message, {
          exit: err.code === 'CONFIG_EXISTS' ? 4 : 2,
          code: err.code,
          suggestions: [err.suggestion],
        });
      }
      throw err;
    }
  }
}

const inquirer: InitPrompter = {
  input: (q) => input(q),
  select: (q) => select(q),
  confirm: (q) => confirm(q),
};
