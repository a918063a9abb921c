import { Flags } from '@oclif/core';
import { ParleyCommand } from '../../src/cli/command.js';
import { CliError, fromCatalogued } from '../../src/cli/errors.js';
import { loadDirectoryConfig } from '../../src/directory/cli.js';
import { type PrepareResult, prepareCentral, SchemaAdminMissingError } from '../../src/directory/schema.js';

export default class DirectoryPrepare extends ParleyCommand {
  static override summary = "Add Parley's schema extension and contact container to the central forest.";
  static override description =
    `Adds the auxiliary object class parleyUser (parleySipAddress, parleyHome, parleyEnabled, parleySourceAnchor, parleySourceForest) to the central forest's schema through cn=config (OpenLDAP), as directory.central.schemaAdmin, and creates the contact container. Only the central forest is touched; running it again changes nothing.

For Active Directory, an administrator extends the schema instead: see docs/directory.md.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --central ldap://central.example.com --dry-run',
  ];
  static override enableJsonFlag = true;
  static override flags = {
    config: Flags.string({ char: 'c', summary: 'parley.yaml to read (default ./parley.yaml when present).' }),
    central: Flags.string({ summary: 'URL of the central forest (default directory.central.url).' }),
    'dry-run': Flags.boolean({ summary: 'Say what would be added; change nothing.' }),
  };

  async run(): Promise<PrepareResult> {
    const { flags } = await this.parse(DirectoryPrepare);
    try {
      const { directory } = loadDirectoryConfig(flags);
      const central = flags.central ? { ...directory.central, url: flags.central } : directory.central;
      const result = await prepareCentral(central, { env: process.env, dryRun: flags['dry-run'] });
      this.log(`schema: ${result.schema}; contact container ${result.contactContainer}: ${result.container}`);
      return result;
    } catch (err) {
      if (fromCatalogued(err)) throw err;
      if (err instanceof SchemaAdminMissingError) throw new CliError('DIRECTORY_SCHEMA_ADMIN', err.message);
      throw new CliError(
        'DIRECTORY_CENTRAL_UNREACHABLE',
        `cannot prepare ${flags.central ?? 'the central forest'}: ${(err as Error).message}`,
      );
    }
  }
}
