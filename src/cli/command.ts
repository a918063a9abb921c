import { Command, type Interfaces } from '@oclif/core';
import { toCommandError } from './errors.js';

/**
 * The base of Parley's commands: a failure thrown from run() (a CliError, or a domain
 * error carrying a catalogued code) leaves through the catalogue, so commands never
 * translate errors themselves. Tests that call `Command.run()` get the same exit statuses
 * as the binary.
 */
export abstract class ParleyCommand extends Command {
  protected override async catch(err: Interfaces.CommandError): Promise<unknown> {
    return super.catch(toCommandError(err) as Interfaces.CommandError);
  }
}
