import { Args, Flags } from '@oclif/core';
import { ParleyCommand } from '../../src/cli/command.js';
import { domainFlag, storeFlags } from '../../src/cli/flags.js';
import { runWithStore } from '../../src/cli/store-command.js';
import { testPartner } from '../../src/federation/admin.js';
import type { ProbeResult } from '../../src/federation/probe.js';
import { renderProbe } from '../../src/federation/render.js';

export default class FederationTest extends ParleyCommand {
  static override summary = 'Check the way to a federation partner, step by step.';
  static override description =
    "Finds the partner's edge (its pinned FQDN, else SRV _sipfederationtls._tcp.DOMAIN, else the clearinghouse), connects, runs the mutual-TLS handshake with this deployment's certificate (tls.cert, tls.key) and checks the partner's certificate against tls.ca and the edge's name, then sends it an OPTIONS. Each step prints what it found; the first failure says why. Exits 0 when every step passed, 1 otherwise.";
  static override examples = [
    '<%= config.bin %> <%= command.id %> partner.example',
    '<%= config.bin %> <%= command.id %> partner.example --dns-server 10.0.0.53 --json',
  ];
  static override enableJsonFlag = true;
  static override args = { domain: Args.string({ required: true, description: 'Partner domain.' }) };
  static override flags = {
    ...storeFlags,
    ...domainFlag,
    'dns-server': Flags.string({
      summary:
        'DNS server for the SRV lookup (IP[:port]; repeatable). Default: federation.dnsServers, else the system resolver.',
      multiple: true,
    }),
    timeout: Flags.integer({ summary: 'Seconds to wait at each step.', default: 5, min: 1, max: 60 }),
  };

  async run(): Promise<ProbeResult> {
    const { args, flags } = await this.parse(FederationTest);
    const result = await runWithStore(this, flags, (store, config) =>
      testPartner(store, config, {
        domain: args.domain,
        dnsServers: flags['dns-server'],
        timeoutMs: flags.timeout * 1000,
      }),
    );
    for (const line of renderProbe(result)) this.log(line);
    if (!result.ok) process.exitCode = 1;
    return result;
  }
}
