import { syntheticTestCommand } from '../../src/cli/test-commands.js';

export default syntheticTestCommand('im', {
  summary: 'Send an instant message from one user to another through a live deployment, timing each step.',
  description:
    'Signs in as --as and sends a MESSAGE to --to; the step fails with the reason when the server refuses it or --to is not signed in (480). With --receive it also signs in as --to and checks the message arrives, so two probe accounts test the whole path.',
  examples: [
    'PARLEY_TEST_PASSWORD=secret <%= config.bin %> <%= command.id %> --as probe1 --to bob',
    'PARLEY_TEST_PASSWORD=a PARLEY_TEST_PEER_PASSWORD=b <%= config.bin %> <%= command.id %> --as probe1 --to probe2 --receive --json',
  ],
});
