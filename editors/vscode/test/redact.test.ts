// Output-channel redaction: no secret in a trace, whatever name it travels under.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { redact } from '../src/redact';

const S = 'Zk3qZk3qSECRETVALUEZk3q';

test('JSON members that carry a secret are redacted', () => {
  const trace = JSON.stringify({ keyId: 42, key: S, env: { CORTEX_API_KEY: S, CORTEX_API_KEY_ID: '42' } }, null, 4);
  const out = redact(trace);
  assert.ok(!out.includes(S), out);
  assert.match(out, /"keyId": 42/);
  assert.match(out, /"CORTEX_API_KEY_ID": "42"/);
  assert.equal(redact('{"key":"a\\"b"}'), '{"key":"<redacted>"}');
});

test('CORTEX_API_KEY assignments are redacted', () => {
  assert.equal(redact(`export CORTEX_API_KEY=${S}`), 'export CORTEX_API_KEY=<redacted>');
});

// Scanner settings and command lines name the secret api-key / api_key / --api-key; a trace of a
// didOpen of a CI workflow or .cortex.yaml carries them verbatim.
test('api-key, api_key and --api-key forms are redacted', () => {
  const cases = [
    `api-key: ${S}`,
    `api_key: ${S}`,
    `API_KEY=${S}`,
    `"api-key": "${S}"`,
    `"api_key":"${S}"`,
    `run: cortexcli --api-key ${S} code scan`,
    `run: cortexcli --api-key=${S} code scan`,
    `run: cortexcli --api-key="${S}"`,
    `run: cortexcli --api_key '${S}'`,
    `{"text":"CORTEX_API_KEY=${S}\\napi-key: ${S}\\n"}`,
  ];
  for (const c of cases) {
    const out = redact(c);
    assert.ok(!out.includes(S), `${c} -> ${out}`);
    assert.ok(out.includes('<redacted>'), out);
  }
});

test('key ids and other words are left alone', () => {
  for (const keep of ['api-key-id: 17', 'CORTEX_API_KEY_ID=17', '--api-key-id 17', '"keyId": 42', 'the api key is minted']) {
    assert.equal(redact(keep), keep);
  }
  // The rest of a command line survives.
  assert.equal(redact(`cortexcli --api-key ${S} code scan`), 'cortexcli --api-key <redacted> code scan');
});
