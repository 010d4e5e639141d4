// Status-bar text and tooltip from a StatusReport. No `vscode` import: unit-testable.
import type { StatusReport } from './protocol';

export interface StatusView {
  /** Status-bar text, with $(codicon) references. */
  text: string;
  /** Tooltip as Markdown. */
  tooltip: string;
  /** 'warning' | 'error' colour the item's background; undefined leaves it plain. */
  severity?: 'warning' | 'error';
}

const pad = (n: number) => String(n).padStart(2, '0');
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** `14:05` when `at` is today (local time), `Nov 27 14:05` otherwise. */
export function formatExpiry(at: number, now: number = Date.now()): string {
  const d = new Date(at);
  const n = new Date(now);
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  const sameDay =
    d.getFullYear() === n.getFullYear() && d.getMonth() === n.getMonth() && d.getDate() === n.getDate();
  return sameDay ? hm : `${MONTHS[d.getMonth()]} ${d.getDate()} ${hm}`;
}

/** `in 9 min`, `in 2 h 5 min`, `1 min ago`. */
export function formatRemaining(at: number, now: number = Date.now()): string {
  const mins = Math.round((at - now) / 60_000);
  const abs = Math.abs(mins);
  const span = abs >= 60 ? `${Math.floor(abs / 60)} h ${abs % 60} min` : `${abs} min`;
  return mins >= 0 ? `in ${span}` : `${span} ago`;
}

const STORAGE_LABELS: Record<string, string> = {
  'secret-service': 'Secret Service (keyring)',
  keyutils: 'kernel keyutils',
  file: 'file in the runtime directory (opted in)',
  memory: 'memory only (lost when the daemon stops)',
  env: 'environment variables',
};

export function storageLabel(storage: string): string {
  return STORAGE_LABELS[storage] ?? storage;
}

/** Markdown escaping for text that comes from the server. */
export function md(text: string): string {
  return text.replace(/[\\`*_{}[\]()#+\-.!|<>]/g, (c) => `\\${c}`);
}

export function statusView(report: StatusReport | undefined, now: number = Date.now()): StatusView {
  if (!report) {
    return { text: '$(key) scanmint', tooltip: 'scanmint: starting…' };
  }
  const key = report.key;
  const live = key !== undefined && key.expiresAt > now;
  const keyText = key ? `#${key.keyId} until ${formatExpiry(key.expiresAt, now)}` : '';
  let text: string;
  let severity: StatusView['severity'];
  switch (report.state) {
    case 'ready':
      if (key && live) text = `$(key) scanmint: ${keyText}`;
      else if (key) {
        text = `$(warning) scanmint: #${key.keyId} expired`;
        severity = 'warning';
      } else text = '$(key) scanmint: ready';
      break;
    case 'minting':
      text = '$(sync~spin) scanmint: minting…';
      break;
    case 'rotating':
      text = '$(sync~spin) scanmint: rotating…';
      break;
    case 'needs_login':
      text = '$(warning) scanmint: log in';
      severity = 'warning';
      break;
    case 'degraded':
      text = key && live ? `$(warning) scanmint: ${keyText} (degraded)` : '$(warning) scanmint: degraded';
      severity = 'warning';
      break;
    case 'error':
    default:
      text = '$(error) scanmint: error';
      severity = 'error';
      break;
  }
  return { text, tooltip: statusTooltip(report, now), severity };
}

const STATE_LABELS: Record<string, string> = {
  ready: 'ready',
  minting: 'minting a key',
  rotating: 'rotating the key',
  needs_login: 'needs a log-in (no usable Primary key)',
  degraded: 'degraded: the tenant is failing, a still-valid key is served',
  error: 'error: no usable key',
};

/** Markdown lines: state, tenant, key (fingerprint only), storage tier, last error. */
export function statusTooltip(report: StatusReport, now: number = Date.now()): string {
  const lines: string[] = [];
  lines.push(`**scanmint** — ${md(STATE_LABELS[report.state] ?? report.state)}`);
  lines.push('');
  lines.push(`Profile: \`${report.profile}\``);
  lines.push(`Tenant: ${report.baseUrl ? md(report.baseUrl) : '_not logged in_'}`);
  const key = report.key;
  if (key) {
    lines.push(`Key: #${key.keyId} (generation ${key.generation})`);
    lines.push(`Fingerprint: \`${key.fingerprint}\``);
    lines.push(`Role: ${md(key.role)}`);
    lines.push(
      `Expires: ${formatExpiry(key.expiresAt, now)} (${formatRemaining(key.expiresAt, now)})`,
    );
  } else {
    lines.push('Key: _none minted yet_');
  }
  lines.push(`Storage: ${md(storageLabel(report.storage))}`);
  if (report.lastError) {
    lines.push(`Last error: \`${report.lastError.code}\` ${md(report.lastError.message)}`);
  }
  lines.push('');
  lines.push('_Click for status and actions_');
  // Two trailing spaces: Markdown line breaks inside one paragraph.
  return lines.map((l) => (l === '' ? l : `${l}  `)).join('\n');
}

/** Plain one-line-per-fact summary, for the Show status quick pick and the output channel. */
export function statusLines(report: StatusReport, now: number = Date.now()): string[] {
  const lines = [
    `State: ${STATE_LABELS[report.state] ?? report.state}`,
    `Profile: ${report.profile}`,
    `Tenant: ${report.baseUrl ?? 'not logged in'}`,
  ];
  const key = report.key;
  if (key) {
    lines.push(
      `Key #${key.keyId}, generation ${key.generation}, ${key.fingerprint}`,
      `Role: ${key.role}`,
      `Expires ${formatExpiry(key.expiresAt, now)} (${formatRemaining(key.expiresAt, now)})`,
    );
  } else {
    lines.push('No minted key yet');
  }
  lines.push(`Storage: ${storageLabel(report.storage)}`);
  if (report.lastError) lines.push(`Last error: ${report.lastError.code}: ${report.lastError.message}`);
  return lines;
}
