import { levelFor } from '../common/db/availability.js';
import type { Database } from '../common/db/create-database.js';
import { isOmflowError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import {
  acquireRolloutSlot,
  finishRollback,
  getLatestRollout,
  getRollout,
  haltRollout,
  loadPatchBytes,
  type Rollout,
  releaseLock,
  renewLock,
  setNodeState,
  type TarLimits,
  type TrustedKeys,
  verifyPatch,
} from '../common/patch/index.js';
import { AgentErrors } from './errors.js';
import { sleep } from './process-control.js';
import type { ReleaseStore } from './releases.js';
import type { Supervisor } from './supervisor.js';

export interface RolloutWorkerDeps {
  db: Database;
  nodeId: string;
  releases: ReleaseStore;
  supervisor: Supervisor;
  trusted: TrustedKeys;
  limits: TarLimits;
  undrain: () => Promise<void>;
  log: Logger;
  timings: { pollMs: number; soakMs: number; lockTtlMs: number; deepIntervalMs: number };
}

const describe = (err: unknown) => (isOmflowError(err) ? `${err.code}: ${err.message}` : String((err as Error)?.message ?? err)).slice(0, 1900);

/**
 * Follows the newest rollout in the database. One node at a time (per lock slot): verify and
 * stage the patch itself, drain → stop → switch `current` → start → health gate (deep check
 * keeps passing for the soak time) → undrain. A node that fails its gate reverts and halts the
 * rollout for everyone; the others re-check the rollout state under the lock before touching
 * anything, so they never install it.
 */
export class RolloutWorker {
  private closed = false;
  private wake: (() => void) | null = null;
  private loop: Promise<void> | null = null;
  private waitingForLock = false;
  lastError: string | null = null;

  constructor(private deps: RolloutWorkerDeps) {}

  /** A configuration reload: trusted keys, limits and timings for the next patch (one being installed keeps what it was verified with). */
  reconfigure(p: Pick<RolloutWorkerDeps, 'trusted' | 'limits' | 'timings'>): void {
    this.deps = { ...this.deps, ...p };
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** A patch notice arrived: look now instead of at the next poll. */
  notify(): void {
    this.wake?.();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wake?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    while (!this.closed) {
      try {
        await this.tick();
        this.lastError = null;
      } catch (err) {
        this.lastError = describe(err);
        this.deps.log[levelFor(err)]({ err }, 'rollout step failed; retrying at the next poll');
      }
      if (this.closed) break;
      // While another node holds the lock, look again soon (rollouts are sequential).
      const wait = this.waitingForLock ? Math.min(500, this.deps.timings.pollMs) : this.deps.timings.pollMs;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, wait);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wake = null;
    }
  }

  async tick(): Promise<void> {
    this.waitingForLock = false;
    const { db, nodeId, releases } = this.deps;
    const r = await getLatestRollout(db);
    if (!r) return;
    const cur = releases.current();
    const mine = r.nodes.find((n) => n.serverId === nodeId);
    if (r.state === 'active') {
      if (cur?.version === r.version) {
        // An agent that died between switching `current` and passing the gate finishes the gate now.
        if (mine && ['installing', 'soaking'].includes(mine.state) && mine.fromVersion && releases.has(mine.fromVersion)) {
          await this.withLock(r, () => this.resumeGate(r, mine.fromVersion!));
          return;
        }
        if (mine?.state !== 'done') await setNodeState(db, r.id, nodeId, 'done', { toVersion: r.version });
        return;
      }
      if (mine && ['failed', 'reverted', 'refused'].includes(mine.state)) return; // until an operator resumes
      if (cur && r.sequence <= cur.sequence) {
        await setNodeState(db, r.id, nodeId, 'refused', {
          toVersion: r.version,
          fromVersion: cur.version,
          error: `AGENT_ERR_PATCH_SEQUENCE_REPLAY: ${r.sequence} <= installed ${cur.sequence}`,
        });
        return;
      }
      if (!mine) await setNodeState(db, r.id, nodeId, 'pending', { toVersion: r.version, fromVersion: cur?.version ?? null });
      await this.withLock(r, () => this.install(r));
    } else if (r.state === 'rolling_back') {
      if (cur?.version === r.version && mine?.fromVersion && releases.has(mine.fromVersion)) {
        await this.withLock(r, () => this.rollBack(r, mine.fromVersion!));
      } else if (mine && mine.state !== 'rolled_back' && cur?.version !== r.version) {
        await setNodeState(db, r.id, nodeId, 'rolled_back', { toVersion: r.version });
      }
      await finishRollback(db, r.id);
    }
  }

  private async withLock(r: Rollout, fn: () => Promise<void>): Promise<void> {
    const { db, nodeId, timings } = this.deps;
    const slot = await acquireRolloutSlot(db, nodeId, r.parallelism, timings.lockTtlMs);
    if (!slot) {
      this.waitingForLock = true;
      return;
    }
    let lost = false;
    const renew = setInterval(
      () => {
        renewLock(db, slot.name, nodeId, slot.token, timings.lockTtlMs)
          .then((ok) => {
            if (!ok && !lost) {
              lost = true;
              this.deps.log.warn({ slot }, 'rollout lock lost');
            }
          })
          .catch((err) => this.deps.log[levelFor(err)]({ err }, 'rollout lock renewal failed'));
      },
      Math.max(200, Math.floor(timings.lockTtlMs / 3)),
    );
    try {
      // The state may have changed while we waited (a node failed and halted it).
      const fresh = await getRollout(db, r.id);
      const latest = await getLatestRollout(db);
      if (fresh.state !== r.state || latest?.id !== r.id) return;
      await fn();
    } finally {
      clearInterval(renew);
      await releaseLock(db, slot.name, nodeId, slot.token).catch((err) => this.deps.log.warn({ err }, 'rollout lock release failed'));
    }
  }

  private async install(r: Rollout): Promise<void> {
    const { db, nodeId, releases, supervisor, log } = this.deps;
    const from = releases.current();
    // Verify it ourselves: the database carries patches but is not trusted with their integrity.
    try {
      const bytes = await loadPatchBytes(db, r.patchId);
      const verified = verifyPatch(bytes, this.deps.trusted, { limits: this.deps.limits, minSequenceExclusive: from?.sequence ?? 0 });
      if (verified.manifest.version !== r.version)
        throw AgentErrors.AGENT_ERR_PATCH_FILE_LIST(`patch holds ${verified.manifest.version}, rollout says ${r.version}`);
      releases.install(verified);
      await setNodeState(db, r.id, nodeId, 'staged', { toVersion: r.version, fromVersion: from?.version ?? null });
    } catch (err) {
      log.error({ err, version: r.version }, 'patch refused on this node; rollout halted');
      await setNodeState(db, r.id, nodeId, 'refused', { toVersion: r.version, error: describe(err) });
      await haltRollout(db, r.id, `${nodeId} refused ${r.version}: ${describe(err)}`).catch(() => undefined);
      return;
    }
    log.info({ version: r.version, from: from?.version }, 'installing patch');
    await supervisor.exclusive(async () => {
      supervisor.setPatching(true, `installing ${r.version}`);
      try {
        await setNodeState(db, r.id, nodeId, 'installing', { toVersion: r.version, fromVersion: from?.version ?? null });
        await supervisor.stopInternal({ drain: true, reason: `patch ${r.version}` });
        releases.switchCurrent(r.version);
        try {
          await supervisor.startInternal();
          await setNodeState(db, r.id, nodeId, 'soaking', { toVersion: r.version });
          await this.soak();
        } catch (err) {
          log.error({ err, version: r.version }, 'new release failed its health gate; reverting this node and halting the rollout');
          await this.revert(r, from?.version ?? null, err);
          return;
        }
        await this.deps.undrain();
        await setNodeState(db, r.id, nodeId, 'done', { toVersion: r.version });
        releases.prune(from ? [from.version] : []);
        log.info({ version: r.version }, 'patch installed');
      } finally {
        supervisor.setPatching(false);
      }
    });
  }

  /** A failed health gate: back to the previous release, and the rollout halted cluster-wide. */
  private async revert(r: Rollout, from: string | null, err: unknown): Promise<void> {
    const { db, nodeId, releases, supervisor } = this.deps;
    await setNodeState(db, r.id, nodeId, 'failed', { toVersion: r.version, error: describe(err) });
    await haltRollout(db, r.id, `${nodeId} failed the health gate of ${r.version}: ${describe(err)}`).catch(() => undefined);
    await supervisor.stopInternal({ drain: false });
    if (from) {
      releases.switchCurrent(from);
      await supervisor.startInternal();
    }
    await setNodeState(db, r.id, nodeId, 'reverted', { toVersion: r.version });
    await this.deps.undrain();
  }

  private async resumeGate(r: Rollout, from: string): Promise<void> {
    const { db, nodeId, supervisor, log } = this.deps;
    log.warn({ version: r.version }, 'resuming the health gate of an interrupted install');
    await supervisor.exclusive(async () => {
      supervisor.setPatching(true, `health gate of ${r.version}`);
      try {
        try {
          await supervisor.startInternal();
          await setNodeState(db, r.id, nodeId, 'soaking', { toVersion: r.version });
          await this.soak();
        } catch (err) {
          await this.revert(r, from, err);
          return;
        }
        await this.deps.undrain();
        await setNodeState(db, r.id, nodeId, 'done', { toVersion: r.version });
      } finally {
        supervisor.setPatching(false);
      }
    });
  }

  private async rollBack(r: Rollout, to: string): Promise<void> {
    const { db, nodeId, releases, supervisor, log } = this.deps;
    await supervisor.exclusive(async () => {
      supervisor.setPatching(true, `rolling back to ${to}`);
      try {
        await setNodeState(db, r.id, nodeId, 'rolling_back', { toVersion: r.version });
        await supervisor.stopInternal({ drain: true, reason: `rollback to ${to}` });
        releases.switchCurrent(to);
        await supervisor.startInternal();
        await this.soak();
        await this.deps.undrain();
        await setNodeState(db, r.id, nodeId, 'rolled_back', { toVersion: r.version });
        log.info({ to }, 'rolled back');
      } finally {
        supervisor.setPatching(false);
      }
    });
  }

  /** Health gate: the deep check passes now and keeps passing for the soak time. */
  private async soak(): Promise<void> {
    const { supervisor, timings } = this.deps;
    const until = Date.now() + timings.soakMs;
    for (;;) {
      const r = await supervisor.deepCheck();
      if (r.result !== 'ok' || !supervisor.isRunning())
        throw AgentErrors.AGENT_ERR_HEALTH_GATE(`deep check during soak: ${r.status ?? r.error ?? 'process gone'}`);
      if (Date.now() >= until) return;
      await sleep(Math.max(20, Math.min(timings.deepIntervalMs, 250, until - Date.now())));
    }
  }
}
