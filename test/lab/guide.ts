/**
 * The operator guide's commands, as the lab runs them. Every command block the lab runs is
 * marked in docs/operator-guide.md with `<!-- lab:NAME -->` right above its ```sh fence; the lab
 * reads the block from the guide and only swaps the guide's example addresses and names for the
 * lab's, so the install, start order, upgrade and failover-drill sections are what the lab
 * checks. A block the guide no longer has fails the lab.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const GUIDE = join(fileURLToPath(new URL('../..', import.meta.url)), 'docs', 'operator-guide.md');

export interface GuideVars {
  /** The lab's /24 prefix standing in for the guide's 10.0.0 (the lab uses the guide's last octets). */
  subnet: string;
  /** The interface standing in for the guide's eth0. */
  iface: string;
  version: string;
  /** The newer version for the upgrade blocks (`<new>`). */
  newVersion?: string;
  /** linux-x64 or linux-arm64, standing in for the guide's linux-x64. */
  platform: string;
  /** A database URL standing in for the guide's PostgreSQL one (the MariaDB variant). */
  dbUrl?: string;
}

/** The database URL of the guide's examples. */
export const GUIDE_DB_URL = 'postgres://omflow:secret@db.example.internal:5432/omflow';

/** Every lab block of the guide, by name. */
export function guideBlocks(text = readFileSync(GUIDE, 'utf8')): Map<string, string> {
  const blocks = new Map<string, string>();
  const re = /<!-- lab:([a-z0-9-]+) -->\s*\n```(?:sh|bash)\n([\s\S]*?)\n```/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    if (blocks.has(m[1]!)) throw new Error(`the operator guide has two lab:${m[1]} blocks`);
    blocks.set(m[1]!, m[2]!);
  }
  return blocks;
}

/** The guide's block `name` with the lab's addresses, names and versions in it. */
export function guideBlock(name: string, vars: GuideVars): string {
  const block = guideBlocks().get(name);
  if (block === undefined) throw new Error(`docs/operator-guide.md has no <!-- lab:${name} --> block`);
  return block
    .replaceAll(GUIDE_DB_URL, vars.dbUrl ?? GUIDE_DB_URL)
    .replace(/\b10\.0\.0\./g, `${vars.subnet}.`)
    .replace(/\beth0\b/g, vars.iface)
    .replace(/\bdb\.example\.internal\b/g, 'db1')
    .replace(/\blinux-x64\b/g, vars.platform)
    .replace(/<new>/g, vars.newVersion ?? '<new>')
    .replace(/<ver>/g, vars.version);
}
