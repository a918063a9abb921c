import { relative, resolve } from 'node:path';
import { confirm, input, select } from '@inquirer/prompts';
import { Flags } from '@oclif/core';
import { ParleyCommand } from '../src/cli/command.js';
import { listenFlags } from '../src/cli/flags.js';
import { DEFAULT_CONFIG_FILE, formatHostPort, redactDatabaseUrl, SERVER_ROLES } from '../src/ops/config.js';
import { type InitAnswers, type InitPrompter, runInit } from '../src/ops/init.js';

export interface InitCommandResult {
  path: string;
  domain: string;
  role: string;
  listen: Record<string, string>;
  http: string;
  database: { dataDir: string; url?: string };
  /** The commands to run next, as typed from here. */
  next: string[];
}

export default class Init extends ParleyCommand {
  static override summary = 'Write a parley.yaml for a new server.';
  static override description =
    `Asks for the domain, role, listen addresses, operations address, store (data folder or PostgreSQL URL) and TLS files, then writes parley.yaml and checks it loads. Every question has a flag; with --yes, or when stdin is not a terminal, defaults are used for anything not given and a required answer that is missing fails naming its flag. Listen addresses take host:port, or "none"; \`parley server start\` takes the same listen flags.

Paths in the file are relative to the file: the default data folder is ./.parley beside it, whatever folder init runs in. A data folder that already holds another deployment's store is refused (DATA_FOLDER_TAKEN).`;
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --yes --domain example.com',
    '<%= config.bin %> <%= command.id %> --yes --domain lab.example.com --config ../lab/parley.yaml --tcp 0.0.0.0:5070 --ws none --http 127.0.0.1:9070',
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
    ...listenFlags,
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
      udp: flags.udp,
      tcp: flags.tcp,
      tls: flags.tls,
      ws: flags.ws,
      wss: flags.wss,
      http: flags.http,
      dataDir: flags['data-dir'],
      databaseUrl: flags.database,
      tlsCert: flags['tls-cert'],
      tlsKey: flags['tls-key'],
      tlsCa: flags['tls-ca'],
    };
    const interactive = !flags.yes && !this.jsonEnabled() && process.stdin.isTTY === true;
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
    // The file is found without -c only from its own folder, as parley.yaml.
    const here = resolve(DEFAULT_CONFIG_FILE) === result.path;
    const c = here ? '' : ` -c ${shellWord(relative(process.cwd(), result.path) || result.path)}`;
    const next = [
      `parley server start${c}`,
      `parley users add alice@${result.config.domain}${c}`,
      `parley server status${c}`,
    ];
    this.log(`Wrote ${result.path} (${result.config.role} server for ${result.config.domain}).`);
    this.log(`Next: ${next[0]}   (in another terminal: ${next[1]})`);
    return {
      path: result.path,
      domain: result.config.domain,
      role: result.config.role,
      listen,
      http: formatHostPort(result.config.http),
      database: url ? { dataDir, url: redactDatabaseUrl(url) } : { dataDir },
      next,
    };
  }
}

function shellWord(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

const inquirer: InitPrompter = {
  input: (q) => input(q),
  select: (q) => select(q),
  confirm: (q) => confirm(q),
};
