import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase, vendorsUnderTest } from '../helpers/db.js';
import { CORPUS_FILE, type Differential, disagreement, readCorpus, startDifferential } from './http1-differential.js';
import { httpCase } from './http1-requests.js';

/**
 * Differential fuzzing of the lean HTTP/1.1 path against node:http (ADR 0014): the same bytes
 * through a booster on each, to one recording app server; both must agree on what the client
 * gets and on what the server sees. CI replays every case that ever disagreed and a bounded slice
 * of generated ones; OMFLOW_FUZZ_CASES=N runs N here, and bench/http1-fuzz.ts runs millions.
 */
const SLICE = Number(process.env.OMFLOW_FUZZ_CASES ?? 200);

describe('the lean HTTP/1.1 path and node:http agree', () => {
  let t: TestDatabase;
  let diff: Differential;
  let before: { lean: number; node: number; upstream: number };

  beforeAll(async () => {
    t = await createTestDatabase(vendorsUnderTest()[0], { migrate: true });
    diff = await startDifferential(t.db);
    before = await diff.connections();
  });
  afterAll(async () => {
    await diff?.close();
    await t?.drop();
  });

  it('on every case that ever disagreed (the corpus)', async () => {
    const corpus = readCorpus(CORPUS_FILE);
    expect(corpus.length).toBeGreaterThan(10);
    const still: { writes: string[]; found: string; now: string }[] = [];
    for (const entry of corpus) {
      const { lean, node } = await diff.run({ writes: entry.writes, close: entry.close });
      const now = disagreement(lean, node);
      if (now) still.push({ ...entry, now });
    }
    expect(still).toEqual([]);
  });

  it(`on ${SLICE} generated requests: valid, malformed and smuggling shapes, split across reads`, async () => {
    await fc.assert(
      fc.asyncProperty(httpCase, async (c) => {
        const { lean, node } = await diff.run(c);
        expect(disagreement(lean, node)).toBeNull();
      }),
      { numRuns: SLICE },
    );
  }, 600_000);

  it('and neither keeps a connection its client left (a refused one once stayed open for good on node:http)', async () => {
    await expect.poll(async () => diff.connections(), { timeout: 10_000, interval: 200 }).toMatchObject({ lean: before.lean, node: before.node });
  });
});
