// Baseline for bench/booster-throughput: fastify + @fastify/reply-from, the common Node gateway.

import replyFrom from '@fastify/reply-from';
import Fastify from 'fastify';

const app = Fastify({ logger: false });
await app.register(replyFrom, { base: process.env.UPSTREAM!, undici: { connections: 256, pipelining: 1 } });
app.removeAllContentTypeParsers();
app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));
app.all('/*', (req, reply) => reply.from(req.url));
await app.listen({ port: Number(process.env.PORT), host: '127.0.0.1' });
process.stdout.write('LISTENING\n');
