import { Flags } from '@oclif/core';
import { type CertUsage, type IssuedFiles, issueCertificate } from '../../src/certs/pki.js';
import { printSummary } from '../../src/certs/render.js';
import { ParleyCommand } from '../../src/cli/command.js';

export default class CertsIssue extends ParleyCommand {
  static override summary = 'Issue a server or client certificate from a private CA.';
  static override description =
    `Writes NAME.crt and NAME.key (readable by you only) signed by the CA in --ca. NAME is the FQDN peers connect to; it becomes the subject CN and the first subject alternative name (SIP peers match the SAN, RFC 5922). Add more names with --san (FQDN, IP, or DNS:/IP:/email:/URI: prefixed). By default the certificate serves both TLS server and client authentication, as servers in mutual TLS (federation, pools) need.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %> --ca ./pki --name edge.example.com --san sip.example.com',
    '<%= config.bin %> <%= command.id %> --ca ./pki --name fe1.pool1.example.com --san 10.0.0.11 --out ./pki/issued',
    '<%= config.bin %> <%= command.id %> --ca ./pki --name alice@example.com --usage client',
  ];
  static override enableJsonFlag = true;
  static override flags = {
    ca: Flags.string({
      summary: 'Folder holding ca.crt and ca.key (from `parley certs create-ca`).',
      required: true,
    }),
    name: Flags.string({
      summary: 'FQDN (or IP, or email for a client) the certificate is for.',
      required: true,
    }),
    san: Flags.string({ summary: 'Another subject alternative name; repeatable.', multiple: true }),
    usage: Flags.string({
      summary: 'TLS role(s) allowed.',
      options: ['server', 'client', 'both'],
      default: 'both',
    }),
    days: Flags.integer({ summary: 'Validity in days.', default: 825, min: 1 }),
    'key-type': Flags.string({ summary: 'Key algorithm.', options: ['ec', 'rsa'], default: 'ec' }),
    org: Flags.string({ summary: 'Organisation name (O=).' }),
    out: Flags.string({ summary: 'Folder for NAME.crt and NAME.key (default the CA folder).' }),
    force: Flags.boolean({ summary: 'Replace existing NAME.crt and NAME.key.' }),
  };

  async run(): Promise<IssuedFiles> {
    const { flags } = await this.parse(CertsIssue);
    const issued = issueCertificate({
      caDir: flags.ca,
      name: flags.name,
      sans: flags.san ?? [],
      usage: flags.usage as CertUsage,
      days: flags.days,
      keyType: flags['key-type'] as 'ec' | 'rsa',
      organization: flags.org,
      outDir: flags.out,
      force: flags.force,
    });
    this.log(`Certificate ${issued.cert}\nKey         ${issued.key} (keep it private)`);
    printSummary(issued.summary, (line) => this.log(line));
    return issued;
  }
}
