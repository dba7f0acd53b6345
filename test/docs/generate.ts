// `npm run docs`: rewrites the generated references.
import { writeFileSync } from 'node:fs';
import { configurationMarkdown, errorsMarkdown } from './reference.js';

writeFileSync(new URL('../../docs/configuration.md', import.meta.url), configurationMarkdown());
writeFileSync(new URL('../../docs/errors.md', import.meta.url), errorsMarkdown());
console.log('docs/configuration.md and docs/errors.md written');
