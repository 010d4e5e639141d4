// Settings resolution and input validation. No `vscode` import: unit-testable.
import * as os from 'node:os';
import * as path from 'node:path';
import type { DoctorResult, LoginArgs } from './protocol';

export interface Settings {
  /** `scanmint.path` (with `~` expanded), or undefined: see binary.ts for what runs. */
  path?: string;
  args: string[];
  /** Profile name, or undefined for the daemon's default. */
  profile?: string;
  exposeSecretToEditor: boolean;
  terminalEnv: boolean;
  trace: 'off' | 'messages' | 'verbose';
}

export interface InitializationOptions {
  clientKind: 'editor';
  profile?: string;
  exposeSecretToEditor: boolean;
}

/** Reads one setting of the `scanmint` section; mirrors WorkspaceConfiguration.get. */
export type Getter = <T>(key: string) => T | undefined;

/** Settings whose change needs a new language-server session. */
export const RESTART_KEYS = ['path', 'profile', 'exposeSecretToEditor', 'terminalEnv'] as const;

function expandHome(p: string, home: string): string {
  if (p === '~') return home;
  if (p.startsWith('~/')) return path.join(home, p.slice(2));
  return p;
}

export function resolveSettings(get: Getter, home: string = os.homedir()): Settings {
  const rawPath = (get<string>('path') ?? '').trim();
  const profile = (get<string>('profile') ?? '').trim();
  const terminalEnv = get<boolean>('terminalEnv') === true;
  const trace = get<string>('trace.server');
  return {
    path: rawPath ? expandHome(rawPath, home) : undefined,
    args: ['lsp'],
    profile: profile || undefined,
    // The terminal can only receive the secret if the daemon hands it to this editor.
    exposeSecretToEditor: terminalEnv || get<boolean>('exposeSecretToEditor') === true,
    terminalEnv,
    trace: trace === 'messages' || trace === 'verbose' ? trace : 'off',
  };
}

export function initializationOptions(s: Settings): InitializationOptions {
  const opts: InitializationOptions = { clientKind: 'editor', exposeSecretToEditor: s.exposeSecretToEditor };
  if (s.profile) opts.profile = s.profile;
  return opts;
}

/** Arguments for commands that take `[{profile?}]`: none when the session's profile applies. */
export function profileArgs(profile: string | undefined, extra: Record<string, unknown> = {}): unknown[] {
  const arg: Record<string, unknown> = { ...extra };
  if (profile) arg.profile = profile;
  return Object.keys(arg).length ? [arg] : [];
}

/** undefined when valid, else the message an input box shows. */
export function validateBaseUrl(value: string): string | undefined {
  const v = value.trim();
  if (!v) return 'Enter the tenant API URL, e.g. https://api-acme.xdr.us.paloaltonetworks.com';
  let url: URL;
  try {
    url = new URL(v);
  } catch {
    return 'Not a URL';
  }
  if (url.protocol === 'https:') return undefined;
  if (url.protocol === 'http:' && isLoopback(url.hostname)) return undefined;
  if (url.protocol === 'http:') return 'Use an https:// URL: over http:// the Primary key would cross the network in clear text';
  return 'Use an https:// URL';
}

/** localhost, 127.0.0.0/8 or ::1: http:// is fine there (the emulator, a local proxy). */
function isLoopback(hostname: string): boolean {
  const h = hostname.toLowerCase();
  return h === 'localhost' || h === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

export function validateKeyId(value: string): string | undefined {
  return /^\s*[1-9][0-9]{0,15}\s*$/.test(value) ? undefined : 'The key ID is a positive whole number';
}

export function validateSecret(value: string): string | undefined {
  return value.trim() ? undefined : 'Paste the key';
}

export function loginArgs(
  input: { baseUrl: string; keyId: string; key: string; securityLevel: 'standard' | 'advanced' },
  profile?: string,
): LoginArgs {
  const args: LoginArgs = {
    baseUrl: input.baseUrl.trim().replace(/\/+$/, ''),
    keyId: Number.parseInt(input.keyId.trim(), 10),
    key: input.key.trim(),
    securityLevel: input.securityLevel,
  };
  if (profile) args.profile = profile;
  return args;
}

const MARKS = { pass: '✓', warn: '!', fail: '✗' } as const;

/** The doctor report as plain text lines for an output channel. */
export function formatDoctor(result: DoctorResult, when: Date = new Date()): string[] {
  const lines = [`scanmint doctor — ${when.toISOString()}`, ''];
  for (const c of result.checks) {
    lines.push(`${MARKS[c.status] ?? '?'} ${c.name}: ${c.detail}`);
    if (c.fix) lines.push(`    fix: ${c.fix}`);
  }
  const counts = { pass: 0, warn: 0, fail: 0 };
  for (const c of result.checks) if (c.status in counts) counts[c.status]++;
  lines.push('');
  lines.push(
    `${result.ok ? 'OK' : 'PROBLEMS FOUND'}: ${counts.pass} passed, ${counts.warn} warnings, ${counts.fail} failed`,
  );
  return lines;
}

/** The server's message for a failed command, without JSON-RPC noise. */
export function errorMessage(err: unknown): string {
  if (err && typeof err === 'object' && 'message' in err && typeof err.message === 'string') return err.message;
  return String(err);
}
