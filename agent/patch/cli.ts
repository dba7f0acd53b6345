import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { CliContext } from '../../common/cli/context.js';
import { parseFlags } from '../../common/cli/context.js';
import { boosterUrlsOf } from '../../common/config/areas/boosters.js';
import { agentArea, boostersArea, clusterArea, databaseArea } from '../../common/config/areas/index.js';
import { loadConfig } from '../../common/config/load.js';
import { createDatabase } from '../../common/db/create-database.js';
import { CommonErrors } from '../../common/errors.js';
import {
  applyPatch,
  buildPatch,
  collectDirectory,
  generatePatchKeyPair,
  haltRollout,
  limitsFromConfig,
  listPatches,
  notifyBoostersOfPatch,
  RELEASE_ENTRY,
  type Rollout,
  readPrivateKey,
  resumeRollout,
  rollbackRollout,
  rolloutStatus,
  trustedKeysFromConfig,
} from '../../common/patch/index.js';
import { AgentErrors } from '../errors.js';

const HELP = `Usage: omflow patch <command>

  build <dir> --version V --sequence N --key PRIVATE.pem [--out FILE]
                         pack a release directory into a signed patch (tar.gz)
  keygen --out DIR       create an Ed25519 patch key pair; prints the OMFLOW_PATCH_TRUSTED_KEYS entry
  apply <file>           verify, store in the database and roll out to every node (one at a time)
  status [--json]        the latest rollout and every node's version and state
  halt [--reason TEXT]   stop the rollout: no further node installs it
  resume                 continue a halted rollout
  rollback               return every node that installed it to its previous release
  (halt/resume/rollback act on the latest rollout, or --rollout ID)
`;

function dbConfig(ctx: CliContext) {
  return loadConfig([clusterArea, databaseArea, boostersArea, agentArea], { env: ctx.env, file: ctx.configFile });
}

function printRollout(ctx: CliContext, view: Awaited<ReturnType<typeof rolloutStatus>>): void {
  const r: Rollout | null = view.rollout;
  const lines: string[] = [];
  if (!r) lines.push('no patch has been applied');
  else {
    lines.push(`rollout ${r.id}: ${r.version} (sequence ${r.sequence}) — ${r.state}${r.haltedReason ? ` — ${r.haltedReason}` : ''}`);
  }
  lines.push('', `${'node'.padEnd(24) + 'version'.padEnd(16) + 'agent'.padEnd(12) + 'rollout'.padEnd(14)}error`);
  for (const n of view.nodes)
    lines.push(n.serverId.padEnd(24) + (n.version ?? '-').padEnd(16) + (n.agentState ?? '-').padEnd(12) + (n.rolloutState ?? '-').padEnd(14) + (n.error ?? ''));
  ctx.stdout.write(`${lines.join('\n')}\n`);
}

export async function run(argv: string[], ctx: CliContext): Promise<number> {
  const { flags, positionals } = parseFlags(argv, ['json', 'help']);
  const [sub, ...args] = positionals;
  const str = (name: string) => (typeof flags[name] === 'string' ? (flags[name] as string) : undefined);
  const need = (name: string) => {
    const v = str(name);
    if (!v) throw CommonErrors.COMMON_ERR_BAD_REQUEST(`--${name} is required\n\n${HELP}`);
    return v;
  };
  if (!sub || flags.help) {
    ctx.stdout.write(HELP);
    return sub ? 0 : 2;
  }
  switch (sub) {
    case 'keygen': {
      const out = resolve(need('out'));
      mkdirSync(out, { recursive: true });
      const k = generatePatchKeyPair();
      const priv = join(out, 'patch-private.pem');
      if (existsSync(priv)) throw CommonErrors.COMMON_ERR_BAD_REQUEST(`${priv} exists; not overwriting a key`);
      writeFileSync(priv, k.privatePem, { mode: 0o600 });
      writeFileSync(join(out, 'patch-public.pem'), k.publicPem);
      writeFileSync(join(out, 'patch-key-id'), `${k.keyId}\n`);
      ctx.stdout.write(
        `key id ${k.keyId}\nprivate key: ${priv} (keep it secret; sign with --key)\npublic key:  ${join(out, 'patch-public.pem')}\n\nOn every node (and the app servers), trust it with:\nOMFLOW_PATCH_TRUSTED_KEYS=${k.trustedEntry}\n`,
      );
      return 0;
    }
    case 'build': {
      const dir = resolve(args[0] ?? '');
      if (!args[0] || !existsSync(join(dir, RELEASE_ENTRY))) throw AgentErrors.AGENT_ERR_PATCH_NOT_A_RELEASE(`${dir} holds no ${RELEASE_ENTRY}`);
      const sequence = Number(need('sequence'));
      const version = need('version');
      const key = readPrivateKey(readFileSync(resolve(need('key')), 'utf8'));
      const { bytes, manifest } = buildPatch({ version, sequence, privateKey: key, entries: collectDirectory(dir) });
      const out = resolve(str('out') ?? `omflow-patch-${version}.tar.gz`);
      writeFileSync(out, bytes);
      ctx.stdout.write(
        `${out}: version ${manifest.version}, sequence ${manifest.sequence}, ${manifest.files.length} files, ${bytes.length} bytes, key ${manifest.keyId}\n`,
      );
      return 0;
    }
    case 'apply': {
      if (!args[0]) throw CommonErrors.COMMON_ERR_BAD_REQUEST(`apply needs a patch file\n\n${HELP}`);
      const bytes = readFileSync(resolve(args[0]));
      const c = dbConfig(ctx);
      const db = createDatabase(c.database);
      try {
        const stored = await applyPatch(db, bytes, trustedKeysFromConfig(c.agent), {
          verify: { limits: limitsFromConfig(c.agent) },
          chunkBytes: c.agent.chunkBytes,
          parallelism: c.agent.rolloutParallelism,
          appliedBy: 'cli',
          appliedOn: c.cluster.nodeId,
        });
        const reached = await notifyBoostersOfPatch(boosterUrlsOf(c.boosters), { secret: c.cluster.secret, nodeId: c.cluster.nodeId }, stored.notice);
        ctx.stdout.write(
          `patch ${stored.version} (sequence ${stored.sequence}) stored as #${stored.patchId}; rollout ${stored.rolloutId} started` +
            `; boosters notified: ${reached.length}/${boosterUrlsOf(c.boosters).length} (agents also poll the database)\n`,
        );
        return 0;
      } finally {
        await db.destroy();
      }
    }
    case 'status':
    case 'halt':
    case 'resume':
    case 'rollback': {
      const c = dbConfig(ctx);
      const db = createDatabase(c.database);
      try {
        const id = str('rollout') ? Number(str('rollout')) : undefined;
        if (sub === 'halt') await haltRollout(db, id, str('reason') ?? 'halted by an operator (omflow patch halt)');
        if (sub === 'resume') await resumeRollout(db, id);
        if (sub === 'rollback') await rollbackRollout(db, id);
        const view = await rolloutStatus(db);
        if (flags.json) ctx.stdout.write(`${JSON.stringify({ ...view, patches: await listPatches(db, 10) }, null, 2)}\n`);
        else printRollout(ctx, view);
        return 0;
      } finally {
        await db.destroy();
      }
    }
    default:
      ctx.stderr.write(`omflow patch: unknown command "${sub}"\n\n${HELP}`);
      return 2;
  }
}
