import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/processes.js';

const BIOME = join(REPO_ROOT, 'node_modules', '.bin', 'biome');

// The project's biome.json in a scratch tree, so probe files never land in the checkout.
const scratch = mkdtempSync(join(tmpdir(), 'omflow-lint-'));
let probes = 0;

/** Lints `source` as the file at `path` of the project layout. */
function lint(path: string, source: string): { code: number | null; output: string } {
  return lintFiles({ [path]: source });
}

/** Lints files that import each other, each at its path of the project layout. */
function lintFiles(files: Record<string, string>): { code: number | null; output: string } {
  const root = join(scratch, `${probes++}`);
  mkdirSync(root, { recursive: true });
  copyFileSync(join(REPO_ROOT, 'biome.json'), join(root, 'biome.json'));
  for (const [path, source] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), source);
  }
  const r = spawnSync(BIOME, ['lint', '--vcs-enabled=false', ...Object.keys(files)], { cwd: root, encoding: 'utf8' });
  return { code: r.status, output: r.stdout + r.stderr };
}

// The architecture as lint rules (biome.json): parts talk over HTTP, feature code gets its config injected.
describe('lint rules that encode the architecture', () => {
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it.each([
    ['booster/x.ts', "import { buildApp } from '../server/app.js';"],
    ['booster/x.ts', "import { createAgent } from '../agent/agent.js';"],
    ['agent/x.ts', "import { createBooster } from '../booster/booster.js';"],
    ['server/features/x/y.ts', "import { createBooster } from '../../../booster/booster.js';"],
    ['common/db/x.ts', "import { buildApp } from '../../server/app.js';"],
  ])('%s may not %s', (path, line) => {
    const r = lint(path, `${line}\nexport const used = [${line.match(/\{ (\w+) \}/)![1]}];\n`);
    expect(r.code, r.output).not.toBe(0);
    expect(r.output).toContain('noRestrictedImports');
  });

  it('common/ is importable from every part', () => {
    for (const path of ['booster/x.ts', 'agent/x.ts', 'server/x.ts']) {
      const r = lint(path, "import { createLogger } from '../common/log.js';\nexport const used = [createLogger];\n");
      expect(r.code, r.output).toBe(0);
    }
  });

  it('an import cycle is an error, also when the imports name types only', () => {
    const r = lintFiles({
      'booster/x/a.ts': "import type { B } from '../y/b.js';\nexport interface A {\n  b: B;\n}\n",
      'booster/y/b.ts': "import type { A } from '../x/a.js';\nexport interface B {\n  a: A | null;\n}\n",
    });
    expect(r.code, r.output).not.toBe(0);
    expect(r.output).toContain('noImportCycles');
  });

  it('feature code reads no process.env; a floating promise is an error', () => {
    expect(lint('server/features/x/y.ts', 'export const port = process.env.PORT;\n').output).toContain('noProcessEnv');
    expect(lint('booster/x.ts', 'async function f(): Promise<void> {}\nexport function g(): void {\n  f();\n}\n').output).toContain('noFloatingPromises');
  });
});
