import type { FastifyInstance } from 'fastify';
export async function ticketsPages(_app: FastifyInstance, _opts: unknown): Promise<void> {}
