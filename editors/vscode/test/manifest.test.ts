// package.json as the Marketplace, VS Code and Restricted Mode read it; the engine floor.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { inflateSync } from 'node:zlib';

// Compiled to out/test/: the extension's folder is two levels up.
const at = (rel: string) => new URL(`../../${rel}`, import.meta.url);
const read = (rel: string) => readFileSync(at(rel), 'utf8');
const pkg = JSON.parse(read('package.json'));
const version = (v: string) => v.replace(/^[\^~>=]+/, '').split('.').map(Number);
const cmp = (a: number[], b: number[]) => a[0] - b[0] || a[1] - b[1] || (a[2] ?? 0) - (b[2] ?? 0);

// The engine floor is the @types/vscode version the code type-checks against (so no newer API is
// used), no lower than what vscode-languageclient needs, and the VS Code the e2e test runs
// (code-server 4.100.3 = VS Code 1.100.3) satisfies it.
test('minimum VS Code engine', () => {
  const engine = version(pkg.engines.vscode);
  assert.match(pkg.engines.vscode, /^\^\d+\.\d+\.\d+$/);
  assert.equal(pkg.engines.vscode.slice(1), pkg.devDependencies['@types/vscode'], 'engine floor = @types/vscode');
  const lc = JSON.parse(read('node_modules/vscode-languageclient/package.json'));
  assert.ok(cmp(engine, version(lc.engines.vscode)) >= 0, `vscode-languageclient needs ${lc.engines.vscode}`);
  const cs = at('../../tests/vscode/node_modules/code-server/lib/vscode/package.json');
  assert.ok(existsSync(cs), 'code-server is not installed (scripts/setup-vscode.sh)');
  const tested = version(JSON.parse(readFileSync(cs, 'utf8')).version);
  assert.ok(cmp(tested, engine) >= 0 && tested[0] === engine[0], `code-server's VS Code ${tested.join('.')} < ${pkg.engines.vscode}`);
});

// A workspace's .vscode/settings.json must not choose the binary, fetch the secret or turn on
// a trace of it: these are machine settings (User or Remote settings only).
test('risky settings are machine-scoped', () => {
  const props = pkg.contributes.configuration.properties;
  for (const k of ['scanmint.path', 'scanmint.exposeSecretToEditor', 'scanmint.terminalEnv', 'scanmint.trace.server']) {
    assert.equal(props[k]?.scope, 'machine', k);
  }
});

test('works in Restricted Mode and virtual workspaces are declined', () => {
  const u = pkg.capabilities?.untrustedWorkspaces;
  assert.ok(u && (u.supported === true || u.supported === 'limited'), JSON.stringify(u));
  if (u.supported === 'limited') {
    assert.ok(u.description);
    for (const k of u.restrictedConfigurations ?? []) assert.ok(pkg.contributes.configuration.properties[k], k);
  }
  assert.equal(pkg.capabilities?.virtualWorkspaces?.supported, false);
  assert.deepEqual(pkg.extensionKind, ['workspace']);
});

test('marketplace metadata', () => {
  assert.match(pkg.repository?.url ?? '', /^https:\/\//);
  assert.ok(pkg.keywords?.length >= 3);
  assert.ok(pkg.categories?.length >= 1 && !pkg.categories.includes('Other'));
  assert.equal(pkg.license, 'MIT OR Apache-2.0');
  assert.ok(existsSync(at('LICENSE')));
  assert.ok(read('CHANGELOG.md').includes(`## ${pkg.version}`), 'CHANGELOG has no entry for this version');
  // The Marketplace wants a PNG of at least 128×128.
  const png = readFileSync(at(pkg.icon));
  assert.equal(png.subarray(1, 4).toString(), 'PNG');
  assert.ok(png.readUInt32BE(16) >= 128 && png.readUInt32BE(20) >= 128);
  // The image data inflates: a valid file, not just a header.
  const idat = [];
  for (let o = 8; o < png.length; ) {
    const len = png.readUInt32BE(o);
    if (png.subarray(o + 4, o + 8).toString() === 'IDAT') idat.push(png.subarray(o + 8, o + 8 + len));
    o += 12 + len;
  }
  assert.ok(inflateSync(Buffer.concat(idat)).length > 0);
  const ignore = read('.vscodeignore');
  for (const f of ['CHANGELOG.md', pkg.icon, 'LICENSE*', 'bin/scanmint']) assert.ok(ignore.includes(`!${f}`), f);
});

test('every contributed command is registered', () => {
  const src = read('src/extension.ts');
  for (const c of pkg.contributes.commands) assert.ok(src.includes(`'${c.command}'`), c.command);
});
