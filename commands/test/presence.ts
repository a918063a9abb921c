import { syntheticTestCommand } from '../../src/cli/test-commands.js';

export default syntheticTestCommand('presence', {
  summary: "Watch a user's presence through a live deployment, timing each step.",
  description:
    "Signs in as --as, subscribes to --to's presence, waits for the first NOTIFY (and says whether --to is online), then unsubscribes and signs out. The step fails when the subscription is refused or ends at once.",
  examples: [
    'PARLEY_TEST_PASSWORD=secret <%= config.bin %> <%= command.id %> --as probe1 --to bob',
    '<%= config.bin %> <%= command.id %> --as probe1 --to bob --password-stdin --json',
  ],
});
