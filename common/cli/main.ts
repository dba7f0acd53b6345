import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { isOmflowError } from '../errors.js';
import { packageVersion } from '../package-version.js';
import { SUPERVISOR_FD_ENV, supervisorGone } from '../supervisor-lifeline.js';
import type { CliContext, CommandRun } from './context.js';

/**
 * The `omflow` dispatcher. Each part plugs in a module exporting `run(argv, ctx)`; modules are
 * loaded by path so `common/` never imports a part statically (parts are installed separately).
 */
const COMMANDS: Record<string, { summary: string; module: string }> = {
  booster: { summary: 'run a Booster (load balancer, step dispatcher, active/standby) on 5169', module: '../../booster/cli/booster.js' },
  agent: { summary: 'run a Booster Agent, which starts and supervises the app server; `agent status`', module: '../../agent/cli.js' },
  server: {
    summary: 'run an app server directly (development; agents start it in a cluster); server drain|undrain|weight|retire ID',
    module: '../../server/cli.js',
  },
  dev: { summary: 'run the whole cluster on this machine on an embedded PostgreSQL (npm start)', module: '../../install/dev-cluster/cli.js' },
  migrate: { summary: 'migrate latest | rollback [--all] | status', module: './migrate-command.js' },
  license: { summary: 'license status | issue --key PRIVATE.pem … (vendor tool) | keygen', module: '../../booster/cli/license.js' },
  patch: { summary: 'patch build | apply | status | halt | resume | rollback | keygen', module: '../../agent/patch/cli.js' },
  status: { summary: 'print the cluster: boosters, servers, license, rollout', module: '../../booster/cli/status.js' },
  config: { summary: 'config check: validate a booster or agent configuration and what it points at', module: './config-command.js' },
  switchover: { summary: 'switchover [--to ID]: hand the active role to the standby booster', module: '../../booster/cli/switchover.js' },
  maintenance: { summary: "maintenance on [--message …] | off | status: the users' maintenance page", module: '../../booster/cli/maintenance.js' },
};

/**
 * Verbs of a command that another part serves: `omflow server drain` talks to the boosters, so
 * booster/ answers it (the module gets the verb as its first argument).
 */
const SUBCOMMANDS: Record<string, Record<string, string>> = {
  server: Object.fromEntries(['drain', 'undrain', 'weight', 'retire'].map((verb) => [verb, '../../booster/cli/server-commands.js'])),
};

export function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return [
    'Usage: omflow [--config FILE] <command> [options]',
    '',
    'Commands:',
    ...lines,
    '',
    'Options:',
    '  --config FILE  KEY=VALUE configuration file (the systemd EnvironmentFile); the environment wins over it',
    '  --help         this help; `omflow <command> --help` for a command',
    '',
    'Configuration reference: docs/configuration.md',
  ].join('\n');
}

function moduleExists(url: URL): boolean {
  const path = fileURLToPath(url);
  return existsSync(path) || existsSync(path.replace(/\.js$/, '.ts'));
}

export async function main(argv: string[], overrides: Partial<CliContext> = {}): Promise<number> {
  const stdout = overrides.stdout ?? process.stdout;
  const stderr = overrides.stderr ?? process.stderr;
  let configFile = overrides.configFile ?? process.env.OMFLOW_CONFIG;
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--config' && rest.length === 0) configFile = argv[++i];
    else if (argv[i].startsWith('--config=') && rest.length === 0) configFile = argv[i].slice('--config='.length);
    else rest.push(argv[i]);
  }
  const [command, ...args] = rest;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    stdout.write(`${usage()}\n`);
    return command ? 0 : 2;
  }
  if (command === '--version' || command === '-v') {
    stdout.write(`${packageVersion('unknown')}\n`);
    return 0;
  }
  const spec = COMMANDS[command];
  if (!spec) {
    stderr.write(`omflow: unknown command "${command}"\n\n${usage()}\n`);
    return 2;
  }
  const url = new URL(SUBCOMMANDS[command]?.[args[0] ?? ''] ?? spec.module, import.meta.url);
  if (!moduleExists(url)) {
    stderr.write(`omflow: "${command}" is not part of this installation\n`);
    return 2;
  }
  const stopSignal =
    overrides.stopSignal ??
    new Promise<NodeJS.Signals>((resolve) => {
      for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => resolve(sig));
      // Started by an agent or the dev cluster: their end going away is a hang-up, and a stop.
      const gone = supervisorGone(process.env);
      // The descriptor is this process's alone: children (data-plane workers) must not take it for theirs.
      delete process.env[SUPERVISOR_FD_ENV];
      void gone?.then(() => {
        stderr.write(`omflow ${command}: the supervising process is gone; stopping\n`);
        resolve('SIGHUP');
      });
    });
  const ctx: CliContext = { env: overrides.env ?? process.env, configFile, stdout, stderr, stopSignal };
  try {
    const mod = (await import(url.href)) as { run: CommandRun };
    return await mod.run(args, ctx);
  } catch (err) {
    if (isOmflowError(err)) {
      stderr.write(`omflow ${command}: ${err.code}: ${err.message}\n`);
      return err.code === 'COMMON_ERR_CONFIG_INVALID' ? 78 : 1; // 78 = EX_CONFIG
    }
    stderr.write(`omflow ${command}: ${(err as Error)?.stack ?? String(err)}\n`);
    return 1;
  }
}
