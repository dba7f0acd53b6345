import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { isOmflowError } from '../errors.js';
import { packageVersion } from '../package-version.js';
import type { CliContext, CommandRun } from './context.js';

/**
 * The `omflow` dispatcher. Each part plugs in a module exporting `run(argv, ctx)`; modules are
 * loaded by path so `common/` never imports a part statically (parts are installed separately).
 */
const COMMANDS: Record<string, { summary: string; module: string }> = {
  booster: { summary: 'run a Booster (load balancer, step dispatcher, active/standby) on 5169', module: '../../booster/cli/booster.js' },
  agent: { summary: 'run a Booster Agent, which starts and supervises the app server; `agent status`', module: '../../agent/cli.js' },
  server: { summary: 'run an app server directly (development; agents start it in a cluster)', module: '../../server/cli.js' },
  dev: { summary: 'run the whole cluster on this machine on an embedded PostgreSQL (npm start)', module: '../../install/dev-cluster/cli.js' },
  migrate: { summary: 'migrate latest | rollback [--all] | status', module: './migrate-command.js' },
  license: { summary: 'license status | issue --key PRIVATE.pem … (vendor tool) | keygen', module: '../../booster/cli/license.js' },
  patch: { summary: 'patch build | apply | status | halt | resume | rollback | keygen', module: '../../agent/patch/cli.js' },
  status: { summary: 'print the cluster: boosters, servers, license, rollout', module: '../../booster/cli/status.js' },
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
  const url = new URL(spec.module, import.meta.url);
  if (!moduleExists(url)) {
    stderr.write(`omflow: "${command}" is not part of this installation\n`);
    return 2;
  }
  const stopSignal =
    overrides.stopSignal ??
    new Promise<NodeJS.Signals>((resolve) => {
      for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => resolve(sig));
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
