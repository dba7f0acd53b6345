/** One HTTP health probe: ok (2xx), fail (answered otherwise or refused) or timeout. */
export type ProbeResult = { result: 'ok' | 'fail' | 'timeout'; status?: number; body?: Record<string, unknown> | null; error?: string };

export async function probe(url: string, timeoutMs: number): Promise<ProbeResult> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), headers: { accept: 'application/json' } });
    const text = await res.text();
    let body: Record<string, unknown> | null = null;
    try {
      body = JSON.parse(text) as Record<string, unknown>;
    } catch {
      body = null;
    }
    return { result: res.ok ? 'ok' : 'fail', status: res.status, body };
  } catch (err) {
    const name = (err as Error).name;
    if (name === 'TimeoutError' || name === 'AbortError') return { result: 'timeout', error: 'timeout' };
    return { result: 'fail', error: ((err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message) as string };
  }
}
