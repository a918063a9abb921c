import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import DirectoryPrepare from '../../commands/directory/prepare.js';
import DirectoryReplicate from '../../commands/directory/replicate.js';
import DirectorySyncCommand from '../../commands/directory/sync.js';
import { migratedDataFolder } from '../support/database.js';
import { startTestForests, type TestForests } from './forests.js';

/** The commands end to end through oclif, against real slapd forests and an embedded store. */
let forests: TestForests;
let dir: string;
let configFile: string;
const root = new URL('../..', import.meta.url).pathname;

beforeAll(async () => {
  forests = await startTestForests({ perForest: 100 });
  dir = mkdtempSync(join(tmpdir(), 'parley-dircmd-'));
  const c = forests.config();
  const forest = (f: (typeof c.forests)[number]) => ({
    name: f.name,
    url: f.url,
    bindDn: f.bindDn,
    bindPasswordEnv: `${f.name.toUpperCase()}_PW`,
    baseDn: f.baseDn,
    mapping: { disabled: { attribute: 'employeeType', values: ['disabled'] } },
  });
  configFile = join(dir, 'parley.yaml');
  writeFileSync(
    configFile,
    stringify({
      domain: 'example.com',
      database: { dataDir: join(dir, 'data') },
      directory: {
        central: {
          url: c.central.url,
          bindDn: c.central.bindDn,
          bindPasswordEnv: 'CENTRAL_PW',
          baseDn: c.central.baseDn,
          contactContainer: c.central.contactContainer,
          sipDomain: 'example.com',
          schemaAdmin: { bindDn: forests.central.configDn, bindPasswordEnv: 'CENTRAL_CONFIG_PW' },
        },
        forests: c.forests.map(forest),
      },
    }),
  );
  Object.assign(process.env, forests.env);
  // Commands use a deployment's store, never create one (server start, init and db migrate do).
  migratedDataFolder(join(dir, 'data'));
});

afterAll(async () => {
  await forests?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  process.exitCode = 0;
});

describe('parley directory commands', () => {
  it('sync before prepare fails with a next step', async () => {
    // Without --json oclif throws the error (with --json it prints it and sets process.exitCode).
    const err = await DirectorySyncCommand.run(['--config', configFile], root).catch((e: unknown) => e);
    expect((err as { oclif?: { exit: number } }).oclif?.exit).toBe(1);
    expect(String((err as Error).message)).toMatch(/parleyUser schema/);
  }, 120_000);

  it('prepare, sync --json and replicate', async () => {
    const prepared = await DirectoryPrepare.run(['--config', configFile, '--json'], root);
    expect(prepared).toMatchObject({ schema: 'added', container: 'added' });
    const result = await DirectorySyncCommand.run(['--config', configFile, '--json'], root);
    expect(result).toMatchObject({ status: 'succeeded', exitCode: 0 });
    expect(result.conflicts).toHaveLength(2);
    expect(Object.keys(result)).toEqual(
      expect.arrayContaining([
        'added',
        'updated',
        'disabled',
        'deleted',
        'conflicts',
        'errors',
        'durationMs',
      ]),
    );
    const again = await DirectorySyncCommand.run(['--config', configFile, '--json'], root);
    expect(again).toMatchObject({ added: 0, updated: 0, disabled: 0, deleted: 0 });
    const r = await DirectoryReplicate.run(['--config', configFile, '--json'], root);
    expect(r.issues).toEqual([]);
    expect(r.added).toBe(result.added);
  }, 120_000);

  it('refuses an unknown forest with the configuration exit code', async () => {
    const err = await DirectorySyncCommand.run(['--config', configFile, '--forest', 'nowhere'], root).catch(
      (e: unknown) => e,
    );
    expect((err as { oclif?: { exit: number } }).oclif?.exit).toBe(2);
  });
});
