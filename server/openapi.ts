import type { FastifyInstance } from 'fastify';
import { ServerErrors } from './errors.js';
import { packageVersion } from './version.js';

/** Hand-written OpenAPI 3 description of /api, served at GET /api/openapi.json. */
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: object) => ({ content: { 'application/json': { schema } } });
const err = (description: string) => ({ description, ...json(ref('Error')) });
const idemKey = {
  name: 'Idempotency-Key',
  in: 'header',
  required: false,
  schema: { type: 'string', maxLength: 255 },
  description:
    'Stored in the same transaction as the write; a replay returns the original response (header idempotent-replayed: true); the same key with another body is 422.',
};
const idParam = { name: 'id', in: 'path', required: true, schema: { type: 'integer' } };

export const OPENAPI = {
  openapi: '3.0.3',
  info: {
    title: 'OMFLOW app server API',
    version: packageVersion(),
    description:
      'Forms, versioned flows and tickets. Authenticate with `Authorization: Bearer <token>` (POST /api/auth/login, or an API token from POST /api/auth/tokens). Errors are `{code, message, details}` with stable codes (docs/errors.md).',
  },
  components: {
    securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
    schemas: {
      Error: {
        type: 'object',
        required: ['code', 'message'],
        properties: {
          code: {
            type: 'string',
            enum: [...Object.keys(ServerErrors), 'COMMON_ERR_BAD_REQUEST', 'COMMON_ERR_PAYLOAD_TOO_LARGE', 'COMMON_ERR_DB_RETRYABLE', 'COMMON_ERR_DB_UNIQUE'],
          },
          message: { type: 'string' },
          details: { type: 'object', description: 'SERVER_ERR_VALIDATION: {fields: {fieldKey: reasonCode}}; SERVER_ERR_FLOW_INVALID: {problems: [string]}' },
        },
      },
      User: {
        type: 'object',
        properties: {
          id: { type: 'integer' },
          username: { type: 'string' },
          displayName: { type: 'string' },
          role: { type: 'string', enum: ['admin', 'user'] },
          locale: { type: 'string', enum: ['en', 'ja'] },
        },
      },
      Field: {
        type: 'object',
        required: ['key', 'label', 'type'],
        properties: {
          key: { type: 'string' },
          label: { type: 'string' },
          labelJa: { type: 'string' },
          type: { type: 'string', enum: ['text', 'textarea', 'number', 'date', 'select', 'checkbox', 'user'] },
          required: { type: 'boolean' },
          options: { type: 'array', items: { type: 'string' } },
          min: { type: 'number' },
          max: { type: 'number' },
          minLength: { type: 'integer' },
          maxLength: { type: 'integer' },
          pattern: { type: 'string' },
        },
      },
      Form: {
        type: 'object',
        properties: {
          formKey: { type: 'string' },
          title: { type: 'string' },
          description: { type: 'string' },
          flowKey: { type: 'string' },
          published: { type: 'boolean' },
          fields: { type: 'array', items: ref('Field') },
        },
      },
      FlowDeploy: {
        type: 'object',
        required: ['flowKey', 'name', 'ticketPrefix', 'definition'],
        properties: {
          flowKey: { type: 'string' },
          name: { type: 'string' },
          ticketPrefix: { type: 'string', pattern: '^[A-Z][A-Z0-9]{0,9}$' },
          slaHours: { type: 'integer' },
          definition: {
            type: 'object',
            description:
              '{start, steps: {key: step}}; step.type one of form | condition | compute | http | timer | end. Expressions are JSONata over the ticket fields. See server/README.md.',
          },
        },
      },
      TicketSummary: {
        type: 'object',
        properties: {
          id: { type: 'integer' },
          number: { type: 'string', example: 'REQ-000123' },
          state: { type: 'string', enum: ['open', 'running', 'completed', 'rejected', 'failed', 'cancelled'] },
          currentStep: { type: 'string' },
        },
      },
      Ticket: {
        type: 'object',
        properties: {
          id: { type: 'integer' },
          number: { type: 'string' },
          title: { type: 'string' },
          state: { type: 'string' },
          currentStep: { type: 'string' },
          data: { type: 'object' },
          flowVersion: { type: 'integer' },
          assigneeUserId: { type: 'integer', nullable: true },
          assigneeGroupId: { type: 'integer', nullable: true },
          dueAt: { type: 'string', format: 'date-time', nullable: true },
          canAct: { type: 'boolean' },
          step: { type: 'object', nullable: true },
          history: { type: 'array', items: { type: 'object' } },
          comments: { type: 'array', items: { type: 'object' } },
        },
      },
      TicketPage: {
        type: 'object',
        properties: { items: { type: 'array', items: ref('Ticket') }, total: { type: 'integer' }, page: { type: 'integer' }, pageSize: { type: 'integer' } },
      },
    },
  },
  security: [{ bearer: [] }],
  paths: {
    '/api/auth/login': {
      post: {
        summary: 'Sign in; returns a session token (Bearer). Locks the account after N failures (System settings).',
        security: [],
        requestBody: json({ type: 'object', required: ['username', 'password'], properties: { username: { type: 'string' }, password: { type: 'string' } } }),
        responses: {
          200: {
            description: 'signed in',
            ...json({
              type: 'object',
              properties: { token: { type: 'string' }, csrfToken: { type: 'string' }, user: ref('User'), expiresInMs: { type: 'integer' } },
            }),
          },
          401: err('SERVER_ERR_LOGIN_FAILED'),
          423: err('SERVER_ERR_ACCOUNT_LOCKED'),
        },
      },
    },
    '/api/auth/logout': { post: { summary: 'End this session', responses: { 204: { description: 'signed out' } } } },
    '/api/auth/me': {
      get: {
        summary: 'The signed-in user',
        responses: {
          200: { description: 'user', ...json({ type: 'object', properties: { user: ref('User'), groups: { type: 'array', items: { type: 'integer' } } } }) },
          401: err('SERVER_ERR_UNAUTHENTICATED'),
        },
      },
    },
    '/api/auth/tokens': {
      post: {
        summary: 'Create an API token for external systems (shown once)',
        requestBody: json({ type: 'object', properties: { name: { type: 'string' }, expiresInDays: { type: 'integer' } } }),
        responses: { 201: { description: 'token', ...json({ type: 'object', properties: { id: { type: 'integer' }, token: { type: 'string' } } }) } },
      },
    },
    '/api/users': {
      get: { summary: 'List users', responses: { 200: { description: 'users' } } },
      post: {
        summary: 'Create a user (admin)',
        requestBody: json({
          type: 'object',
          required: ['username', 'displayName', 'password'],
          properties: {
            username: { type: 'string' },
            displayName: { type: 'string' },
            password: { type: 'string', minLength: 8 },
            role: { type: 'string' },
            locale: { type: 'string' },
            email: { type: 'string' },
          },
        }),
        responses: { 201: { description: 'created', ...json(ref('User')) }, 400: err('SERVER_ERR_VALIDATION'), 403: err('SERVER_ERR_FORBIDDEN') },
      },
    },
    '/api/users/{id}': {
      patch: {
        summary: 'Update a user (admin): displayName, role, locale, disabled, password, unlock',
        parameters: [idParam],
        responses: { 200: { description: 'updated', ...json(ref('User')) } },
      },
    },
    '/api/groups': {
      get: { summary: 'List groups with members', responses: { 200: { description: 'groups' } } },
      post: { summary: 'Create a group (admin)', responses: { 201: { description: 'created' } } },
    },
    '/api/groups/{id}/members/{userId}': {
      put: {
        summary: 'Add a member (admin)',
        parameters: [idParam, { name: 'userId', in: 'path', required: true, schema: { type: 'integer' } }],
        responses: { 204: { description: 'added' } },
      },
      delete: {
        summary: 'Remove a member (admin)',
        parameters: [idParam, { name: 'userId', in: 'path', required: true, schema: { type: 'integer' } }],
        responses: { 204: { description: 'removed' } },
      },
    },
    '/api/forms': {
      get: {
        summary: 'Published forms (admins: ?all=true)',
        responses: { 200: { description: 'forms', ...json({ type: 'object', properties: { items: { type: 'array', items: ref('Form') } } }) } },
      },
      post: {
        summary: 'Create or update a form bound to a flow (admin)',
        parameters: [idemKey],
        requestBody: json(ref('Form')),
        responses: { 201: { description: 'saved' }, 400: err('SERVER_ERR_FLOW_INVALID') },
      },
    },
    '/api/forms/{formKey}': {
      get: {
        summary: 'One form',
        parameters: [{ name: 'formKey', in: 'path', required: true, schema: { type: 'string' } }],
        responses: { 200: { description: 'form', ...json(ref('Form')) }, 404: err('SERVER_ERR_NOT_FOUND') },
      },
    },
    '/api/forms/{formKey}/tickets': {
      post: {
        summary: 'Raise a ticket (起票): validates the fields, numbers the ticket (prefix-NNNNNN) and starts the flow',
        parameters: [{ name: 'formKey', in: 'path', required: true, schema: { type: 'string' } }, idemKey],
        requestBody: json({ type: 'object', properties: { data: { type: 'object' }, title: { type: 'string' } } }),
        responses: {
          201: { description: 'created', ...json(ref('TicketSummary')) },
          400: err('SERVER_ERR_VALIDATION (details.fields)'),
          404: err('SERVER_ERR_NOT_FOUND'),
          422: err('SERVER_ERR_IDEMPOTENCY_MISMATCH'),
        },
      },
    },
    '/api/flows': {
      get: { summary: 'Flows (admin)', responses: { 200: { description: 'flows' } } },
      post: {
        summary: 'Deploy a flow: creates it or adds a new version (running tickets keep theirs)',
        parameters: [idemKey],
        requestBody: json(ref('FlowDeploy')),
        responses: {
          201: {
            description: 'deployed',
            ...json({ type: 'object', properties: { flowKey: { type: 'string' }, flowId: { type: 'integer' }, version: { type: 'integer' } } }),
          },
          400: err('SERVER_ERR_FLOW_INVALID'),
        },
      },
    },
    '/api/flows/{flowKey}': {
      get: {
        summary: 'A flow with its latest definition and versions (admin)',
        parameters: [{ name: 'flowKey', in: 'path', required: true, schema: { type: 'string' } }],
        responses: { 200: { description: 'flow' } },
      },
    },
    '/api/flows/validate': {
      post: {
        summary: 'Validate a definition without deploying',
        requestBody: json({ type: 'object', properties: { definition: { type: 'object' } } }),
        responses: { 200: { description: '{valid, problems}' } },
      },
    },
    '/api/tickets': {
      get: {
        summary: 'List, filter, search and paginate tickets (non-admins: their own)',
        parameters: ['state', 'q', 'formKey', 'mine', 'page', 'pageSize'].map((name) => ({
          name,
          in: 'query',
          required: false,
          schema: { type: name === 'page' || name === 'pageSize' ? 'integer' : 'string' },
        })),
        responses: { 200: { description: 'page', ...json(ref('TicketPage')) } },
      },
    },
    '/api/tickets/{id}': {
      get: {
        summary: 'A ticket with history and comments',
        parameters: [idParam],
        responses: { 200: { description: 'ticket', ...json(ref('Ticket')) }, 404: err('SERVER_ERR_NOT_FOUND') },
      },
    },
    '/api/tickets/{id}/actions': {
      post: {
        summary: 'Act on the current form step: approve | submit | reject | send_back | comment | cancel',
        parameters: [idParam, idemKey],
        requestBody: json({
          type: 'object',
          required: ['action'],
          properties: {
            action: { type: 'string', enum: ['approve', 'submit', 'reject', 'send_back', 'comment', 'cancel'] },
            data: { type: 'object' },
            comment: { type: 'string' },
          },
        }),
        responses: {
          200: { description: 'new state', ...json(ref('TicketSummary')) },
          400: err('SERVER_ERR_VALIDATION'),
          403: err('SERVER_ERR_FORBIDDEN'),
          409: err('SERVER_ERR_CONFLICT'),
        },
      },
    },
    '/api/tickets/{id}/comments': {
      post: {
        summary: 'Add a comment',
        parameters: [idParam, idemKey],
        requestBody: json({ type: 'object', properties: { body: { type: 'string' } } }),
        responses: { 201: { description: 'added' } },
      },
    },
    '/api/tasks': {
      get: { summary: 'My tasks: open tickets assigned to me or my groups', responses: { 200: { description: 'page', ...json(ref('TicketPage')) } } },
    },
    '/healthz': { get: { summary: 'Liveness (no I/O)', security: [], responses: { 200: { description: 'ok' } } } },
    '/readyz': {
      get: {
        summary: 'Readiness: database round trip and no pending migration, bounded in time; 503 while draining',
        security: [],
        responses: { 200: { description: 'ready' }, 503: { description: 'not ready' } },
      },
    },
  },
} as const;

export async function openapiRoutes(app: FastifyInstance): Promise<void> {
  app.get('/api/openapi.json', async () => OPENAPI);
}
