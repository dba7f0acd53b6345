import type { FastifyRequest } from 'fastify';
import type { Locale } from '../types.js';

export type Messages = Record<string, string>;
export const LOCALES: readonly Locale[] = ['en', 'ja'];

const namespaces = new Map<string, { en: Messages; ja: Messages }>();

/**
 * Adds a dictionary. Features own their keys: `registerMessages('admin', { en: {...}, ja: {...} })`.
 * Keys are global (prefix them, e.g. `admin.settings.title`); a later namespace wins on clashes.
 */
export function registerMessages(namespace: string, messages: { en: Messages; ja?: Messages }): void {
  namespaces.set(namespace, { en: messages.en, ja: messages.ja ?? {} });
}

/** Translation of `key`, falling back to English, then to the key itself. `{name}` placeholders are filled from vars. */
export function t(locale: Locale, key: string, vars?: Record<string, string | number>): string {
  const dictionaries = [...namespaces.values()].reverse();
  const find = (pick: (m: { en: Messages; ja: Messages }) => string | undefined) => dictionaries.map(pick).find((v) => v !== undefined);
  const text = (locale === 'ja' ? find((m) => m.ja[key]) : undefined) ?? find((m) => m.en[key]) ?? key;
  return vars ? text.replace(/\{(\w+)\}/g, (all, name) => (vars[name] === undefined ? all : String(vars[name]))) : text;
}

/** The request's locale: the user's choice, else Accept-Language, else English. */
export function localeOf(request: FastifyRequest): Locale {
  if (request.user) return request.user.locale;
  const accept = String(request.headers['accept-language'] ?? '');
  for (const part of accept.split(',')) {
    const tag = part.trim().slice(0, 2).toLowerCase();
    if (tag === 'ja') return 'ja';
    if (tag === 'en') return 'en';
  }
  return 'en';
}

