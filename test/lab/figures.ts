/**
 * The lab's figures (printed, never asserted on time): each scenario appends lines to one file
 * per run, which `npm run test:lab` prints at the end.
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const FIGURES_FILE = process.env.OMFLOW_LAB_FIGURES ?? join(fileURLToPath(new URL('../..', import.meta.url)), 'test-artifacts', 'lab-figures.txt');

/** One figure line: the scenario, what was measured, the value. Also logged at once. */
export function figure(scenario: string, what: string, value: string): void {
  const line = `${scenario.padEnd(22)} ${what.padEnd(52)} ${value}`;
  mkdirSync(dirname(FIGURES_FILE), { recursive: true });
  appendFileSync(FIGURES_FILE, `${line}\n`);
  process.stderr.write(`[lab figure] ${line}\n`);
}

export const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
