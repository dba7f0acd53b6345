import type { CliContext } from '../../common/cli/context.js';
import { parseFlags } from '../../common/cli/context.js';
import { BOOSTER_PATH } from '../../common/protocol/headers.js';
import type { MaintenanceStatus } from '../control-plane/maintenance.js';
import { answerOf, boosterBase, callControl, controlCredentials } from './control-client.js';

const HELP = `Usage: omflow maintenance on [--message TEXT] [--retry-after SECONDS]
       omflow maintenance off
       omflow maintenance status
Options: --booster URL, --json

Cluster-wide maintenance mode: both boosters answer users with a maintenance page (Japanese or
English, from the browser's language; the message as given) and API clients with 503
BOOSTER_ERR_MAINTENANCE and Retry-After (default 120 s). Admin pages, login, health checks,
leadership, step dispatch and patch rollouts keep working. on/off need OMFLOW_OPERATOR_TOKEN with
the write scope, or OMFLOW_CLUSTER_SECRET.
`;

export async function run(argv: string[], ctx: CliContext): Promise<number> {
  const { flags, positionals } = parseFlags(argv, ['help', 'json']);
  const [verb] = positionals;
  const retry = flags['retry-after'];
  if (flags.help || positionals.length !== 1 || !['on', 'off', 'status'].includes(verb) || (retry !== undefined && !/^\d+$/.test(String(retry)))) {
    (flags.help ? ctx.stdout : ctx.stderr).write(HELP);
    return flags.help ? 0 : 2;
  }
  const base = boosterBase(flags.booster, ctx);
  const answer = await answerOf(ctx, `maintenance ${verb}`, base, () => {
    if (verb === 'status') return callControl(base, 'GET', BOOSTER_PATH.status, controlCredentials(ctx, 'read'));
    const body: Record<string, unknown> = { on: verb === 'on' };
    if (verb === 'on' && typeof flags.message === 'string') body.message = flags.message;
    if (verb === 'on' && retry !== undefined) body.retryAfterS = Number(retry);
    return callControl(base, 'POST', BOOSTER_PATH.maintenance, controlCredentials(ctx, 'command'), body);
  });
  if ('exitCode' in answer) return answer.exitCode;
  const r = answer.reply;
  const m = (verb === 'status' ? (r.body as { maintenance?: MaintenanceStatus }).maintenance : r.body) as MaintenanceStatus;
  if (flags.json) ctx.stdout.write(`${JSON.stringify(m)}\n`);
  else if (m.on)
    ctx.stdout.write(
      `maintenance mode is ON since ${m.since ?? '?'} (by ${m.by ?? '?'}); Retry-After ${m.retryAfterS} s${m.message ? `; message: ${m.message}` : ''}\n`,
    );
  else ctx.stdout.write(`maintenance mode is off${m.since ? ` (since ${m.since}, by ${m.by})` : ''}\n`);
  return 0;
}
