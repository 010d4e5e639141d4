// Keeps secrets out of the output channel, whatever the trace level. No `vscode` import.

// JSON members that can carry a secret in scanmint's traffic: the login argument `key`, the
// credentials result `key` and its `env.CORTEX_API_KEY`.
const SECRET_MEMBER = /("(?:key|CORTEX_API_KEY|secret|password)"\s*:\s*)"(?:[^"\\]|\\.)*"/g;

// The names scanners read a secret under, as they appear in the files and command lines a
// didOpen trace carries (`CORTEX_API_KEY=…`, `api-key: …`, `"api_key": "…"`, `--api-key …`), also
// inside a JSON string where quotes are escaped (`\"api-key\": \"…\"`) and lines end in `\n`.
// Not `…_KEY_ID` / `api-key-id`: ids are not secrets.
const QUOTE = String.raw`(?:\\?["'])?`;
const VALUE = String.raw`[^\s'",}\\]+`;
// A name starts a word, or follows an escaped line break (`…\napi-key: …` in a JSON string).
const START = String.raw`(?:(?<![\w-])|(?<=\\[nrt]))`;
const NAMED_ASSIGN = new RegExp(
  String.raw`(${START}(?:CORTEX_API_KEY|api[-_]key)${QUOTE}\s*[=:]\s*${QUOTE})${VALUE}`,
  'gi',
);
const FLAG = new RegExp(String.raw`(${START}--api[-_]key(?:\s+|=)${QUOTE})${VALUE}`, 'gi');

export function redact(text: string): string {
  return text
    .replace(SECRET_MEMBER, '$1"<redacted>"')
    .replace(NAMED_ASSIGN, '$1<redacted>')
    .replace(FLAG, '$1<redacted>');
}
