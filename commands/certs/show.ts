import { Args, Flags } from '@oclif/core';
import { type CertificateSummary, describeCertificate } from '../../src/certs/inspect.js';
import { verifyCertificate } from '../../src/certs/pki.js';
import { printSummary } from '../../src/certs/render.js';
import { ParleyCommand } from '../../src/cli/command.js';
import { CliError } from '../../src/cli/errors.js';

export interface CertsShowResult extends CertificateSummary {
  verified?: { ca: string; ok: boolean; detail: string };
}

export default class CertsShow extends ParleyCommand {
  static override summary = 'Show what a certificate says: names, issuer, validity, usage.';
  static override description =
    `Reads a PEM certificate (the first one in the file; the rest are reported as its chain). With --ca, also checks it chains to that CA (openssl verify) and exits 1 when it does not.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %> ./pki/edge.example.com.crt',
    '<%= config.bin %> <%= command.id %> ./pki/edge.example.com.crt --ca ./pki/ca.crt --json',
  ];
  static override enableJsonFlag = true;
  static override args = {
    file: Args.string({ description: 'PEM certificate file.', required: true }),
  };
  static override flags = {
    ca: Flags.string({ summary: 'CA certificate to verify against.' }),
  };

  async run(): Promise<CertsShowResult> {
    const { args, flags } = await this.parse(CertsShow);
    const summary: CertsShowResult = describeCertificate(args.file);
    printSummary(summary, (line) => this.log(line));
    if (flags.ca) {
      const v = verifyCertificate(args.file, flags.ca);
      summary.verified = { ca: flags.ca, ...v };
      this.log(`Verified    ${v.ok ? 'yes' : `NO: ${v.detail}`}`);
      if (!v.ok) {
        throw new CliError('CERT_NOT_TRUSTED', `${args.file} does not verify against ${flags.ca}`);
      }
    }
    return summary;
  }
}
