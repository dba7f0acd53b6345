/**
 * `npm run test:lab [-- --full] [vitest options]`: the production lab. Without --full it runs
 * the smoke scenario (what CI runs on every submission); --full runs every scenario. One lab at a
 * time on a machine (flock); the figures are printed at the end.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FIGURES_FILE } from './figures.js';
import { LAB_CACHE_DIR } from './rootfs.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const args = process.argv.slice(2);
const full = args.includes('--full');
const rest = args.filter((a) => a !== '--full');
rmSync(FIGURES_FILE, { force: true });
const vitest = [
  join(root, 'node_modules', '.bin', 'vitest'),
  'run',
  '--config',
  'test/lab/vitest.config.ts',
  ...(full ? [] : ['test/lab/smoke.lab.ts']),
  ...rest,
];
let cmd = vitest;
if (process.getuid?.() === 0) {
  mkdirSync(LAB_CACHE_DIR, { recursive: true });
  // Labs are heavy: one at a time on this machine (waits at most an hour for another to finish).
  cmd = ['flock', '-w', '3600', join(LAB_CACHE_DIR, 'run.lock'), ...vitest];
}
const r = spawnSync(cmd[0]!, cmd.slice(1), { cwd: root, stdio: 'inherit', env: { ...process.env, OMFLOW_LAB_FULL: full ? '1' : '0' } });
if (existsSync(FIGURES_FILE)) process.stdout.write(`\nProduction lab figures (${full ? 'full' : 'smoke'}):\n${readFileSync(FIGURES_FILE, 'utf8')}`);
process.exitCode = r.status ?? 1;
