import { partnerListCommand } from '../../../src/cli/federation-commands.js';

export default partnerListCommand('allow');
