import type { AnyArea, KeyDef } from './define.js';

/** Renders docs/configuration.md from the key definitions, so the reference cannot drift. */
export function renderConfigReference(areas: readonly AnyArea[]): string {
  const out: string[] = [
    '# Configuration reference',
    '',
    '<!-- Generated from common/config/areas/*.ts by `npm run docs`; test/unit/docs.test.ts fails when it is stale. -->',
    '',
    'Every process reads its keys once at start, from (lowest to highest precedence): the defaults below,',
    'a `KEY=VALUE` file given with `--config FILE` (the same file systemd reads with `EnvironmentFile=`;',
    'installed as `/etc/omflow/*.env`, mode 0600), and the environment. Any key can instead be given as',
    '`KEY_FILE=/path` to read the value from a file (for secrets). All problems are reported at once,',
    'each by key, and the process exits with status 78 without touching anything.',
    '',
    'A running Booster or agent reads its file again on `systemctl reload` (SIGHUP): keys marked',
    '"Applies on reload" change in place, with a log line naming them; a change of any other key is',
    'reported as needing a restart and keeps its old value until then. `omflow config check` validates',
    'a file before either (see the operator guide).',
    '',
  ];
  for (const area of areas) {
    out.push(`## ${area.title}`, '', '| key | type | default | description |', '| --- | --- | --- | --- |');
    for (const def of Object.values(area.keys as Record<string, KeyDef<unknown>>)) {
      const dflt = def.required
        ? '*required*'
        : def.defaultDoc
          ? def.defaultDoc
          : def.default === undefined
            ? ''
            : `\`${Array.isArray(def.default) ? def.default.join(',') : String(def.default)}\``;
      const names = [def.env, ...(def.aliases ?? [])].map((n) => `\`${n}\``).join(', ');
      const flags = `${def.secret ? ' Secret: never logged.' : ''}${def.reload ? ' Applies on reload.' : ''}`;
      out.push(`| ${names} | ${def.type.replace(/\|/g, '\\|')} | ${dflt.replace(/\|/g, '\\|')} | ${(def.doc + flags).replace(/\|/g, '\\|')} |`);
    }
    out.push('');
  }
  return out.join('\n');
}
