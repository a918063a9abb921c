import { Flags } from '@oclif/core';
import { createCa, type IssuedFiles } from '../../src/certs/pki.js';
import { printSummary } from '../../src/certs/render.js';
import { ParleyCommand } from '../../src/cli/command.js';

export default class CertsCreateCa extends ParleyCommand {
  static override summary = 'Create a private certificate authority.';
  static override description =
    `Writes ca.crt and ca.key (readable by you only) into --dir, for issuing server and client certificates with \`parley certs issue\`. Meant for tests, labs and small deployments; use your organisation's PKI where there is one. Needs the openssl command line.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %> --dir ./pki',
    '<%= config.bin %> <%= command.id %> --dir /etc/parley/pki --name "Example Corp SIP CA" --org "Example Corp" --days 3650',
  ];
  static override enableJsonFlag = true;
  static override flags = {
    dir: Flags.string({ summary: 'Folder for ca.crt and ca.key.', required: true }),
    name: Flags.string({ summary: 'Common name of the CA.', default: 'Parley CA' }),
    org: Flags.string({ summary: 'Organisation name (O=).' }),
    days: Flags.integer({ summary: 'Validity in days.', default: 3650, min: 1 }),
    'key-type': Flags.string({ summary: 'Key algorithm.', options: ['ec', 'rsa'], default: 'ec' }),
    force: Flags.boolean({
      summary: 'Replace an existing CA in --dir (certificates it issued stop verifying).',
    }),
  };

  async run(): Promise<IssuedFiles> {
    const { flags } = await this.parse(CertsCreateCa);
    const ca = createCa({
      dir: flags.dir,
      commonName: flags.name,
      organization: flags.org,
      days: flags.days,
      keyType: flags['key-type'] as 'ec' | 'rsa',
      force: flags.force,
    });
    this.log(`CA certificate ${ca.cert}\nCA key         ${ca.key} (keep it private)`);
    printSummary(ca.summary, (line) => this.log(line));
    return ca;
  }
}
