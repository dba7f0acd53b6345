import { request } from 'undici';
import { audienceOf, signClusterRequest } from '../../common/protocol/cluster-auth.js';
import { BOOSTER_PATH } from '../../common/protocol/headers.js';

/** What the dev CLI (and the install tests) need to know about a booster pair. */
export interface PairView {
  /** Booster base URL → 'active' | 'standby' | 'down'. */
  roles: Record<string, 'active' | 'standby' | 'down'>;
  /** Ids of servers the active booster reports as up. */
  serversUp: string[];
}

/**
 * How long one probe may take, connecting included: a booster whose host lost power or its link
 * never answers the connect, and undici's own connect timeout is 10 s (the lab's takeover times
 * then measured the probe, not the takeover).
 */
export const PROBE_TIMEOUT_MS = 2000;

/**
 * One GET, its answer or undefined after PROBE_TIMEOUT_MS. The deadline is a timer of its own: an
 * abort signal does not cut undici's connect short (a host that is gone answered EHOSTUNREACH
 * after 3 s, an unplugged one not before the 10 s connect timeout).
 */
async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string } | undefined> {
  const signal = AbortSignal.timeout(PROBE_TIMEOUT_MS);
  const answer = request(url, { method: 'GET', headers, signal })
    .then(async (res) => ({ status: res.statusCode, body: await res.body.text() }))
    .catch(() => undefined);
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), PROBE_TIMEOUT_MS);
  });
  try {
    return await Promise.race([answer, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

const UP_WORDS = new Set(['up', 'healthy', 'ready', 'active', 'serving', 'ok']);

/**
 * Servers listed in a /_booster/status document that are up. Tolerant about the exact shape
 * (an array `servers` of objects with `id`/`serverId`/`nodeId` and a `state`/`status`/`health`
 * word or a `healthy`/`up` boolean) because it only has to recognise "up".
 */
export function serversUpIn(doc: unknown): string[] {
  const root = doc as Record<string, unknown> | undefined;
  const list = root?.servers ?? (root?.cluster as Record<string, unknown> | undefined)?.servers;
  const entries: Array<[string, unknown]> = Array.isArray(list)
    ? list.map((s, i) => [
        String((s as Record<string, unknown>)?.id ?? (s as Record<string, unknown>)?.serverId ?? (s as Record<string, unknown>)?.nodeId ?? i),
        s,
      ])
    : list && typeof list === 'object'
      ? Object.entries(list as Record<string, unknown>)
      : [];
  const up: string[] = [];
  for (const [id, s] of entries) {
    const o = (s ?? {}) as Record<string, unknown>;
    if (o.healthy === true || o.up === true) {
      up.push(id);
      continue;
    }
    const word = [o.state, o.status, o.health].find((w) => typeof w === 'string') as string | undefined;
    if (word && UP_WORDS.has(word.toLowerCase()) && o.draining !== true) up.push(id);
  }
  return up;
}

/** Both boosters are asked at once, so one that does not answer costs PROBE_TIMEOUT_MS, not a turn each. */
export async function probePair(boosterUrls: string[], secret: string, nodeId = 'omflow-dev'): Promise<PairView> {
  const roles: PairView['roles'] = {};
  let activeUrl: string | undefined;
  const answers = await Promise.all(boosterUrls.map((base) => get(base + BOOSTER_PATH.active)));
  for (const [i, base] of boosterUrls.entries()) {
    const res = answers[i];
    if (!res) roles[base] = 'down';
    else if (res.status === 200) {
      roles[base] = 'active';
      activeUrl ??= base;
    } else roles[base] = 'standby';
  }
  let serversUp: string[] = [];
  if (activeUrl) {
    const res = await get(
      activeUrl + BOOSTER_PATH.status,
      signClusterRequest(secret, nodeId, 'GET', BOOSTER_PATH.status, '', Date.now(), { audience: audienceOf(activeUrl) }),
    );
    if (res?.status === 200) {
      try {
        serversUp = serversUpIn(JSON.parse(res.body));
      } catch {
        serversUp = [];
      }
    }
  }
  return { roles, serversUp };
}
