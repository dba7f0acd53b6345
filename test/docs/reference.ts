import { AgentErrors } from '../../agent/errors.js';
import { BoosterErrors } from '../../booster/errors.js';
import { LicenseGateErrors } from '../../booster/license/errors.js';
import { ALL_AREAS } from '../../common/config/areas/index.js';
import { renderConfigReference } from '../../common/config/reference.js';
import { type Catalogue, CommonErrors } from '../../common/errors.js';
import { LicenseErrors } from '../../common/license/errors.js';
import { ServerErrors } from '../../server/errors.js';

export const CATALOGUES: Array<[string, Catalogue<string>]> = [
  ['Common (database, configuration, cluster protocol)', CommonErrors],
  ['Booster', BoosterErrors],
  ['Agent and patches', AgentErrors],
  ['App server', ServerErrors],
  ['Common license files (common/license)', LicenseErrors],
  ['Booster license gate (booster/license)', LicenseGateErrors],
];

export function configurationMarkdown(): string {
  return renderConfigReference(ALL_AREAS);
}

export function errorsMarkdown(): string {
  const out = [
    '# Error codes',
    '',
    '<!-- Generated from the error catalogues (common/errors.ts, booster/, agent/, server/ errors.ts) by `npm run docs`; test/unit/docs.test.ts fails when it is stale. -->',
    '',
    'Every error a client, an operator or a log sees carries one of these stable codes. Match on the',
    'code, never on the message text. API errors are JSON `{ "code", "message", "details" }`.',
    '',
  ];
  for (const [title, catalogue] of CATALOGUES) {
    out.push(`## ${title}`, '', '| code | HTTP | meaning | what to do |', '| --- | --- | --- | --- |');
    for (const f of Object.values(catalogue)) out.push(`| \`${f.code}\` | ${f.status} | ${f.spec.message} | ${f.spec.hint} |`);
    out.push('');
  }
  return out.join('\n');
}
