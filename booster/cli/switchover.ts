import type { CliContext } from '../../common/cli/context.js';
import { parseFlags } from '../../common/cli/context.js';
import { BOOSTER_PATH } from '../../common/protocol/headers.js';
import type { SwitchoverResult } from '../control-plane/switchover.js';
import { answerOf, boosterBase, callActive, controlCredentials } from './control-client.js';

const HELP = `Usage: omflow switchover [--to ID] [--booster URL] [--json]

Moves the active role to the standby without stopping a process (a planned switchover, like
Patroni's): the active hands the leader lease to the standby at the next epoch, the standby takes
it up, and the former active keeps proxying for OMFLOW_BOOSTER_SWITCHOVER_SERVE_MS so clients move
over without a failed request. --to names the standby expected (refused if it is another one).
Sent to the standby, the command follows it to the active. Needs OMFLOW_OPERATOR_TOKEN with the
write scope, or OMFLOW_CLUSTER_SECRET.
`;

export async function run(argv: string[], ctx: CliContext): Promise<number> {
  const { flags, positionals } = parseFlags(argv, ['help', 'json']);
  if (flags.help || positionals.length || flags.to === true) {
    (flags.help ? ctx.stdout : ctx.stderr).write(HELP);
    return flags.help ? 0 : 2;
  }
  const base = boosterBase(flags.booster, ctx);
  const to = typeof flags.to === 'string' ? { to: flags.to } : {};
  const answer = await answerOf(ctx, 'switchover', base, () => callActive(base, BOOSTER_PATH.switchover, controlCredentials(ctx, 'command'), to));
  if ('exitCode' in answer) return answer.exitCode;
  const r = answer.reply;
  const s = r.body as SwitchoverResult;
  if (flags.json) ctx.stdout.write(`${JSON.stringify(s)}\n`);
  else
    ctx.stdout.write(
      `switchover: ${s.from} → ${s.to}, epoch ${s.previousEpoch} → ${s.epoch}, handed over in ${s.handoverMs} ms${s.confirmed ? '' : ' (the standby did not answer yet: it takes the lease up at its next poll)'}\n`,
    );
  return 0;
}
