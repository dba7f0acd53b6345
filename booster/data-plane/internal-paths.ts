import { SERVER_PATH } from '../../common/protocol/headers.js';

/**
 * Whether a data-plane request targets the app servers' cluster-only paths (/_internal/...).
 * The raw prefix is not enough: the app server's router decodes percent-escapes and resolves
 * dot segments, so `/%5Finternal/steps/dispatch` and `/x/../_internal/...` reach the same route.
 * This looks at the path the way the router will (dot segments resolved, escapes decoded,
 * duplicate slashes folded); a path that cannot be decoded is treated as internal (refused).
 */
export function isInternalPath(url: string): boolean {
  const prefix = SERVER_PATH.internalPrefix;
  if (url.startsWith(prefix)) return true;
  const q = url.search(/[?#]/);
  let path = q >= 0 ? url.slice(0, q) : url;
  if (path === prefix.slice(0, -1)) return true;
  // Only paths that could spell it differently need the slow look; escapes of escapes get a few rounds.
  for (let round = 0; round < 3 && /%|\/\.|\/\//.test(path); round++) {
    let next: string;
    try {
      next = decodeURIComponent(new URL(path.replace(/\/{2,}/g, '/'), 'http://booster.invalid').pathname).replace(/\/{2,}/g, '/');
    } catch {
      return true;
    }
    if (next.startsWith(prefix) || next === prefix.slice(0, -1)) return true;
    if (next === path) break;
    path = next;
  }
  return false;
}
