import type { FastifyInstance } from 'fastify';
export async function formsPages(_app: FastifyInstance, _opts: unknown): Promise<void> {}
