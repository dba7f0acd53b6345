// Baseline for bench/booster-throughput: the smallest streaming proxy on undici (no balancing,
// no health, no headers work) — what the booster must beat while doing more.
import { createServer } from 'node:http';
import { pipeline } from 'node:stream';
import { Pool } from 'undici';

const pool = new Pool(process.env.UPSTREAM!, { connections: 256, pipelining: 1 });
createServer((req, res) => {
  pool.request({ method: req.method as 'GET', path: req.url!, headers: req.headers as Record<string, string>, body: req.method === 'GET' ? null : req }).then(
    (r) => {
      res.writeHead(r.statusCode, r.headers as Record<string, string>);
      pipeline(r.body, res, () => {});
    },
    () => {
      res.writeHead(502);
      res.end();
    },
  );
}).listen(Number(process.env.PORT), '127.0.0.1', () => process.stdout.write('LISTENING\n'));
