import { partnerListCommand } from '../../../src/cli/federation-commands.js';

export default partnerListCommand('block');
