import { spawn } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../helpers/processes.js';

export const INSTALL_DIR = join(REPO_ROOT, 'install');

export interface ScriptResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A minimal environment, so the test's own OMFLOW_* variables never leak into an installer. */
export function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', LANG: 'C.UTF-8', ...extra };
}

/** Runs a script to completion (bounded), feeding `input` on stdin. */
export function runScript(
  cmd: string,
  args: string[],
  opts: { env?: Record<string, string>; input?: string; cwd?: string; timeoutMs?: number } = {},
): Promise<ScriptResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? cleanEnv(), stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, opts.timeoutMs ?? 120_000);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      resolve({ code: 127, stdout, stderr: `${stderr}${err.message}` });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

/**
 * A package directory laid out like an extracted release, whose app/ is the source tree (run
 * through tsx). For tests of the installer's dialogue; the real packages are tested too.
 */
export function sourcePackage(type: 'booster' | 'agent', dir: string): string {
  mkdirSync(join(dir, 'scripts'), { recursive: true });
  mkdirSync(join(dir, 'systemd'), { recursive: true });
  for (const f of ['install.sh', 'uninstall.sh']) {
    copyFileSync(join(INSTALL_DIR, f), join(dir, f));
    chmodSync(join(dir, f), 0o755);
  }
  const script = type === 'booster' ? 'omflow_booster_service' : 'omflow_booster_agent_service';
  for (const f of [script, 'service-common.sh']) copyFileSync(join(INSTALL_DIR, 'scripts', f), join(dir, 'scripts', f));
  const unit = type === 'booster' ? 'omflow-booster' : 'omflow-booster-agent';
  copyFileSync(join(INSTALL_DIR, 'systemd', `${unit}.service.in`), join(dir, 'systemd', `${unit}.service.in`));
  if (!existsSync(join(dir, 'app'))) symlinkSync(REPO_ROOT, join(dir, 'app'));
  writeFileSync(join(dir, 'PACKAGE'), `TYPE=${type}\nVERSION=0.0.0-test\n`);
  return dir;
}

/** Parses the KEY=VALUE lines install.sh writes. */
export function readEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line);
    if (m) out[m[1]] = m[2].replace(/^"(.*)"$/, '$1');
  }
  return out;
}

interface Field {
  key: string;
  type: string;
  required?: boolean;
  options?: string[];
  min?: number;
  minLength?: number;
}

function sampleValue(f: Field): unknown {
  switch (f.type) {
    case 'number':
      return f.min ?? 1;
    case 'date':
      return new Date().toISOString().slice(0, 10);
    case 'select':
      return f.options?.[0];
    case 'checkbox':
      return true;
    case 'user':
      return 'admin';
    default:
      return 'Raised by the install test'.padEnd(f.minLength ?? 0, '.');
  }
}

/**
 * What a user does: log in through the booster, pick the demo form (the first published one),
 * fill in its fields and raise a ticket. Returns the HTTP status and body of the raise.
 */
export async function raiseTicket(
  baseUrl: string,
  username: string,
  password: string,
): Promise<{ status: number; body: Record<string, unknown>; formKey: string }> {
  const login = await fetch(`${baseUrl}/api/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  const session = (await login.json()) as { token?: string };
  if (login.status !== 200 || !session.token) throw new Error(`login answered ${login.status}: ${JSON.stringify(session)}`);
  const auth = { authorization: `Bearer ${session.token}` };
  const listed = await fetch(`${baseUrl}/api/forms`, { headers: auth });
  const forms = (await listed.json()) as { items: Array<{ formKey: string; fields: Field[] }> };
  if (listed.status !== 200) throw new Error(`GET /api/forms answered ${listed.status}: ${JSON.stringify(forms)}`);
  const form = forms.items.find((f) => f.formKey === 'it-request') ?? forms.items[0];
  if (!form) throw new Error('no published form to raise a ticket from (was the demo seeded?)');
  const data: Record<string, unknown> = {};
  for (const f of form.fields) data[f.key] = sampleValue(f);
  const res = await fetch(`${baseUrl}/api/forms/${form.formKey}/tickets`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json', 'idempotency-key': `install-test-${Date.now()}-${Math.random()}` },
    body: JSON.stringify({ title: 'Raised through the Booster', data }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown>, formKey: form.formKey };
}

/** Every process whose command line mentions `needle` (a test's temp dir is in every path its processes use). */
export function processesMentioning(needle: string): string[] {
  const out: string[] = [];
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    if (Number(pid) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(needle)) out.push(`${pid}: ${cmd}`);
    } catch {
      /* gone */
    }
  }
  return out;
}
