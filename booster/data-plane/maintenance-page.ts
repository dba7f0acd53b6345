import { BoosterErrors } from '../errors.js';

/**
 * The answer of the data plane while the cluster is in maintenance mode: a page for browsers in
 * the user's language (Japanese or English, from Accept-Language), JSON for API clients; 503
 * with Retry-After either way. The operator's message is shown as given, escaped.
 */
export interface MaintenanceView {
  /** The operator's words, or null for the default text. */
  message: string | null;
  retryAfterS: number;
}

const TEXT = {
  en: {
    title: 'Down for maintenance',
    body: 'The service is down for scheduled maintenance. Nothing you saved is lost; please try again later.',
    retry: (s: number) => `Try again in about ${minutes(s)} minute(s).`,
  },
  ja: {
    title: 'メンテナンス中',
    body: 'ただいまメンテナンスのためサービスを停止しています。保存済みのデータは失われていません。しばらくしてから再度アクセスしてください。',
    retry: (s: number) => `約 ${minutes(s)} 分後に再度お試しください。`,
  },
} as const;

function minutes(s: number): number {
  return Math.max(1, Math.ceil(s / 60));
}

/** Japanese when the client ranks it above English (or asks for no English at all), else English. */
export function pageLocale(acceptLanguage: string | undefined): 'en' | 'ja' {
  if (!acceptLanguage) return 'en';
  let best: { lang: 'en' | 'ja'; q: number } = { lang: 'en', q: 0 };
  for (const part of acceptLanguage.split(',')) {
    const [tag, ...params] = part.trim().toLowerCase().split(';');
    const qParam = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    const q = qParam ? Number(qParam.slice(2)) : 1;
    const lang = tag.startsWith('ja') ? 'ja' : tag.startsWith('en') ? 'en' : null;
    if (lang && Number.isFinite(q) && q > best.q) best = { lang, q };
  }
  return best.lang;
}

/** Built once: its code, status and default message are all the answer needs. */
const MAINTENANCE = BoosterErrors.BOOSTER_ERR_MAINTENANCE();

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export function renderMaintenance(
  view: MaintenanceView,
  accept: string | undefined,
  acceptLanguage: string | undefined,
): { status: number; headers: Record<string, string>; body: string } {
  const err = MAINTENANCE;
  const headers = { 'retry-after': String(view.retryAfterS), 'cache-control': 'no-store' };
  if (!accept?.includes('text/html')) {
    const body = JSON.stringify({ code: err.code, message: view.message ?? err.message, retryAfterS: view.retryAfterS });
    return { status: err.status, headers: { ...headers, 'content-type': 'application/json; charset=utf-8' }, body };
  }
  const locale = pageLocale(acceptLanguage);
  const t = TEXT[locale];
  const body = [
    `<!doctype html><html lang="${locale}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">`,
    `<title>${t.title}</title>`,
    '<style>body{font-family:system-ui,sans-serif;max-width:42rem;margin:4rem auto;padding:0 1rem;color:#222}h1{color:#8a5a00}blockquote{border-left:4px solid #ccc;margin:1rem 0;padding:.25rem 1rem}code{background:#eee;padding:0 .25em}</style></head><body>',
    `<h1 id="maintenance">${t.title}</h1><p>${t.body}</p>`,
    view.message ? `<blockquote id="maintenance-message">${escapeHtml(view.message)}</blockquote>` : '',
    `<p>${t.retry(view.retryAfterS)}</p><p><small>Code: <code>${err.code}</code></small></p>`,
    '</body></html>',
  ].join('');
  return { status: err.status, headers: { ...headers, 'content-type': 'text/html; charset=utf-8' }, body };
}
