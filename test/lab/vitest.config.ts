import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const root = fileURLToPath(new URL('../..', import.meta.url));

/**
 * The production lab (`npm run test:lab`): its own project, so `npm test` never runs it. One file
 * at a time (each boots its own hosts); long bounds, since a scenario reboots and reinstalls hosts.
 */
export default defineConfig({
  root,
  test: {
    include: ['test/lab/**/*.lab.ts'],
    globalSetup: ['test/lab/global-setup.ts'],
    testTimeout: 20 * 60_000,
    hookTimeout: 20 * 60_000,
    pool: 'forks',
    maxWorkers: 1,
    fileParallelism: false,
    sequence: { concurrent: false },
  },
});
