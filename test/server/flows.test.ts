import { createServer, type Server } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signClusterRequest } from '../../common/protocol/cluster-auth.js';
import { SERVER_PATH } from '../../common/protocol/headers.js';
import { leaseStep } from '../../common/protocol/steps.js';
import { WIRE_ERROR } from '../../common/protocol/wire-errors.js';
import { buildServer } from '../../server/app.js';
import { seed } from '../../server/seed.js';
import { createTestDatabase, type TestDatabase, vendorsUnderTest } from '../helpers/db.js';
import { waitFor } from '../helpers/poll.js';
import { SECRET, serverConfig } from './helpers.js';

/** A loopback "external system": fails `failures` times, then answers 200. */
async function flakyServer(failures: number, failStatus = 500) {
  const calls: Array<{ key: string | undefined; body: string; status: number }> = [];
  const srv: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const status = calls.length < failures ? failStatus : 200;
      calls.push({ key: req.headers['idempotency-key'] as string | undefined, body, status });
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(status === 200 ? { ticketRef: 'EXT-1' } : { error: 'boom' }));
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const { port } = srv.address() as { port: number };
  return { url: `http://127.0.0.1:${port}/hook`, calls, close: () => new Promise<void>((r) => srv.close(() => r())) };
}

export function httpFlow(hookUrl: string) {
  return {
    flowKey: 'purchase',
    name: 'Purchase',
    ticketPrefix: 'PUR',
    slaHours: 24,
    definition: {
      start: 'check',
      steps: {
        check: { type: 'condition', branches: [{ when: 'amount >= 1000', next: 'big' }], default: 'small' },
        big: { type: 'compute', set: { tier: '"big"', total: 'amount * 1.1', label: '$uppercase(item) & "-" & tier' }, next: 'notify' },
        small: { type: 'compute', set: { tier: '"small"', total: 'amount' }, next: 'notify' },
        notify: {
          type: 'http',
          url: hookUrl,
          body: '{"item": item, "total": total}',
          retries: 3,
          backoffMs: 20,
          timeoutMs: 2000,
          resultField: 'external',
          next: 'approve',
        },
        approve: {
          type: 'form',
          assignee: { user: 'admin' },
          fields: [{ key: 'note', label: 'Note', type: 'text', required: true }],
          next: 'done',
          onReject: 'rejected',
        },
        done: { type: 'end' },
        rejected: { type: 'end', state: 'rejected' },
      },
    },
  };
}

const purchaseForm = {
  formKey: 'purchase',
  title: 'Purchase',
  flowKey: 'purchase',
  fields: [
    { key: 'item', label: 'Item', type: 'text', required: true, maxLength: 50 },
    { key: 'amount', label: 'Amount', type: 'number', required: true, min: 1 },
    { key: 'kind', label: 'Kind', type: 'select', options: ['a', 'b'] },
    { key: 'when', label: 'When', type: 'date' },
  ],
};

