import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const root = fileURLToPath(new URL('..', import.meta.url));

export default defineConfig({
  root,
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/setup/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Two cores, and cluster suites spawn up to ten processes each: in CI one file at a time,
    // so a starved heartbeat never fails a run (about 7 minutes instead of 4).
    maxWorkers: process.env.CI ? 1 : 2,
  },
});
