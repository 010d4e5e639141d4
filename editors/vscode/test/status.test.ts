import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { StatusReport } from '../src/protocol';
import { formatExpiry, formatRemaining, statusLines, statusTooltip, statusView } from '../src/status';

// Local time of these instants depends on TZ: the runner sets TZ=UTC.
const NOW = Date.UTC(2026, 10, 26, 13, 55, 0);
const AT_1405 = Date.UTC(2026, 10, 26, 14, 5, 0);

const ready: StatusReport = {
  state: 'ready',
  profile: 'default',
  baseUrl: 'https://api-acme.xdr.us.paloaltonetworks.com',
  storage: 'keyutils',
  key: {
    keyId: 42,
    fingerprint: 'sha256:1a2b3c4d5e6f',
    role: 'CLI Read-Only Custom',
    expiresAt: AT_1405,
    generation: 3,
  },
};

test('TZ is UTC for these tests', () => {
  assert.equal(new Date(0).getTimezoneOffset(), 0);
});

test('ready with a live key: id and local expiry time', () => {
  const v = statusView(ready, NOW);
  assert.equal(v.text, '$(key) scanmint: #42 until 14:05');
  assert.equal(v.severity, undefined);
});

test('expiry on another day shows the date', () => {
  assert.equal(formatExpiry(Date.UTC(2026, 10, 27, 9, 3), NOW), 'Nov 27 09:03');
  assert.equal(formatExpiry(AT_1405, NOW), '14:05');
});

test('remaining time', () => {
  assert.equal(formatRemaining(AT_1405, NOW), 'in 10 min');
  assert.equal(formatRemaining(NOW + 125 * 60_000, NOW), 'in 2 h 5 min');
  assert.equal(formatRemaining(NOW - 60_000, NOW), '1 min ago');
});

test('minting and rotating spin', () => {
  assert.equal(statusView({ ...ready, state: 'minting', key: undefined }, NOW).text, '$(sync~spin) scanmint: minting…');
  assert.equal(statusView({ ...ready, state: 'rotating' }, NOW).text, '$(sync~spin) scanmint: rotating…');
});

test('needs_login asks for a log-in with a warning', () => {
  const v = statusView({ ...ready, state: 'needs_login', baseUrl: null, key: undefined }, NOW);
  assert.equal(v.text, '$(warning) scanmint: log in');
  assert.equal(v.severity, 'warning');
  assert.match(v.tooltip, /_not logged in_/);
});

test('error, degraded, expired, no key yet', () => {
  const err = statusView(
    { ...ready, state: 'error', key: undefined, lastError: { code: 'tenant_unavailable', message: 'HTTP 503' } },
    NOW,
  );
  assert.equal(err.text, '$(error) scanmint: error');
  assert.equal(err.severity, 'error');
  assert.match(err.tooltip, /Last error: `tenant_unavailable` HTTP 503/);

  assert.equal(statusView({ ...ready, state: 'degraded' }, NOW).text, '$(warning) scanmint: #42 until 14:05 (degraded)');
  assert.equal(statusView(ready, AT_1405 + 1).text, '$(warning) scanmint: #42 expired');
  assert.equal(statusView({ ...ready, key: undefined }, NOW).text, '$(key) scanmint: ready');
  assert.equal(statusView(undefined, NOW).text, '$(key) scanmint');
});

test('tooltip: fingerprint, role, storage tier, generation', () => {
  const t = statusTooltip(ready, NOW);
  assert.match(t, /Fingerprint: `sha256:1a2b3c4d5e6f`/);
  assert.match(t, /Role: CLI Read\\-Only Custom/);
  assert.match(t, /Storage: kernel keyutils/);
  assert.match(t, /Key: #42 \(generation 3\)/);
  assert.match(t, /Expires: 14:05 \(in 10 min\)/);
  assert.match(t, /Profile: `default`/);
});

test('plain status lines', () => {
  const lines = statusLines(ready, NOW);
  assert.deepEqual(lines.slice(0, 4), [
    'State: ready',
    'Profile: default',
    'Tenant: https://api-acme.xdr.us.paloaltonetworks.com',
    'Key #42, generation 3, sha256:1a2b3c4d5e6f',
  ]);
  assert.ok(lines.includes('Storage: kernel keyutils'));
});

test('unknown storage tiers are shown as sent', () => {
  assert.match(statusTooltip({ ...ready, storage: 'macos-keychain' }, NOW), /Storage: macos\\-keychain/);
});