for (const vendor of vendorsUnderTest().filter((v) => v === 'postgres' || v === 'mysql')) {
  describe(`flows and tickets on ${vendor} (in process)`, () => {
    let t: TestDatabase;
    let app: FastifyInstance;
    let hook: Awaited<ReturnType<typeof flakyServer>>;
    let admin: Record<string, string>;
    beforeAll(async () => {
      t = await createTestDatabase(vendor, { migrate: true });
      await seed(t.db, { adminUser: 'admin', adminPassword: 'admin-pass-1', demo: true });
      hook = await flakyServer(2);
      app = await buildServer({ config: serverConfig(t.url, { OMFLOW_SERVER_DISPATCH_POLL_MS: '100' }), db: t.db });
      app.omflow.startBackground('http://127.0.0.1:1');
      const token = (await app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: 'admin', password: 'admin-pass-1' } })).json().token;
      admin = { authorization: `Bearer ${token}` };
      const flow = await app.inject({ method: 'POST', url: '/api/flows', headers: admin, payload: httpFlow(hook.url) });
      expect(flow.statusCode, flow.body).toBe(201);
      const form = await app.inject({ method: 'POST', url: '/api/forms', headers: admin, payload: purchaseForm });
      expect(form.statusCode, form.body).toBe(201);
    });
    afterAll(async () => {
      await app?.close();
      await hook?.close();
      await t?.drop();
    });

    it('condition → compute → http (fails twice, then succeeds) → form: computed fields, exactly one successful call', async () => {
      const r = await app.inject({ method: 'POST', url: '/api/forms/purchase/tickets', headers: admin, payload: { data: { item: 'laptop', amount: 2000 } } });
      expect(r.statusCode, r.body).toBe(201);
      const created = r.json();
      expect(created.number).toMatch(/^PUR-\d{6}$/);
      const ticket = await waitFor(
        async () => {
          const d = (await app.inject({ url: `/api/tickets/${created.id}`, headers: admin })).json();
          return d.state === 'open' ? d : null;
        },
        { what: 'the ticket to reach the form step' },
      );
      expect(ticket.currentStep).toBe('approve');
      expect(ticket.data).toMatchObject({
        item: 'laptop',
        amount: 2000,
        tier: 'big',
        label: 'LAPTOP-big',
        external: { status: 200, body: { ticketRef: 'EXT-1' } },
      });
      expect(ticket.data.total).toBeCloseTo(2200);
      expect(hook.calls.map((c) => c.status)).toEqual([500, 500, 200]);
      expect(hook.calls.filter((c) => c.status === 200)).toHaveLength(1);
      const stepRow = await t.knex('steps').where({ ticket_id: created.id, step_key: 'notify' }).first();
      expect(new Set(hook.calls.map((c) => c.key))).toEqual(new Set([`step-${stepRow.id}`]));
      expect(JSON.parse(hook.calls[2].body)).toMatchObject({ item: 'laptop', total: expect.closeTo(2200) });
      expect(ticket.history.map((h: { action: string; step: string }) => `${h.action}:${h.step ?? ''}`)).toEqual([
        'create:',
        'enter:check',
        'step.done:check',
        'enter:big',
        'step.done:big',
        'enter:notify',
        'step.done:notify',
        'enter:approve',
      ]);
      const tasks = (await app.inject({ url: '/api/tasks', headers: admin })).json();
      expect(tasks.items.map((x: { id: number }) => x.id)).toContain(created.id);
      // The human step validates its own fields, then the ticket completes.
      const bad = await app.inject({ method: 'POST', url: `/api/tickets/${created.id}/actions`, headers: admin, payload: { action: 'approve', data: {} } });
      expect(bad.json()).toMatchObject({ code: 'SERVER_ERR_VALIDATION', details: { fields: { note: 'required' } } });
      const ok = await app.inject({
        method: 'POST',
        url: `/api/tickets/${created.id}/actions`,
        headers: admin,
        payload: { action: 'approve', data: { note: 'fine' }, comment: 'thanks' },
      });
      expect(ok.json()).toMatchObject({ state: 'completed', currentStep: 'done' });
      const again = await app.inject({
        method: 'POST',
        url: `/api/tickets/${created.id}/actions`,
        headers: admin,
        payload: { action: 'approve', data: { note: 'x' } },
      });
      expect(again.json().code).toBe('SERVER_ERR_CONFLICT');
    });

    it('expressions are sandboxed and bounded (no eval, no process access, no runaway loops)', async () => {
      const { evaluate } = await import('../../server/features/flows/definition.js');
      expect(await evaluate('$round(amount * 1.1)', { amount: 10 })).toBe(11);
      expect(await evaluate('process', {})).toBeUndefined();
      await expect(evaluate('$count([1..10000000])', {})).rejects.toMatchObject({ code: expect.stringMatching(/^D/) });
      await expect(evaluate('($f := function($n) { $f($n + 1) }; $f(0))', {})).rejects.toMatchObject({ code: expect.stringMatching(/^(D1011|D1012|U1001)$/) });
    });

    it('bad submissions get field-level errors and create nothing', async () => {
      const before = await t.knex('tickets').count({ n: '*' }).first();
      const r = await app.inject({
        method: 'POST',
        url: '/api/forms/purchase/tickets',
        headers: admin,
        payload: { data: { item: 'x'.repeat(51), amount: 'lots', kind: 'c', when: '2026-13-45' } },
      });
      expect(r.statusCode).toBe(400);
      expect(r.json()).toMatchObject({
        code: 'SERVER_ERR_VALIDATION',
        details: { fields: { item: 'maxLength', amount: 'type', kind: 'option', when: 'type' } },
      });
      const missing = await app.inject({ method: 'POST', url: '/api/forms/purchase/tickets', headers: admin, payload: { data: { amount: 0 } } });
      expect(missing.json().details.fields).toEqual({ item: 'required', amount: 'min' });
      const after = await t.knex('tickets').count({ n: '*' }).first();
      expect(Number(after!.n)).toBe(Number(before!.n));
      const badFlow = await app.inject({
        method: 'POST',
        url: '/api/flows',
        headers: admin,
        payload: {
          flowKey: 'x',
          name: 'X',
          ticketPrefix: 'X',
          definition: { start: 'a', steps: { a: { type: 'compute', set: { y: '1 +' }, next: 'nowhere' } } },
        },
      });
      expect(badFlow.json().code).toBe('SERVER_ERR_FLOW_INVALID');
      expect(badFlow.json().details.problems.join('\n')).toMatch(
        /steps\.a\.set\.y is not a valid expression[\s\S]*steps\.a\.next must name a step[\s\S]*end step/,
      );
    });

    it('Idempotency-Key: a replay returns the original answer; the same key with another body is 422', async () => {
      const headers = { ...admin, 'idempotency-key': 'k-1' };
      const payload = { data: { item: 'pen', amount: 5 } };
      const a = await app.inject({ method: 'POST', url: '/api/forms/purchase/tickets', headers, payload });
      const b = await app.inject({ method: 'POST', url: '/api/forms/purchase/tickets', headers, payload });
      expect(a.statusCode).toBe(201);
      expect(b.statusCode).toBe(201);
      expect(b.json()).toEqual(a.json());
      expect(b.headers['idempotent-replayed']).toBe('true');
      expect(Number((await t.knex('tickets').where({ ticket_no: a.json().number }).count({ n: '*' }).first())!.n)).toBe(1);
      const c = await app.inject({ method: 'POST', url: '/api/forms/purchase/tickets', headers, payload: { data: { item: 'pen', amount: 6 } } });
      expect(c.statusCode).toBe(422);
      expect(c.json().code).toBe('SERVER_ERR_IDEMPOTENCY_MISMATCH');
    });

    it('an http step answered with a client error (422) fails at once: no retry that a receiver could apply twice', async () => {
      const refusing = await flakyServer(1000, 422);
      try {
        const flow = await app.inject({
          method: 'POST',
          url: '/api/flows',
          headers: admin,
          payload: {
            flowKey: 'refuse',
            name: 'Refuse',
            ticketPrefix: 'RFS',
            definition: { start: 'call', steps: { call: { type: 'http', url: refusing.url, retries: 3, backoffMs: 10, next: 'done' }, done: { type: 'end' } } },
          },
        });
        expect(flow.statusCode, flow.body).toBe(201);
        expect(
          (
            await app.inject({
              method: 'POST',
              url: '/api/forms',
              headers: admin,
              payload: { formKey: 'refuse', title: 'Refuse', flowKey: 'refuse', fields: [] },
            })
          ).statusCode,
        ).toBe(201);
        const ticket = (await app.inject({ method: 'POST', url: '/api/forms/refuse/tickets', headers: admin, payload: { data: {} } })).json();
        const failed = await waitFor(
          async () => {
            const d = (await app.inject({ url: `/api/tickets/${ticket.id}`, headers: admin })).json();
            return d.state === 'failed' ? d : null;
          },
          { what: 'ticket failed' },
        );
        expect(failed.history.at(-1)).toMatchObject({ action: 'step.failed', step: 'call', output: { error: 'HTTP 422' } });
        expect(refusing.calls).toHaveLength(1);
      } finally {
        await refusing.close();
      }
    });

    it('timer, send back, reject, cancel and a failing http step', async () => {
      const failing = await flakyServer(1000);
      try {
        const flow = await app.inject({
          method: 'POST',
          url: '/api/flows',
          headers: admin,
          payload: {
            flowKey: 'misc',
            name: 'Misc',
            ticketPrefix: 'MSC',
            definition: {
              start: 'wait',
              steps: {
                wait: { type: 'timer', durationMs: 300, next: 'review' },
                review: { type: 'form', assignee: { creator: true }, next: 'call', onSendBack: 'fix' },
                fix: { type: 'form', assignee: { creator: true }, next: 'call' },
                call: { type: 'http', url: failing.url, retries: 1, backoffMs: 10, timeoutMs: 1000, next: 'done' },
                done: { type: 'end' },
              },
            },
          },
        });
        expect(flow.statusCode, flow.body).toBe(201);
        expect(
          (await app.inject({ method: 'POST', url: '/api/forms', headers: admin, payload: { formKey: 'misc', title: 'Misc', flowKey: 'misc', fields: [] } }))
            .statusCode,
        ).toBe(201);
        const raise = async () => (await app.inject({ method: 'POST', url: '/api/forms/misc/tickets', headers: admin, payload: { data: {} } })).json();
        const act = async (id: number, action: string) =>
          (await app.inject({ method: 'POST', url: `/api/tickets/${id}/actions`, headers: admin, payload: { action } })).json();
        const detail = async (id: number) => (await app.inject({ url: `/api/tickets/${id}`, headers: admin })).json();
        const until = (id: number, state: string) =>
          waitFor(
            async () => {
              const d = await detail(id);
              return d.state === state ? d : null;
            },
            { what: `ticket ${id} ${state}` },
          );

        const a = await raise();
        expect(a).toMatchObject({ state: 'running', currentStep: 'wait' });
        await until(a.id, 'open');
        expect(await act(a.id, 'send_back')).toMatchObject({ state: 'open', currentStep: 'fix' });
        expect((await act(a.id, 'send_back')).code).toBe('SERVER_ERR_CONFLICT');
        expect(await act(a.id, 'submit')).toMatchObject({ state: 'running', currentStep: 'call' });
        const failed = await until(a.id, 'failed');
        expect(failed.history.at(-1)).toMatchObject({ action: 'step.failed', step: 'call', output: { error: 'HTTP 500' } });
        expect(failing.calls).toHaveLength(2);

        const b = await raise();
        await until(b.id, 'open');
        expect(await act(b.id, 'reject')).toMatchObject({ state: 'rejected' });

        const c = await raise();
        expect(await act(c.id, 'cancel')).toMatchObject({ state: 'cancelled' });
        await new Promise((r) => setTimeout(r, 600));
        expect((await detail(c.id)).state).toBe('cancelled');
        expect(await t.knex('steps').where({ ticket_id: c.id }).select('state')).toEqual([{ state: 'cancelled' }]);

        // Another user neither sees nor acts on the admin's tickets.
        await app.inject({ method: 'POST', url: '/api/users', headers: admin, payload: { username: 'eve', displayName: 'Eve', password: 'eve-pass-123' } });
        const eve = {
          authorization: `Bearer ${(await app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: 'eve', password: 'eve-pass-123' } })).json().token}`,
        };
        expect((await app.inject({ url: `/api/tickets/${b.id}`, headers: eve })).json().code).toBe('SERVER_ERR_NOT_FOUND');
        expect((await app.inject({ url: '/api/tickets', headers: eve })).json().total).toBe(0);
      } finally {
        await failing.close();
      }
    });

    it('pure steps after a step run in its transaction, at most MAX_CHAINED_STEPS in a row: a loop of 40 goes back through the queue', async () => {
      const loopFlow = {
        flowKey: 'loop',
        name: 'Loop',
        ticketPrefix: 'LOOP',
        definition: {
          start: 'inc',
          steps: {
            inc: { type: 'compute', set: { n: '$exists(n) ? n + 1 : 1' }, next: 'more' },
            more: { type: 'condition', branches: [{ when: 'n < 20', next: 'inc' }], default: 'review' },
            review: { type: 'form', assignee: { user: 'admin' }, next: 'done' },
            done: { type: 'end' },
          },
        },
      };
      expect((await app.inject({ method: 'POST', url: '/api/flows', headers: admin, payload: loopFlow })).statusCode).toBe(201);
      const form = { formKey: 'loop', title: 'Loop', flowKey: 'loop', fields: [{ key: 'title', label: 'Title', type: 'text' }] };
      expect((await app.inject({ method: 'POST', url: '/api/forms', headers: admin, payload: form })).statusCode).toBe(201);
      const created = (await app.inject({ method: 'POST', url: '/api/forms/loop/tickets', headers: admin, payload: { data: { title: 'x' } } })).json();
      const ticket = await waitFor(
        async () => {
          const d = (await app.inject({ url: `/api/tickets/${created.id}`, headers: admin })).json();
          return d.state === 'open' ? d : null;
        },
        { what: 'the loop to end at the human step' },
      );
      expect(ticket).toMatchObject({ currentStep: 'review', data: { n: 20 } });
      // 40 pure steps: the first and every one after 16 chained ones went through the queue.
      const steps = await t.knex('steps').where({ ticket_id: created.id }).orderBy('id').select('step_key', 'state', 'dispatch_count');
      expect(steps).toHaveLength(40);
      expect(steps.every((r) => r.state === 'done')).toBe(true);
      const queued = steps.map((r, i) => (Number(r.dispatch_count) > 0 ? i : -1)).filter((i) => i >= 0);
      expect(queued).toEqual([0, 17, 34]);
      const history = ticket.history.map((h: { action: string; step: string }) => `${h.action}:${h.step ?? ''}`);
      expect(history.slice(0, 5)).toEqual(['create:', 'enter:inc', 'step.done:inc', 'enter:more', 'step.done:more']);
      expect(history.filter((x: string) => x.startsWith('step.done:'))).toHaveLength(40);
      expect(history.at(-1)).toBe('enter:review');
    });

    it('flows are versioned: a running ticket keeps its version, new tickets use the newest', async () => {
      const first = (
        await app.inject({
          method: 'POST',
          url: '/api/forms/it-request/tickets',
          headers: admin,
          payload: { data: { title: 'Mouse', category: 'hardware', amount: 3000 } },
        })
      ).json();
      const flow = (await app.inject({ url: '/api/flows/it-request', headers: admin })).json();
      const v2 = { ...flow.definition, steps: { ...flow.definition.steps, small: { ...flow.definition.steps.small, set: { approvalLevel: '"v2"' } } } };
      const dep = await app.inject({
        method: 'POST',
        url: '/api/flows',
        headers: admin,
        payload: { flowKey: 'it-request', name: 'IT request', ticketPrefix: 'REQ', definition: v2 },
      });
      expect(dep.json().version).toBe(2);
      const second = (
        await app.inject({
          method: 'POST',
          url: '/api/forms/it-request/tickets',
          headers: admin,
          payload: { data: { title: 'Keyboard', category: 'hardware', amount: 3000 } },
        })
      ).json();
      const a = await waitFor(
        async () => {
          const d = (await app.inject({ url: `/api/tickets/${first.id}`, headers: admin })).json();
          return d.state === 'open' ? d : null;
        },
        { what: 'first' },
      );
      const b = await waitFor(
        async () => {
          const d = (await app.inject({ url: `/api/tickets/${second.id}`, headers: admin })).json();
          return d.state === 'open' ? d : null;
        },
        { what: 'second' },
      );
      expect(a.flowVersion).toBe(1);
      expect(a.data.approvalLevel).toBe('team');
      expect(a.data.totalWithTax).toBe(3300);
      expect(b.flowVersion).toBe(2);
      expect(b.data.approvalLevel).toBe('v2');
      expect(first.number).toMatch(/^REQ-\d{6}$/);
    });
  });

  describe(`step dispatch fencing on ${vendor}`, () => {
    let t: TestDatabase;
    let app: FastifyInstance;
    let admin: Record<string, string>;
    beforeAll(async () => {
      t = await createTestDatabase(vendor, { migrate: true });
      await seed(t.db, { adminUser: 'admin', adminPassword: 'admin-pass-1', demo: true });
      // As under a booster: no built-in dispatcher; steps arrive by POST /_internal/steps/dispatch.
      app = await buildServer({ config: serverConfig(t.url, { BOOSTER_IP: '127.0.0.1', BOOSTER_PORT: '1' }), db: t.db });
      const token = (await app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: 'admin', password: 'admin-pass-1' } })).json().token;
      admin = { authorization: `Bearer ${token}` };
    });
    afterAll(async () => {
      await app?.close();
      await t?.drop();
    });

    const dispatch = (body: object) => {
      const payload = JSON.stringify(body);
      return app.inject({
        method: 'POST',
        url: SERVER_PATH.dispatchStep,
        payload,
        headers: { 'content-type': 'application/json', ...signClusterRequest(SECRET, 'booster-a', 'POST', SERVER_PATH.dispatchStep, payload) },
      });
    };

    it('a step dispatched with an older epoch is refused and changes nothing; the current epoch runs it', async () => {
      // A signed heartbeat reply from the newest booster (epoch 5) teaches the server its epoch;
      // an unsigned X-Booster-Epoch never raises it (see auth.test.ts).
      app.omflow.deps.fence.admit(5);
      expect((await app.inject({ url: '/api/auth/me', headers: { ...admin, 'x-booster-epoch': '5' } })).statusCode).toBe(200);
      const stale = await app.inject({ url: '/api/auth/me', headers: { ...admin, 'x-booster-epoch': '4' } });
      expect(stale.statusCode).toBe(409);
      expect(stale.json().code).toBe('SERVER_ERR_STALE_EPOCH');

      const created = (
        await app.inject({
          method: 'POST',
          url: '/api/forms/it-request/tickets',
          headers: admin,
          payload: { data: { title: 'Disk', category: 'hardware', amount: 10 } },
        })
      ).json();
      expect(created.state).toBe('running');
      const step = await t.knex('steps').where({ ticket_id: created.id }).first();
      // The zombie booster (epoch 3) leased it and dispatches it.
      expect(await leaseStep(t.knex, { stepId: Number(step.id), serverId: 'test-node', epoch: 3, leaseMs: 60_000 })).toBe(true);
      const rowBefore = await t.knex('steps').where({ id: step.id }).first();
      const ticketBefore = await t.knex('tickets').where({ id: created.id }).first();
      const historyBefore = await t.knex('ticket_history').where({ ticket_id: created.id }).count({ n: '*' }).first();
      const refused = await dispatch({ stepId: Number(step.id), epoch: 3, leaseMs: 60_000, attempt: 1 });
      expect(refused.statusCode).toBe(409);
      expect(refused.json().code).toBe('SERVER_ERR_STALE_EPOCH');
      await new Promise((r) => setTimeout(r, 300));
      expect(await t.knex('steps').where({ id: step.id }).first()).toEqual(rowBefore);
      expect(await t.knex('tickets').where({ id: created.id }).first()).toEqual(ticketBefore);
      expect(await t.knex('ticket_history').where({ ticket_id: created.id }).count({ n: '*' }).first()).toEqual(historyBefore);

      // Unsigned or wrongly signed dispatches are refused too.
      const unsigned = await app.inject({
        method: 'POST',
        url: SERVER_PATH.dispatchStep,
        payload: { stepId: Number(step.id), epoch: 9, leaseMs: 1000, attempt: 1 },
      });
      expect(unsigned.json().code).toBe('COMMON_ERR_CLUSTER_AUTH');

      // The current booster (epoch 5) re-leases it once the zombie's lease lapsed (forced here) and dispatches it.
      await t
        .knex('steps')
        .where({ id: step.id })
        .update({ lease_expires_at: new Date(Date.now() - 60_000) });
      expect(await leaseStep(t.knex, { stepId: Number(step.id), serverId: 'test-node', epoch: 5, leaseMs: 60_000 })).toBe(true);
      const payload = JSON.stringify({ stepId: Number(step.id), epoch: 5, leaseMs: 60_000, attempt: 2 });
      const signed = {
        method: 'POST' as const,
        url: SERVER_PATH.dispatchStep,
        payload,
        headers: { 'content-type': 'application/json', ...signClusterRequest(SECRET, 'booster-a', 'POST', SERVER_PATH.dispatchStep, payload) },
      };
      const accepted = await app.inject(signed);
      expect(accepted.statusCode, accepted.body).toBe(202);
      // The same signed dispatch captured and sent again is refused before the fence.
      const replayed = await app.inject(signed);
      expect(replayed.statusCode).toBe(401);
      expect(replayed.json().code).toBe(WIRE_ERROR.clusterReplay);
      const done = await waitFor(
        async () => {
          const r = await t.knex('steps').where({ id: step.id }).first();
          return r.state === 'done' ? r : null;
        },
        { what: 'the step to finish' },
      );
      expect(Number(done.epoch)).toBe(5);
      // The pure step that follows (compute 'small') ran at once in the same fenced transaction:
      // same server, same epoch; the ticket waits at the human step.
      const next = await t.knex('steps').where({ ticket_id: created.id }).andWhere('id', '>', step.id).first();
      expect(next).toMatchObject({ step_key: 'small', state: 'done', assigned_server: 'test-node' });
      expect(Number(next.epoch)).toBe(5);
      expect(await t.knex('tickets').where({ id: created.id }).first('state', 'current_step')).toEqual({ state: 'open', current_step: 'approve' });
    });
  });
}