registerMessages('core', {
  en: {
    'app.name': 'OMFLOW',
    'nav.catalogue': 'Forms',
    'nav.tasks': 'My tasks',
    'nav.tickets': 'Tickets',
    'nav.adminUsers': 'Users & groups',
    'nav.adminForms': 'Forms & flows',
    'nav.adminSettings': 'System settings',
    'nav.adminCluster': 'Cluster',
    'nav.adminPatches': 'Patches',
    'nav.logout': 'Sign out',
    'login.title': 'Sign in',
    'login.username': 'User name',
    'login.password': 'Password',
    'login.submit': 'Sign in',
    'login.failed': 'Wrong user name or password.',
    'login.locked': 'Too many failed attempts. Try again later.',
    'catalogue.title': 'Raise a ticket',
    'catalogue.empty': 'No forms are published yet.',
    'ticket.new': 'New ticket: {form}',
    'ticket.submit': 'Submit',
    'ticket.created': 'Ticket {number} was created.',
    'ticket.title': 'Title',
    'ticket.number': 'Number',
    'ticket.state': 'State',
    'ticket.step': 'Step',
    'ticket.assignee': 'Assignee',
    'ticket.created_at': 'Created',
    'ticket.due': 'Due',
    'ticket.data': 'Fields',
    'ticket.history': 'History',
    'ticket.comments': 'Comments',
    'ticket.actions': 'Actions',
    'ticket.comment': 'Comment',
    'ticket.held.aborted-after-failover':
      'Step {step} is on hold: its run was lost (its server stopped while it ran) and this step is never run twice. An administrator decides on the Cluster page: run it again, or fail the ticket.',
    'ticket.held.too-many-lost-runs':
      'Step {step} is on hold: {runs} runs of it were lost (their servers stopped while they ran). An administrator decides on the Cluster page: run it again, or fail the ticket.',
    'action.approve': 'Approve',
    'action.submit': 'Submit',
    'action.reject': 'Reject',
    'action.send_back': 'Send back',
    'action.comment': 'Add comment',
    'action.cancel': 'Cancel ticket',
    'tasks.title': 'My tasks',
    'tasks.empty': 'Nothing waits for you.',
    'tickets.title': 'Tickets',
    'tickets.search': 'Search',
    'tickets.prev': 'Previous',
    'tickets.next': 'Next',
    'state.open': 'Waiting for input',
    'state.running': 'Processing',
    'state.completed': 'Completed',
    'state.rejected': 'Rejected',
    'state.failed': 'Failed',
    'state.cancelled': 'Cancelled',
    'error.required': 'This field is required.',
    'error.type': 'The value has the wrong type.',
    'error.min': 'The value is too small.',
    'error.max': 'The value is too large.',
    'error.minLength': 'The value is too short.',
    'error.maxLength': 'The value is too long.',
    'error.pattern': 'The value does not have the expected format.',
    'error.option': 'Choose one of the offered options.',
    'error.user': 'No such user.',
    'error.forbidden': 'You are not allowed to see this page.',
    'error.notFound': 'Not found.',
    'admin.users.title': 'Users and groups',
    'admin.users.create': 'Create user',
    'admin.groups.create': 'Create group',
    'admin.groups.addMember': 'Add member',
    'admin.forms.title': 'Forms and flows',
    'admin.forms.deployFlow': 'Deploy flow (new version)',
    'admin.forms.saveForm': 'Save form',
    'admin.saved': 'Saved.',
    'admin.saved.button': 'Save',
    'admin.users.disabled': 'disabled',
    'admin.users.unlock': 'unlock',
    'admin.users.newPassword': 'new password',
    'field.username': 'User name',
    'field.displayName': 'Display name',
    'field.password': 'Password',
    'field.role': 'Role',
    'field.locale': 'Language',
    'field.group': 'Group',
    'field.name': 'Name',
  },
  ja: {
    'nav.catalogue': 'フォーム',
    'nav.tasks': '自分のタスク',
    'nav.tickets': 'チケット',
    'nav.adminUsers': 'ユーザーとグループ',
    'nav.adminForms': 'フォームとフロー',
    'nav.adminSettings': 'システム設定',
    'nav.adminCluster': 'クラスター',
    'nav.adminPatches': 'パッチ',
    'nav.logout': 'ログアウト',
    'login.title': 'ログイン',
    'login.username': 'ユーザー名',
    'login.password': 'パスワード',
    'login.submit': 'ログイン',
    'login.failed': 'ユーザー名またはパスワードが違います。',
    'login.locked': 'ログインの失敗が多すぎます。しばらくしてから再度お試しください。',
    'catalogue.title': '起票',
    'catalogue.empty': '公開されているフォームはありません。',
    'ticket.new': '新規起票: {form}',
    'ticket.submit': '送信',
    'ticket.created': 'チケット {number} を起票しました。',
    'ticket.title': '件名',
    'ticket.number': '番号',
    'ticket.state': '状態',
    'ticket.step': 'ステップ',
    'ticket.assignee': '担当者',
    'ticket.created_at': '起票日時',
    'ticket.due': '期限',
    'ticket.data': '項目',
    'ticket.history': '履歴',
    'ticket.comments': 'コメント',
    'ticket.actions': '操作',
    'ticket.comment': 'コメント',
    'ticket.held.aborted-after-failover':
      'ステップ {step} は保留中です。実行中にサーバーが停止したため処理が中断されました（このステップは再実行しない設定です）。管理者がクラスター画面で再実行するか、チケットを失敗にしてください。',
    'ticket.held.too-many-lost-runs':
      'ステップ {step} は保留中です。実行中にサーバーが停止し、{runs} 回中断されました。管理者がクラスター画面で再実行するか、チケットを失敗にしてください。',
    'action.approve': '承認',
    'action.submit': '送信',
    'action.reject': '却下',
    'action.send_back': '差し戻し',
    'action.comment': 'コメントを追加',
    'action.cancel': '取り消し',
    'tasks.title': '自分のタスク',
    'tasks.empty': '対応待ちのタスクはありません。',
    'tickets.title': 'チケット一覧',
    'tickets.search': '検索',
    'tickets.prev': '前へ',
    'tickets.next': '次へ',
    'state.open': '入力待ち',
    'state.running': '処理中',
    'state.completed': '完了',
    'state.rejected': '却下',
    'state.failed': '失敗',
    'state.cancelled': '取り消し',
    'error.required': '必須項目です。',
    'error.type': '値の型が正しくありません。',
    'error.min': '値が小さすぎます。',
    'error.max': '値が大きすぎます。',
    'error.minLength': '短すぎます。',
    'error.maxLength': '長すぎます。',
    'error.pattern': '形式が正しくありません。',
    'error.option': '選択肢から選んでください。',
    'error.user': 'そのユーザーは存在しません。',
    'error.forbidden': 'このページを表示する権限がありません。',
    'error.notFound': '見つかりません。',
    'admin.users.title': 'ユーザーとグループ',
    'admin.users.create': 'ユーザーを作成',
    'admin.groups.create': 'グループを作成',
    'admin.groups.addMember': 'メンバーを追加',
    'admin.forms.title': 'フォームとフロー',
    'admin.forms.deployFlow': 'フローをデプロイ（新バージョン）',
    'admin.forms.saveForm': 'フォームを保存',
    'admin.saved': '保存しました。',
    'admin.saved.button': '保存',
    'admin.users.disabled': '無効',
    'admin.users.unlock': 'ロック解除',
    'admin.users.newPassword': '新しいパスワード',
    'field.username': 'ユーザー名',
    'field.displayName': '表示名',
    'field.password': 'パスワード',
    'field.role': 'ロール',
    'field.locale': '言語',
    'field.group': 'グループ',
    'field.name': '名前',
  },
});
