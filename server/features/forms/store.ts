import type { Knex } from 'knex';
import { getHelpers } from '../../../common/db/helpers/index.js';
import type { DbRecord } from '../../../common/db/row.js';
import type { FieldDef } from './fields.js';

export interface FormRow {
  id: number;
  formKey: string;
  title: string;
  description: string | null;
  fields: FieldDef[];
  flowId: number | null;
  published: boolean;
}

export function createFormsStore(knex: Knex) {
  const h = getHelpers(knex);
  const toForm = (r: DbRecord): FormRow => ({
    id: Number(r.id),
    formKey: r.form_key,
    title: r.title,
    description: r.description ?? null,
    fields: h.fromJson<FieldDef[]>(r.fields) ?? [],
    flowId: r.flow_id === null || r.flow_id === undefined ? null : Number(r.flow_id),
    published: h.toBool(r.published),
  });
  return {
    async list(opts: { publishedOnly?: boolean } = {}): Promise<FormRow[]> {
      const q = knex('forms').orderBy('form_key');
      if (opts.publishedOnly) q.where({ published: true });
      return (await q).map(toForm);
    },
    async byKey(formKey: string, db: Knex | Knex.Transaction = knex): Promise<FormRow | null> {
      const r = await db('forms').where({ form_key: formKey }).first();
      return r ? toForm(r) : null;
    },
    /** The form with its flow's prefix, SLA and latest version number, in one round trip (ticket creation). */
    async withFlow(
      formKey: string,
      db: Knex | Knex.Transaction = knex,
    ): Promise<(FormRow & { flow: { id: number; ticketPrefix: string; slaHours: number | null; latestVersion: number } | null }) | null> {
      const r = await db('forms as f')
        .leftJoin('flows as fl', 'fl.id', 'f.flow_id')
        .where('f.form_key', formKey)
        .first('f.*', 'fl.ticket_prefix as fl_prefix', 'fl.sla_hours as fl_sla', 'fl.latest_version as fl_latest');
      if (!r) return null;
      const form = toForm(r);
      return {
        ...form,
        flow:
          form.flowId && r.fl_prefix
            ? { id: form.flowId, ticketPrefix: r.fl_prefix, slaHours: r.fl_sla == null ? null : Number(r.fl_sla), latestVersion: Number(r.fl_latest) }
            : null,
      };
    },
    async byId(id: number): Promise<FormRow | null> {
      const r = await knex('forms').where({ id }).first();
      return r ? toForm(r) : null;
    },
    async upsert(trx: Knex.Transaction, f: Omit<FormRow, 'id'>): Promise<number> {
      const row = {
        title: f.title,
        description: f.description,
        fields: JSON.stringify(f.fields),
        flow_id: f.flowId,
        published: f.published,
        updated_at: h.now(),
      };
      const existing = await trx('forms').where({ form_key: f.formKey }).forUpdate().first('id');
      if (existing) {
        await trx('forms').where({ id: existing.id }).update(row);
        return Number(existing.id);
      }
      return h.insertReturningId(trx, 'forms', { ...row, form_key: f.formKey, created_at: h.now() });
    },
  };
}

export type FormsStore = ReturnType<typeof createFormsStore>;
