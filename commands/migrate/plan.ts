import { writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Command, Flags } from '@oclif/core';
import { loadCliConfig } from '../../src/cli/flags.js';
import { failMigrationCommand, readDirectoryPlacements } from '../../src/migration/cli.js';
import { MigrationError } from '../../src/migration/errors.js';
import { planWaves, type RefusedUser, serializePlan, WAVE_GROUPINGS } from '../../src/migration/plan.js';
import {
  closeHomeStores,
  openHomeStores,
  type ResolvedLocation,
  resolveLocation,
} from '../../src/migration/stores.js';

export interface PlanCommandResult {
  file: string;
  target: string;
  targetUsers: number;
  waves: { name: string; from: string; users: number }[];
  refused: RefusedUser[];
}

/** HOME=LOCATION pairs, comma-separated or repeated. */
function pairs(values: string[], flag: string, fallback?: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const item of values.flatMap((v) => v.split(','))) {
    const eq = item.indexOf('=');
    const home = (eq < 0 ? item : item.slice(0, eq)).trim();
    const location = eq < 0 ? fallback : item.slice(eq + 1).trim();
    if (!home || !location) {
      throw new MigrationError(
        'MIGRATION_STORE_MISSING',
        `--${flag} ${item}: give HOME=LOCATION (a data folder, a postgresql:// URL or $VAR)`,
      );
    }
    out.set(home, location);
  }
  return out;
}

export default class MigratePlan extends Command {
  static override summary = 'Split the users of legacy homes into waves, written to a plan file to review.';
  static override description =
    `Reads the users living in each --from home (a standard server's store: its data folder, reached through the running server's socket) and writes a plan of named waves moving them to the --to home (a pool). Users the target cannot hold are left out and listed: one found in two source homes (it would be doubled), users past --capacity, users without a directory entry for --by ou or --by group. --by group reads the central forest's groups (groupOfNames, groupOfUniqueNames, memberOf): a user in several groups moves with the first by name, users in none in a wave of their own.

Store locations go into the plan as given; pass $VAR (quoted) to keep a URL with a password out of the file. See docs/migration.md.`;
  static override examples = [
    `<%= config.bin %> <%= command.id %> --from legacy1=/srv/parley/legacy1 --from legacy2=/srv/parley/legacy2 --to 'pool1=$PARLEY_DATABASE_URL' --by home --wave-size 2000 --out plan.yaml`,
    `<%= config.bin %> <%= command.id %> --from legacy1=/srv/parley/legacy1 --to 'pool1=$PARLEY_DATABASE_URL' --by ou --config parley.yaml --out plan.yaml --json`,
  ];
  static override enableJsonFlag = true;
  static override flags = {
    from: Flags.string({
      summary: 'A source home and its store: HOME=DATADIR|URL|$VAR (repeatable, or comma-separated).',
      required: true,
      multiple: true,
    }),
    to: Flags.string({
      summary: 'The target home and its store: HOME=URL|$VAR (default store $PARLEY_DATABASE_URL).',
      required: true,
    }),
    by: Flags.string({
      summary: 'How users are grouped into waves.',
      options: [...WAVE_GROUPINGS],
      default: 'home',
    }),
    'wave-size': Flags.integer({ summary: 'Largest wave; bigger groups are split.', min: 1 }),
    filter: Flags.string({ summary: 'Only users whose address matches this glob (*@sales.example.com).' }),
    capacity: Flags.integer({
      summary: 'Users the target can hold at most (including those it has).',
      min: 0,
    }),
    'sign-out-rate': Flags.integer({
      summary: 'Sign-outs per second a run makes on the old home (default 100).',
      min: 1,
    }),
    out: Flags.string({ char: 'o', summary: 'Plan file to write.', required: true }),
    config: Flags.string({
      char: 'c',
      summary: 'parley.yaml with the directory section (for --by ou and --by group).',
    }),
  };

  async run(): Promise<PlanCommandResult> {
    const { flags } = await this.parse(MigratePlan);
    try {
      const sources = pairs(flags.from, 'from');
      const [targetHome, targetLocation] = [...pairs([flags.to], 'to', '$PARLEY_DATABASE_URL')][0];
      const base = process.cwd();
      const where = new Map<string, ResolvedLocation>();
      for (const [home, location] of sources)
        where.set(home, resolveLocation(home, location, process.env, base));
      where.set(targetHome, resolveLocation(targetHome, targetLocation, process.env, base));
      const directory =
        flags.by === 'ou' || flags.by === 'group'
          ? await readDirectoryPlacements(
              loadCliConfig({ config: flags.config }).directory,
              flags.config ?? 'parley.yaml',
              process.env,
              flags.by,
            )
          : undefined;
      const out = resolve(flags.out);
      // Relative folders are written relative to the plan file, which is where run reads them from.
      const locations: Record<string, string> = {};
      for (const [home, location] of [...sources, [targetHome, targetLocation] as const]) {
        const r = where.get(home)!;
        locations[home] = location.startsWith('$') || r.url ? location : relativeTo(dirname(out), r.dataDir!);
      }
      const stores = await openHomeStores(where);
      try {
        const result = await planWaves({
          sources: [...sources.keys()].map((home) => ({ home, store: stores.get(home)!.store })),
          target: { home: targetHome, store: stores.get(targetHome)!.store },
          locations,
          by: flags.by as (typeof WAVE_GROUPINGS)[number],
          waveSize: flags['wave-size'],
          filter: flags.filter,
          capacity: flags.capacity,
          signOutRate: flags['sign-out-rate'],
          directory,
        });
        writeFileSync(out, serializePlan(result.plan, `made ${new Date().toISOString()} --by ${flags.by}`));
        const summary: PlanCommandResult = {
          file: out,
          target: targetHome,
          targetUsers: result.targetUsers,
          waves: result.plan.waves.map((w) => ({ name: w.name, from: w.from, users: w.users.length })),
          refused: result.refused,
        };
        if (!this.jsonEnabled()) {
          this.log(
            `Wrote ${out}: ${summary.waves.length} wave(s) to ${targetHome} (which holds ${summary.targetUsers} user(s) now).`,
          );
          for (const w of summary.waves) this.log(`  ${w.name}: ${w.users} user(s) from ${w.from}`);
          for (const r of summary.refused.slice(0, 20))
            this.log(`  left out: ${r.aor} (${r.from}): ${r.reason}: ${r.detail}`);
          if (summary.refused.length > 20)
            this.log(`  ... and ${summary.refused.length - 20} more left out (--json lists all)`);
        }
        return summary;
      } finally {
        await closeHomeStores(stores);
      }
    } catch (err) {
      failMigrationCommand(this, err);
    }
  }
}

function relativeTo(dir: string, path: string): string {
  const rel = path.startsWith(`${dir}/`) ? path.slice(dir.length + 1) : path;
  return rel || '.';
}
