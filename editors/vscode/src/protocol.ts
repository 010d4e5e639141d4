// Shapes of scanmint's LSP contract (docs/protocol.md). No `vscode` import: unit-testable.

export type State = 'ready' | 'minting' | 'rotating' | 'needs_login' | 'degraded' | 'error';

export interface KeyInfo {
  keyId: number;
  /** Short hash of the secret, e.g. `sha256:1a2b3c4d5e6f`. Never the secret. */
  fingerprint: string;
  role: string;
  /** Epoch milliseconds, UTC. */
  expiresAt: number;
  generation: number;
}

export interface StatusReport {
  state: State;
  profile: string;
  baseUrl: string | null;
  storage: string;
  key?: KeyInfo;
  lastError?: { code: string; message: string };
}

export interface Credentials {
  baseUrl: string;
  keyId: number;
  key?: string;
  expiresAt: number;
  generation: number;
  env?: Record<string, string>;
}

export interface LoginArgs {
  baseUrl: string;
  keyId: number;
  key: string;
  securityLevel: 'standard' | 'advanced';
  profile?: string;
}

export interface LoginResult {
  profile: string;
  storage: string;
  message: string;
}

export interface RevokeResult {
  profile: string;
  revoked: number[];
  message: string;
}

export interface RotateResult {
  profile: string;
  keyId: number;
  generation: number;
  message: string;
}

export interface DoctorCheck {
  name: string;
  status: 'pass' | 'warn' | 'fail';
  detail: string;
  fix?: string;
}

export interface DoctorResult {
  ok: boolean;
  checks: DoctorCheck[];
}

export const Methods = {
  status: 'scanmint/status',
  didChangeStatus: 'scanmint/didChangeStatus',
  credentials: 'scanmint/credentials',
  scanFailed: 'scanmint/scanFailed',
} as const;

/** Server-side command ids (workspace/executeCommand). */
export const ServerCommands = {
  login: 'scanmint.login',
  logout: 'scanmint.logout',
  rotate: 'scanmint.rotate',
  revoke: 'scanmint.revoke',
  doctor: 'scanmint.doctor',
} as const;

/** The environment variables a scanner reads. */
export const EnvNames = ['CORTEX_API_BASE_URL', 'CORTEX_API_KEY_ID', 'CORTEX_API_KEY'] as const;

/** Is this value shaped like a StatusReport? Guards against a server that sends something else. */
export function isStatusReport(value: unknown): value is StatusReport {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v.state === 'string' && typeof v.profile === 'string';
}
