import type { FieldDef } from '../features/forms/fields.js';
import type { Locale } from '../types.js';
import { html, type Raw } from './html.js';
import { t } from './i18n.js';

export function fieldLabel(f: FieldDef, locale: Locale): string {
  return locale === 'ja' && f.labelJa ? f.labelJa : f.label;
}

/** One input per field type, with its value and field-level error (aria-invalid + message). */
export function renderField(f: FieldDef, value: unknown, error: string | undefined, locale: Locale): Raw {
  const id = `f_${f.key}`;
  const v = value === undefined || value === null ? '' : String(value);
  const common = { id, name: f.key };
  let input: Raw;
  const invalid = error ? 'true' : 'false';
  switch (f.type) {
    case 'textarea':
      input = html`<textarea id="${common.id}" name="${common.name}" rows="4" aria-invalid="${invalid}" ${f.required ? 'required' : ''}>${v}</textarea>`;
      break;
    case 'select':
      input = html`<select id="${common.id}" name="${common.name}" aria-invalid="${invalid}"><option value=""></option>${(f.options ?? []).map((o) => html`<option value="${o}" ${o === v ? 'selected' : ''}>${o}</option>`)}</select>`;
      break;
    case 'checkbox':
      input = html`<input id="${common.id}" name="${common.name}" type="checkbox" ${value === true || v === 'on' ? 'checked' : ''}>`;
      break;
    default: {
      const type = f.type === 'number' ? 'number' : f.type === 'date' ? 'date' : 'text';
      input = html`<input id="${common.id}" name="${common.name}" type="${type}" value="${v}" aria-invalid="${invalid}" ${f.type === 'number' ? 'step="any"' : ''}>`;
    }
  }
  return html`<div class="field"><label for="${id}">${fieldLabel(f, locale)}${f.required ? ' *' : ''}</label>${input}
    ${error ? html`<div class="error" id="${id}_error">${t(locale, `error.${error}`)}</div>` : ''}</div>`;
}
