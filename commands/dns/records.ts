import { Flags } from '@oclif/core';
import { ParleyCommand } from '../../src/cli/command.js';
import { CliError } from '../../src/cli/errors.js';
import { loadCliConfig } from '../../src/cli/flags.js';
import { type DnsPlan, DnsPlanError, planDnsRecords, renderZoneFile } from '../../src/ops/dns.js';

export default class DnsRecords extends ParleyCommand {
  static override summary = 'Print the DNS records a deployment must publish.';
  static override description =
    `Lists the SRV records clients and federated partners look up: _sip._tls (remote sign-in through the edge), _sipinternaltls._tcp (internal sign-in through the director), _sipfederationtls._tcp (partners' edges, mutual TLS) and, with --tcp, _sip._tcp; plus the A/AAAA records their targets need. Prints zone-file lines; --json gives the same as data. The domain defaults to the one in parley.yaml.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %> --domain example.com',
    '<%= config.bin %> <%= command.id %> --domain example.com --edge-fqdn sip.example.com --edge-address 203.0.113.10 --director-fqdn pool1.example.com',
    '<%= config.bin %> <%= command.id %> --json',
  ];
  static override enableJsonFlag = true;
  static override flags = {
    config: Flags.string({
      char: 'c',
      summary:
        'parley.yaml to read the domain from (default $PARLEY_CONFIG, else ./parley.yaml when present).',
    }),
    domain: Flags.string({
      summary: 'SIP domain (default the first domain of parley.yaml, else parley.local).',
    }),
    'edge-fqdn': Flags.string({ summary: 'Edge FQDN reached from the internet (default sip.DOMAIN).' }),
    'director-fqdn': Flags.string({
      summary: 'Director or pool FQDN reached internally (default director.DOMAIN).',
    }),
    'edge-port': Flags.integer({
      summary: 'Port of the edge access service for remote clients.',
      default: 443,
    }),
    'federation-port': Flags.integer({ summary: 'Port of the edge federation service.', default: 5061 }),
    'director-port': Flags.integer({ summary: 'Port of the director TLS service.', default: 5061 }),
    tcp: Flags.boolean({ summary: 'Also publish _sip._tcp (plain TCP; not in high-security mode).' }),
    'edge-address': Flags.string({ summary: 'Public IP of the edge, for its A/AAAA record.' }),
    'director-address': Flags.string({ summary: 'Internal IP of the director, for its A/AAAA record.' }),
    ttl: Flags.integer({ summary: 'TTL of every record, in seconds.', default: 3600, min: 0 }),
  };

  async run(): Promise<DnsPlan> {
    const { flags } = await this.parse(DnsRecords);
    // Only the domain comes from the deployment: this command needs no store.
    const domain = flags.domain ?? loadCliConfig({ config: flags.config }).domain;
    try {
      const plan = planDnsRecords({
        domain,
        edgeFqdn: flags['edge-fqdn'],
        directorFqdn: flags['director-fqdn'],
        edgeAccessPort: flags['edge-port'],
        federationPort: flags['federation-port'],
        directorPort: flags['director-port'],
        tcp: flags.tcp,
        edgeAddress: flags['edge-address'],
        directorAddress: flags['director-address'],
        ttl: flags.ttl,
      });
      this.log(renderZoneFile(plan).trimEnd());
      return plan;
    } catch (err) {
      if (err instanceof DnsPlanError)
        throw new CliError('INVALID_FLAG', err.message, `Fix --${flagOf(err.field)}.`);
      throw err;
    }
  }
}

function flagOf(field: string): string {
  const map: Record<string, string> = {
    edgeFqdn: 'edge-fqdn',
    directorFqdn: 'director-fqdn',
    edgeAccessPort: 'edge-port',
    federationPort: 'federation-port',
    directorPort: 'director-port',
    edgeAddress: 'edge-address',
    directorAddress: 'director-address',
    tcpPort: 'tcp',
  };
  return map[field] ?? field;
}
