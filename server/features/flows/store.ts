import type { Knex } from 'knex';
import { getHelpers } from '../../../common/db/helpers/index.js';
import type { DbRecord } from '../../../common/db/row.js';
import type { FlowDefinition } from './definition.js';

export interface FlowRow {
  id: number;
  flowKey: string;
  name: string;
  ticketPrefix: string;
  slaHours: number | null;
  latestVersion: number;
}

export interface FlowVersionRow {
  id: number;
  flowId: number;
  version: number;
  definition: FlowDefinition;
}

const toFlow = (r: DbRecord): FlowRow => ({
  id: Number(r.id),
  flowKey: r.flow_key,
  name: r.name,
  ticketPrefix: r.ticket_prefix,
  slaHours: r.sla_hours === null || r.sla_hours === undefined ? null : Number(r.sla_hours),
  latestVersion: Number(r.latest_version),
});

export function createFlowsStore(knex: Knex) {
  const h = getHelpers(knex);
  // Flow versions never change once written: cache them for the step runner and ticket pages.
  const versionCache = new Map<number, FlowVersionRow>();
  const byNumber = new Map<string, FlowVersionRow>();
  return {
    async list(): Promise<FlowRow[]> {
      return (await knex('flows').orderBy('flow_key')).map(toFlow);
    },
    async byKey(flowKey: string, db: Knex | Knex.Transaction = knex): Promise<FlowRow | null> {
      const r = await db('flows').where({ flow_key: flowKey }).first();
      return r ? toFlow(r) : null;
    },
    async byId(id: number, db: Knex | Knex.Transaction = knex): Promise<FlowRow | null> {
      const r = await db('flows').where({ id }).first();
      return r ? toFlow(r) : null;
    },
    async version(id: number, db: Knex | Knex.Transaction = knex): Promise<FlowVersionRow | null> {
      const hit = versionCache.get(id);
      if (hit) return hit;
      const r = await db('flow_versions').where({ id }).first();
      if (!r) return null;
      const row = { id: Number(r.id), flowId: Number(r.flow_id), version: Number(r.version), definition: h.fromJson<FlowDefinition>(r.definition)! };
      versionCache.set(id, row);
      return row;
    },
    /** Version `version` of a flow; cached (versions never change). */
    async versionOf(flowId: number, version: number, db: Knex | Knex.Transaction = knex): Promise<FlowVersionRow | null> {
      const key = `${flowId}:${version}`;
      const hit = byNumber.get(key);
      if (hit) return hit;
      const r = await db('flow_versions').where({ flow_id: flowId, version }).first('id');
      const row = r ? await this.version(Number(r.id), db) : null;
      if (row) byNumber.set(key, row);
      return row;
    },
    async latestVersion(flowId: number, db: Knex | Knex.Transaction = knex): Promise<FlowVersionRow | null> {
      const r = await db('flow_versions').where({ flow_id: flowId }).orderBy('version', 'desc').first('id');
      return r ? this.version(Number(r.id), db) : null;
    },
    async versions(flowId: number): Promise<Array<{ id: number; version: number; createdAt: Date | null }>> {
      return (await knex('flow_versions').where({ flow_id: flowId }).orderBy('version', 'desc').select('id', 'version', 'created_at')).map((r) => ({
        id: Number(r.id),
        version: Number(r.version),
        createdAt: h.toDate(r.created_at),
      }));
    },
    /** Creates the flow on first deploy, then adds version latest+1, in one transaction. */
    async deploy(
      trx: Knex.Transaction,
      f: { flowKey: string; name: string; ticketPrefix: string; slaHours: number | null; definition: FlowDefinition; actorId: number | null },
    ): Promise<{ flowId: number; version: number; versionId: number }> {
      let flow = await trx('flows').where({ flow_key: f.flowKey }).forUpdate().first();
      if (!flow) {
        const id = await h.insertReturningId(trx, 'flows', {
          flow_key: f.flowKey,
          name: f.name,
          ticket_prefix: f.ticketPrefix,
          sla_hours: f.slaHours,
          latest_version: 0,
          created_at: h.now(),
          updated_at: h.now(),
        });
        flow = { id, latest_version: 0 };
      }
      const version = Number(flow.latest_version) + 1;
      await trx('flows')
        .where({ id: flow.id })
        .update({ name: f.name, ticket_prefix: f.ticketPrefix, sla_hours: f.slaHours, latest_version: version, updated_at: h.now() });
      const versionId = await h.insertReturningId(trx, 'flow_versions', {
        flow_id: flow.id,
        version,
        definition: JSON.stringify(f.definition),
        created_by: f.actorId,
        created_at: h.now(),
      });
      return { flowId: Number(flow.id), version, versionId };
    },
  };
}

export type FlowsStore = ReturnType<typeof createFlowsStore>;
