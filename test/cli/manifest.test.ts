import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '../..');

function commandIds(dir: string): string[] {
  const ids: string[] = [];
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) ids.push(...commandIds(path));
    else if (entry.endsWith('.ts'))
      ids.push(relative(join(root, 'commands'), path).replace(/\.ts$/, '').split('/').join(':'));
  }
  return ids;
}

function committedManifest(): string | undefined {
  try {
    return execFileSync('git', ['show', 'HEAD:oclif.manifest.json'], {
      cwd: root,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
  } catch {
    return undefined;
  }
}

describe('oclif.manifest.json', () => {
  it('lists every command in commands/', () => {
    const manifest = JSON.parse(readFileSync(join(root, 'oclif.manifest.json'), 'utf8')) as {
      commands: Record<string, unknown>;
    };
    expect(Object.keys(manifest.commands).sort()).toEqual(commandIds(join(root, 'commands')).sort());
  });

  // `npm test` rebuilds the manifest first; what is committed must equal what the build makes.
  // Skipped only outside a git checkout (a packed release), where nothing is committed.
  it.skipIf(committedManifest() === undefined)('is committed as the build generates it', () => {
    const committed = committedManifest() ?? '';
    const generated = readFileSync(join(root, 'oclif.manifest.json'), 'utf8');
    const strip = (text: string) => {
      const m = JSON.parse(text) as { version?: string };
      delete m.version;
      return m;
    };
    expect(strip(committed), 'run `npm run build` and commit oclif.manifest.json').toEqual(strip(generated));
  });
});
