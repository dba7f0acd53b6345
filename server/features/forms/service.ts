import type { Knex } from 'knex';
import { ServerErrors } from '../../errors.js';
import { checkFieldDefs, type FieldDef } from './fields.js';
import type { FormsStore } from './store.js';

const FORM_KEY = /^[a-z0-9][a-z0-9_-]{0,63}$/;

/**
 * What forms need of flows: the deployed flow a flowKey names, and a flow's key. Forms sit below
 * flows (a flow's steps are made of form fields), so the flows store is handed in as this.
 */
export interface FlowDirectory {
  byKey(flowKey: string, db?: Knex | Knex.Transaction): Promise<{ id: number } | null>;
  byId(id: number): Promise<{ flowKey: string } | null>;
  list(): Promise<{ id: number; flowKey: string }[]>;
}

export function createFormsService(deps: { store: FormsStore; flows: FlowDirectory }) {
  const { store, flows } = deps;
  return {
    /** Creates or updates a form bound to a deployed flow. */
    async save(trx: Knex.Transaction, input: Record<string, unknown>) {
      const problems: string[] = [];
      if (typeof input.formKey !== 'string' || !FORM_KEY.test(input.formKey)) problems.push(`formKey must match ${FORM_KEY}`);
      if (typeof input.title !== 'string' || !input.title.trim() || input.title.length > 255) problems.push('title is required');
      problems.push(...checkFieldDefs(input.fields));
      const flow = typeof input.flowKey === 'string' ? await flows.byKey(input.flowKey, trx) : null;
      if (!flow) problems.push('flowKey must name a deployed flow');
      if (problems.length) throw ServerErrors.SERVER_ERR_FLOW_INVALID('The form definition is invalid', { problems });
      const id = await store.upsert(trx, {
        formKey: input.formKey as string,
        title: (input.title as string).trim(),
        description: typeof input.description === 'string' ? input.description : null,
        fields: input.fields as FieldDef[],
        flowId: flow!.id,
        published: input.published !== false,
      });
      return { id, formKey: input.formKey as string };
    },
  };
}

export type FormsService = ReturnType<typeof createFormsService>;
