import type { CliContext } from '../../common/cli/context.js';
import { parseFlags } from '../../common/cli/context.js';
import { BOOSTER_PATH } from '../../common/protocol/headers.js';
import { answerOf, boosterBase, callControl, controlCredentials } from './control-client.js';

const HELP = `Usage: omflow server drain ID [--reason TEXT]
       omflow server undrain ID
       omflow server weight ID N          (1..1000; default weight 100)
       omflow server retire ID            (a server that no longer heartbeats: its row goes for good)
Options: --booster URL (default OMFLOW_OPERATOR_BOOSTER_URL, else http://127.0.0.1:5169), --json

Operator commands on one app server, through either booster of the pair (both read the servers
rows). Needs OMFLOW_OPERATOR_TOKEN with the write scope, or OMFLOW_CLUSTER_SECRET; the event log
records who ran it.
`;

const VERBS = ['drain', 'undrain', 'weight', 'retire'] as const;

/** `omflow server drain|undrain|weight|retire` (the dispatcher sends these verbs here, not to the app server). */
export async function run(argv: string[], ctx: CliContext): Promise<number> {
  const { flags, positionals } = parseFlags(argv, ['help', 'json']);
  const [verb, id, value] = positionals;
  if (flags.help || !(VERBS as readonly string[]).includes(verb ?? '') || !id || (verb === 'weight') !== (value !== undefined)) {
    (flags.help ? ctx.stdout : ctx.stderr).write(HELP);
    return flags.help ? 0 : 2;
  }
  const base = boosterBase(flags.booster, ctx);
  const path =
    verb === 'drain'
      ? BOOSTER_PATH.drain(id)
      : verb === 'undrain'
        ? BOOSTER_PATH.undrain(id)
        : verb === 'weight'
          ? BOOSTER_PATH.weight(id)
          : BOOSTER_PATH.retire(id);
  const body: Record<string, unknown> =
    verb === 'weight' ? { weight: Number(value) } : verb === 'drain' && typeof flags.reason === 'string' ? { reason: flags.reason } : {};
  const answer = await answerOf(ctx, `server ${verb}`, base, () => callControl(base, 'POST', path, controlCredentials(ctx, 'command'), body));
  if ('exitCode' in answer) return answer.exitCode;
  if (flags.json) {
    ctx.stdout.write(`${JSON.stringify(answer.reply.body)}\n`);
    return 0;
  }
  const done = {
    drain: `${id} is draining: no new requests or steps; in-flight ones finish`,
    undrain: `${id} takes new requests again`,
    weight: `${id} now has weight ${value}`,
    retire: `${id} is retired: its row is gone (it registers anew if it ever heartbeats again)`,
  }[verb as (typeof VERBS)[number]];
  ctx.stdout.write(`${done}\n`);
  return 0;
}
