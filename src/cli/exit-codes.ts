import { Command } from '@oclif/core';
import { toCommandError } from './errors.js';

/**
 * The one way out of a failed command, for every command of the binary (bin/run.js
 * installs it once, at start): a catalogued failure (src/cli/errors.ts) becomes oclif's
 * error with its code, suggestion and exit status. oclif takes the exit status from
 * `err.oclif.exit` in a human run but from `err.exitCode` in a --json run (Command.catch);
 * toCommandError sets both, so scripts see the catalogued status either way.
 * ParleyCommand (src/cli/command.ts) does the same for commands run without bin/run.js.
 */
export function installExitCodeBridge(): void {
  const proto = Command.prototype as unknown as {
    catch(err: unknown): Promise<unknown>;
    __parleyBridge?: true;
  };
  if (proto.__parleyBridge) return;
  const original = proto.catch;
  proto.catch = function (this: Command, err: unknown) {
    return original.call(this, toCommandError(err));
  };
  proto.__parleyBridge = true;
}
