import { syntheticTestCommand } from '../../src/cli/test-commands.js';

export default syntheticTestCommand('sign-in', {
  summary: 'Sign in as a user against a live deployment and time each step.',
  description:
    'Connects to the server, registers with digest authentication (answering the challenge) and signs out again: what a client does at sign-in, timed step by step.',
  examples: [
    'PARLEY_TEST_PASSWORD=secret <%= config.bin %> <%= command.id %> --as probe',
    '<%= config.bin %> <%= command.id %> --as probe@example.com --server "sip:sip.example.com:5061;transport=tls" --json',
  ],
});
