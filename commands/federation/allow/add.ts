import { partnerAddCommand } from '../../../src/cli/federation-commands.js';

export default partnerAddCommand('allow', {
  summary: 'Allow federation with a partner domain.',
  description:
    "Opens federation with DOMAIN: its users may exchange presence and IM with ours through the edges, each user's own allow/block list still applying. --edge pins the partner to its edge's FQDN, which its certificate must name; without it the edge its SRV record (_sipfederationtls._tcp.DOMAIN) names is used, or the clearinghouse when it publishes none. A blocked domain becomes allowed. Running edges apply the change within a second.",
  examples: [
    '<%= config.bin %> <%= command.id %> partner.example --note "Contoso, ticket 4711"',
    '<%= config.bin %> <%= command.id %> partner.example --edge sip.partner.example --json',
  ],
});
