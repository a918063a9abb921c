import { partnerAddCommand } from '../../../src/cli/federation-commands.js';

export default partnerAddCommand('block', {
  summary: 'Block a domain from federation.',
  description:
    'Refuses every request from DOMAIN and sends none to it, even through a clearinghouse. An allowed domain becomes blocked. Running edges apply the change within a second.',
  examples: ['<%= config.bin %> <%= command.id %> spam.example --note "abuse report 2026-11"'],
});
