import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Flags, Parser } from '@oclif/core';
import { describe, expect, it } from 'vitest';

/**
 * Every example in every command's help parses as written: its flags exist, take the values
 * shown, and the required ones are there. (What it then does is each command's own test.)
 */
const root = resolve(import.meta.dirname, '../..');
const manifest = JSON.parse(readFileSync(resolve(root, 'oclif.manifest.json'), 'utf8')) as {
  commands: Record<string, { examples?: string[] }>;
};

/** Shell words of the parley part of an example line (after a pipe), quotes removed; $(...) stays in its word. */
function words(line: string): string[] {
  const part = line.split(' | ').pop() ?? line;
  const out: string[] = [];
  for (const m of part.matchAll(/"([^"]*)"|'([^']*)'|((?:\$\([^)]*\)|\S)+)/g)) out.push(m[1] ?? m[2] ?? m[3]);
  return out;
}

describe('command examples', () => {
  for (const [id, command] of Object.entries(manifest.commands)) {
    if (id.startsWith('migrate:') || id.startsWith('federation:')) continue;
    it(`${id} examples parse`, async () => {
      const mod = (await import(resolve(root, 'commands', `${id.replace(/:/g, '/')}.ts`))) as {
        default: {
          flags?: Record<string, unknown>;
          args?: Record<string, unknown>;
          enableJsonFlag?: boolean;
        };
      };
      const cls = mod.default;
      for (const example of command.examples ?? []) {
        const line = example
          .replace('<%= config.bin %>', 'parley')
          .replace('<%= command.id %>', id.replace(/:/g, ' '));
        const argv = words(line);
        const start = argv.indexOf('parley') + 1 + id.split(':').length;
        const flags = { ...(cls.flags ?? {}), ...(cls.enableJsonFlag ? { json: Flags.boolean() } : {}) };
        await expect(
          Parser.parse(argv.slice(start), { flags, args: cls.args ?? {}, strict: true } as never),
          line,
        ).resolves.toBeTruthy();
      }
    });
  }
});
