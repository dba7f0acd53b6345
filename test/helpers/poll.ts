/**
 * The one way tests wait for something to become true: polls `probe` until it returns a truthy
 * value and resolves with that value. A probe that throws counts as "not yet"; after `timeoutMs`
 * the wait fails with what was awaited and the probe's last error. Bounded, so a test never hangs;
 * not a speed assertion (speed is measured in bench/).
 */
export async function waitFor<T>(
  probe: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  opts: { what?: string; timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v as T;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${opts.what ?? 'condition'}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 50));
  }
}
