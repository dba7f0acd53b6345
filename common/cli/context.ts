import type { Writable } from 'node:stream';

/** What the dispatcher hands every subcommand. Subcommands never read process.* themselves. */
export interface CliContext {
  env: Record<string, string | undefined>;
  /** --config FILE (KEY=VALUE, the systemd EnvironmentFile). */
  configFile?: string;
  stdout: Writable;
  stderr: Writable;
  /** Resolves when the process is asked to stop (SIGINT/SIGTERM); long-running commands await it. */
  stopSignal: Promise<NodeJS.Signals>;
}

/** A subcommand module exports `run`, returning the exit code. */
export type CommandRun = (argv: string[], ctx: CliContext) => Promise<number>;

/** Splits `--key value`, `--key=value` and `--flag` from positionals. */
export function parseFlags(argv: string[], booleans: readonly string[] = []): { flags: Record<string, string | true>; positionals: string[] } {
  const flags: Record<string, string | true> = {};
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    const m = /^--([^=]+)(?:=(.*))?$/.exec(arg);
    if (!m) {
      positionals.push(arg);
      continue;
    }
    if (m[2] !== undefined) flags[m[1]] = m[2];
    else if (booleans.includes(m[1]) || i + 1 >= argv.length || argv[i + 1].startsWith('--')) flags[m[1]] = true;
    else flags[m[1]] = argv[++i];
  }
  return { flags, positionals };
}
