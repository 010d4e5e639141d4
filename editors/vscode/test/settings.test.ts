import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isStatusReport } from '../src/protocol';
import {
  errorMessage,
  formatDoctor,
  initializationOptions,
  loginArgs,
  profileArgs,
  resolveSettings,
  validateBaseUrl,
  validateKeyId,
  validateSecret,
} from '../src/settings';

const getter = (values: Record<string, unknown>) => <T>(key: string) => values[key] as T | undefined;

test('defaults: no binary path, no profile, secret not exposed', () => {
  const s = resolveSettings(getter({}), '/home/u');
  assert.deepEqual(s, {
    path: undefined,
    args: ['lsp'],
    profile: undefined,
    exposeSecretToEditor: false,
    terminalEnv: false,
    trace: 'off',
  });
  assert.deepEqual(initializationOptions(s), { clientKind: 'editor', exposeSecretToEditor: false });
});

test('scanmint.path with ~ and blanks', () => {
  assert.equal(resolveSettings(getter({ path: ' ~/bin/scanmint ' }), '/home/u').path, '/home/u/bin/scanmint');
  assert.equal(resolveSettings(getter({ path: '/opt/scanmint' }), '/home/u').path, '/opt/scanmint');
  assert.equal(resolveSettings(getter({ path: '   ' }), '/home/u').path, undefined);
});

test('profile goes into initializationOptions', () => {
  const s = resolveSettings(getter({ profile: ' work ' }));
  assert.equal(s.profile, 'work');
  assert.deepEqual(initializationOptions(s), { clientKind: 'editor', profile: 'work', exposeSecretToEditor: false });
});

test('terminalEnv implies exposing the secret to the editor', () => {
  const s = resolveSettings(getter({ terminalEnv: true, exposeSecretToEditor: false }));
  assert.equal(s.terminalEnv, true);
  assert.equal(s.exposeSecretToEditor, true);
  assert.equal(resolveSettings(getter({ exposeSecretToEditor: true })).exposeSecretToEditor, true);
  assert.equal(resolveSettings(getter({ exposeSecretToEditor: 'yes' })).exposeSecretToEditor, false);
});

test('trace level falls back to off', () => {
  assert.equal(resolveSettings(getter({ 'trace.server': 'verbose' })).trace, 'verbose');
  assert.equal(resolveSettings(getter({ 'trace.server': 'loud' })).trace, 'off');
});

test('profileArgs: none for the session profile, an object otherwise', () => {
  assert.deepEqual(profileArgs(undefined), []);
  assert.deepEqual(profileArgs('work'), [{ profile: 'work' }]);
  assert.deepEqual(profileArgs(undefined, { all: true }), [{ all: true }]);
});

test('log-in input validation', () => {
  assert.equal(validateBaseUrl('https://api-acme.xdr.us.paloaltonetworks.com'), undefined);
  assert.ok(validateBaseUrl(''));
  assert.ok(validateBaseUrl('api-acme'));
  assert.ok(validateBaseUrl('ftp://x'));
  assert.equal(validateKeyId('42'), undefined);
  assert.ok(validateKeyId('0'));
  assert.ok(validateKeyId('4.2'));
  assert.ok(validateKeyId('abc'));
  assert.ok(validateSecret('  '));
  assert.equal(validateSecret('s3cret'), undefined);
});

// The Primary key is typed next: refuse a URL that would send it in clear text over a network.
test('http:// only for loopback', () => {
  for (const ok of ['http://127.0.0.1:8080', 'http://127.1.2.3', 'http://localhost:9', 'http://LOCALHOST', 'http://[::1]:8080/', 'https://10.0.0.5']) {
    assert.equal(validateBaseUrl(ok), undefined, ok);
  }
  for (const bad of [
    'http://api-acme.xdr.us.paloaltonetworks.com',
    'http://10.0.0.5:8080',
    'http://localhost.evil.example',
    'http://127.0.0.1.nip.io',
    'http://[::2]',
    'http://0.0.0.0:8080',
  ]) {
    assert.match(validateBaseUrl(bad) ?? '', /https/, bad);
  }
});

test('loginArgs: integer key id, trimmed URL, profile only when given', () => {
  assert.deepEqual(
    loginArgs({ baseUrl: ' https://t.example/ ', keyId: ' 42 ', key: 'abc ', securityLevel: 'advanced' }),
    { baseUrl: 'https://t.example', keyId: 42, key: 'abc', securityLevel: 'advanced' },
  );
  assert.equal(loginArgs({ baseUrl: 'https://t', keyId: '7', key: 'k', securityLevel: 'standard' }, 'work').profile, 'work');
});

test('doctor report', () => {
  const lines = formatDoctor(
    {
      ok: false,
      checks: [
        { name: 'config', status: 'pass', detail: 'profile default' },
        { name: 'keychain', status: 'warn', detail: 'memory only', fix: 'start gnome-keyring' },
        { name: 'canary mint', status: 'fail', detail: 'HTTP 401' },
      ],
    },
    new Date(0),
  );
  assert.deepEqual(lines, [
    'scanmint doctor — 1970-01-01T00:00:00.000Z',
    '',
    '✓ config: profile default',
    '! keychain: memory only',
    '    fix: start gnome-keyring',
    '✗ canary mint: HTTP 401',
    '',
    'PROBLEMS FOUND: 1 passed, 1 warnings, 1 failed',
  ]);
});

test('isStatusReport and errorMessage', () => {
  assert.ok(isStatusReport({ state: 'ready', profile: 'default' }));
  assert.ok(!isStatusReport(null));
  assert.ok(!isStatusReport({ state: 1 }));
  assert.equal(errorMessage(new Error('boom')), 'boom');
  assert.equal(errorMessage({ code: -32603, message: 'refused' }), 'refused');
  assert.equal(errorMessage('x'), 'x');
});
