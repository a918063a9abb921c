import { writeFileSync } from 'node:fs';
import { Flags } from '@oclif/core';
import { ParleyCommand } from '../../src/cli/command.js';
import { storeFlags } from '../../src/cli/flags.js';
import { runWithStore } from '../../src/cli/store-command.js';
import {
  type DeploymentSettings,
  exportSettings,
  settingsToYaml,
} from '../../src/reports/deployment-settings.js';

export default class ConfigExport extends ParleyCommand {
  static override summary = "Write the deployment's settings as one YAML file.";
  static override description =
    'The settings kept in the store, which every server of the deployment follows: client version rules and their default, federation allow and block lists and the clearinghouse; and, for review, the archiving and presence sections of this parley.yaml. For review, version control, and `parley config import` on a second deployment. YAML on stdout (or --out); --json prints the same as JSON.';
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --out settings.yaml',
    '<%= config.bin %> <%= command.id %> --json',
  ];
  static override enableJsonFlag = true;
  static override flags = {
    ...storeFlags,
    out: Flags.string({ char: 'o', summary: 'File to write (default: stdout).' }),
  };

  async run(): Promise<DeploymentSettings> {
    const { flags } = await this.parse(ConfigExport);
    const settings = await runWithStore(this, flags, (store, config) => exportSettings(store, config));
    const yaml = settingsToYaml(settings);
    if (flags.out) {
      writeFileSync(flags.out, yaml);
      this.logToStderr(`Wrote ${flags.out}.`);
    } else if (!this.jsonEnabled()) {
      process.stdout.write(yaml);
    }
    return settings;
  }
}
