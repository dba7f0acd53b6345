#!/usr/bin/env node
// Entry of the `omflow` command. A release package ships compiled JavaScript next to this
// file; a source checkout runs the TypeScript through tsx.
import { existsSync } from 'node:fs';

const compiled = new URL('../cli/main.js', import.meta.url);
if (!existsSync(compiled)) {
  const { register } = await import('tsx/esm/api');
  register();
}
const { main } = await import(existsSync(compiled) ? compiled.href : new URL('../cli/main.ts', import.meta.url).href);
process.exitCode = await main(process.argv.slice(2));
