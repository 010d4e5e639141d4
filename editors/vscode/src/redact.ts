// Keeps secrets out of the output channel, whatever the trace level. No `vscode` import.

// JSON members that can carry a secret in scanmint's traffic: the login argument `key`, the
// credentials result `key` and its `env.CORTEX_API_KEY`.
const SECRET_MEMBER = /("(?:key|CORTEX_API_KEY|secret|password)"\s*:\s*)"(?:[^"\\]|\\.)*"/g;
// The same in non-JSON renderings (`key: '...'`, `CORTEX_API_KEY=...`).
const SECRET_ASSIGN = /\b(CORTEX_API_KEY\s*[=:]\s*)['"]?[^\s'",}]+['"]?/g;

export function redact(text: string): string {
  return text.replace(SECRET_MEMBER, '$1"<redacted>"').replace(SECRET_ASSIGN, '$1<redacted>');
}
