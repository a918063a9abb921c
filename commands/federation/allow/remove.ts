import { partnerRemoveCommand } from '../../../src/cli/federation-commands.js';

export default partnerRemoveCommand('allow');
