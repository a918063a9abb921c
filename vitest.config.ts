import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Vitest's default (one fork less than the cores) runs the suite file by file on a
    // two-core CI machine. Most files spend their time waiting on processes they started
    // (the CLI, slapd, PostgreSQL, SIPp, servers), so one fork per core, and never fewer
    // than two, keeps both cores busy.
    maxWorkers: Math.max(2, availableParallelism()),
    globalSetup: ['test/support/global-setup.ts'],
  },
});
