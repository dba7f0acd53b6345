/**
 * Form fields and their validation. Submissions come as JSON (API) or as strings (HTML
 * forms), so values are coerced per type first; every invalid field gets a reason code
 * (required, type, min, max, minLength, maxLength, pattern, option, user) — clients map codes to text.
 */
export const FIELD_TYPES = ['text', 'textarea', 'number', 'date', 'select', 'checkbox', 'user'] as const;
export type FieldType = (typeof FIELD_TYPES)[number];

export interface FieldDef {
  key: string;
  label: string;
  labelJa?: string;
  type: FieldType;
  required?: boolean;
  options?: string[];
  min?: number;
  max?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  help?: string;
}

const KEY = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

/** Problems of a field list (for deploy-time validation); empty when valid. */
export function checkFieldDefs(fields: unknown): string[] {
  if (!Array.isArray(fields)) return ['fields must be an array'];
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const [i, f] of fields.entries()) {
    const where = `fields[${i}]`;
    if (!f || typeof f !== 'object') {
      problems.push(`${where} must be an object`);
      continue;
    }
    const d = f as Record<string, unknown>;
    if (typeof d.key !== 'string' || !KEY.test(d.key)) problems.push(`${where}.key must match ${KEY}`);
    else if (seen.has(d.key)) problems.push(`${where}.key "${d.key}" is repeated`);
    else seen.add(d.key);
    if (typeof d.label !== 'string' || !d.label) problems.push(`${where}.label is required`);
    if (!(FIELD_TYPES as readonly string[]).includes(d.type as string)) problems.push(`${where}.type must be one of ${FIELD_TYPES.join(', ')}`);
    if (d.type === 'select' && (!Array.isArray(d.options) || d.options.length === 0 || !d.options.every((o) => typeof o === 'string')))
      problems.push(`${where}.options must be a non-empty list of strings`);
    if (d.pattern !== undefined) {
      try {
        new RegExp(String(d.pattern));
      } catch {
        problems.push(`${where}.pattern is not a valid regular expression`);
      }
    }
  }
  return problems;
}

const DATE = /^\d{4}-\d{2}-\d{2}$/;

export interface FieldCheckResult {
  values: Record<string, unknown>;
  errors: Record<string, string>;
  /** Usernames given in `user` fields; the caller checks they exist. */
  users: Array<{ key: string; username: string }>;
}

/** Coerces and validates `input` against `fields`. Unknown keys are dropped. */
export function checkValues(fields: FieldDef[], input: Record<string, unknown>): FieldCheckResult {
  const values: Record<string, unknown> = {};
  const errors: Record<string, string> = {};
  const users: FieldCheckResult['users'] = [];
  for (const f of fields) {
    let v = input[f.key];
    if (typeof v === 'string' && f.type !== 'text' && f.type !== 'textarea') v = v.trim();
    const empty = v === undefined || v === null || v === '' || (f.type === 'checkbox' && (v === false || v === 'false'));
    if (f.type === 'checkbox') {
      const on = v === true || v === 'on' || v === 'true' || v === '1' || v === 1;
      if (f.required && !on) errors[f.key] = 'required';
      values[f.key] = on;
      continue;
    }
    if (empty) {
      if (f.required) errors[f.key] = 'required';
      continue;
    }
    switch (f.type) {
      case 'number': {
        const n = typeof v === 'number' ? v : typeof v === 'string' && /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : NaN;
        if (!Number.isFinite(n)) errors[f.key] = 'type';
        else if (f.min !== undefined && n < f.min) errors[f.key] = 'min';
        else if (f.max !== undefined && n > f.max) errors[f.key] = 'max';
        else values[f.key] = n;
        break;
      }
      case 'date':
        if (typeof v !== 'string' || !DATE.test(v) || Number.isNaN(Date.parse(`${v}T00:00:00Z`))) errors[f.key] = 'type';
        else values[f.key] = v;
        break;
      case 'select':
        if (typeof v !== 'string' || !(f.options ?? []).includes(v)) errors[f.key] = 'option';
        else values[f.key] = v;
        break;
      case 'user':
        if (typeof v !== 'string') errors[f.key] = 'type';
        else {
          values[f.key] = v;
          users.push({ key: f.key, username: v });
        }
        break;
      default: {
        if (typeof v !== 'string' && typeof v !== 'number') {
          errors[f.key] = 'type';
          break;
        }
        const s = String(v);
        const maxLength = f.maxLength ?? (f.type === 'textarea' ? 10_000 : 1000);
        if (f.minLength !== undefined && s.length < f.minLength) errors[f.key] = 'minLength';
        else if (s.length > maxLength) errors[f.key] = 'maxLength';
        else if (f.pattern !== undefined && !new RegExp(`^(?:${f.pattern})$`).test(s)) errors[f.key] = 'pattern';
        else values[f.key] = s;
      }
    }
  }
  return { values, errors, users };
}
