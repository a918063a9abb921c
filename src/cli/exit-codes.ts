import { Command } from '@oclif/core';

/**
 * oclif takes the exit status of a failed command from `err.oclif.exit` in a human run but
 * from `err.exitCode` in a --json run (Command.catch), so `this.error(msg, { exit: 4 })`
 * exits 1 under --json. Scripts run with --json and must see the catalogued code
 * (src/cli/errors.ts): this copies one into the other for every command, once, at start.
 */
export function installExitCodeBridge(): void {
  const proto = Command.prototype as unknown as {
    catch(err: unknown): Promise<unknown>;
    __parleyBridge?: true;
  };
  if (proto.__parleyBridge) return;
  const original = proto.catch;
  proto.catch = function (this: Command, err: unknown) {
    const e = err as { exitCode?: number; oclif?: { exit?: number } } | undefined;
    if (e && e.exitCode === undefined && typeof e.oclif?.exit === 'number') e.exitCode = e.oclif.exit;
    return original.call(this, err);
  };
  proto.__parleyBridge = true;
}
