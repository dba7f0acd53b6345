import type { Knex } from 'knex';
import { ServerErrors } from '../../errors.js';
import { checkDefinition, type FlowDefinition } from './definition.js';
import type { FlowsStore } from './store.js';

const FLOW_KEY = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const PREFIX = /^[A-Z][A-Z0-9]{0,9}$/;

export interface FlowsServiceDeps {
  store: FlowsStore;
  /**
   * Makes sure tickets can take numbers with this prefix before any does: DDL, so outside the
   * deploy's transaction. Ticket numbering is the tickets feature's (tickets/numbering.ts), which
   * sits above flows, so it is handed in.
   */
  ensureTicketPrefix(prefix: string): Promise<void>;
}

export function createFlowsService(deps: FlowsServiceDeps) {
  const { store } = deps;
  return {
    /** Validates everything, then deploys a new version (new tickets use it; running ones keep theirs). */
    async deploy(trx: Knex.Transaction, input: Record<string, unknown>, actorId: number | null) {
      const problems: string[] = [];
      if (typeof input.flowKey !== 'string' || !FLOW_KEY.test(input.flowKey)) problems.push(`flowKey must match ${FLOW_KEY}`);
      if (typeof input.name !== 'string' || !input.name.trim() || input.name.length > 255) problems.push('name is required');
      if (typeof input.ticketPrefix !== 'string' || !PREFIX.test(input.ticketPrefix)) problems.push(`ticketPrefix must match ${PREFIX} (e.g. REQ)`);
      if (input.slaHours !== undefined && input.slaHours !== null && (!Number.isInteger(input.slaHours) || (input.slaHours as number) <= 0))
        problems.push('slaHours must be a positive integer');
      problems.push(...checkDefinition(input.definition).map((p) => `definition: ${p}`));
      if (problems.length) throw ServerErrors.SERVER_ERR_FLOW_INVALID(undefined, { problems });
      await deps.ensureTicketPrefix(input.ticketPrefix as string);
      const r = await store.deploy(trx, {
        flowKey: input.flowKey as string,
        name: (input.name as string).trim(),
        ticketPrefix: input.ticketPrefix as string,
        slaHours: (input.slaHours as number | undefined) ?? null,
        definition: input.definition as FlowDefinition,
        actorId,
      });
      return { flowKey: input.flowKey as string, ...r };
    },
  };
}

export type FlowsService = ReturnType<typeof createFlowsService>;
