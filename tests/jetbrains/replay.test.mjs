// Stands in for a JetBrains IDE running LSP4IJ with editors/jetbrains/template.json: no IDE can run
// here, so this replays, against the real `scanmint lsp`, what LSP4IJ sends — its initialize
// request (LSP4IJ's client capabilities, clientInfo, workspace folders, the template's
// initializationOptions.json), initialized, the template's settings.json as
// didChangeConfiguration, didOpen of the files the template maps — answers the server's requests
// the way LSP4IJ does, and checks the replies and notifications, including scanmint's custom ones,
// which LSP4IJ only logs in its LSP console. The template's contents are checked against what the
// server does: its command starts this server, every file-name pattern maps a file the server
// scans (and none it ignores), the files no name pattern can express are covered by the server's
// workspace scan, and the initialization options take effect (editor session: prefetch and
// workspace diagnostics; no secret for the editor).
//
// Run through tests/jetbrains/run.sh (isolated HOME/XDG dirs, emulator, config, Primary key in the
// environment): needs SCANMINT_BIN; uses SCANMINT_BASE_URL and SCANMINT_PRIMARY_KEY to check.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { LspClient } from './lsp-client.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const templateDir = join(here, '..', '..', 'editors', 'jetbrains');
const readJson = (p) => JSON.parse(readFileSync(p, 'utf8'));

const template = readJson(join(templateDir, 'template.json'));
const initializationOptions = readJson(join(templateDir, 'initializationOptions.json'));
const settings = readJson(join(templateDir, 'settings.json'));
const { capabilities } = readJson(join(here, 'lsp4ij-client-capabilities.json'));

const bin = process.env.SCANMINT_BIN;
const primaryKey = process.env.SCANMINT_PRIMARY_KEY;
const STATES = ['ready', 'minting', 'rotating', 'needs_login', 'degraded', 'error'];
const COMMANDS = ['scanmint.login', 'scanmint.logout', 'scanmint.rotate', 'scanmint.revoke', 'scanmint.doctor'];
const LITERAL_KEY = 'Qm7x'.repeat(32); // 128 characters, like a Cortex API key
const PROJECT_URL = 'https://github.com/scanmint/scanmint';
// Files a scanner does not read, some with names close to those it does.
const NOT_SCANNED = ['README.md', 'notes.txt', 'app.py', 'package.json', 'settings.json', 'config.yml', 'ci.yml', 'docker-compose.yml', 'application.yaml', '.envrc', '.environment'];
// Scanned files whose name alone does not say so (their folder does): LSP4IJ's file-name
// patterns cannot map them without mapping every settings.json or YAML file, so the server's
// workspace scan covers them. Written before initialize.
const BY_FOLDER = ['.vscode/settings.json', '.github/workflows/ci.yml', '.circleci/config.yml'];

let client;
let workspace;
let initResult;
let firstStatus;
let rotateResult;
let rotateFrom = 0; // index into client.received where the rotation started

/** The command line LSP4IJ runs: the template's programArgs, with `scanmint` resolved to SCANMINT_BIN. */
function commandLine() {
  const args = template.programArgs.default.split(/\s+/);
  assert.equal(args[0], 'scanmint');
  return [bin, ...args.slice(1)];
}

function assertNoSecret(value, where) {
  const text = JSON.stringify(value);
  if (primaryKey) assert.ok(!text.includes(primaryKey), `${where} contains the Primary key`);
  assert.ok(!/"key"\s*:\s*"/.test(text), `${where} carries a "key" secret: ${text}`);
}

function assertStatusReport(r, where) {
  assert.ok(r && typeof r === 'object', `${where}: not an object`);
  assert.ok(STATES.includes(r.state), `${where}: state ${JSON.stringify(r.state)}`);
  assert.equal(typeof r.profile, 'string');
  assert.ok(r.baseUrl === null || typeof r.baseUrl === 'string', `${where}: baseUrl ${r.baseUrl}`);
  assert.equal(typeof r.storage, 'string');
  if (r.key) {
    assert.ok(Number.isInteger(r.key.keyId), `${where}: keyId ${r.key.keyId}`);
    assert.ok(Number.isInteger(r.key.generation), `${where}: generation`);
    assert.equal(typeof r.key.fingerprint, 'string');
    assert.equal(typeof r.key.role, 'string');
    assert.ok(r.key.expiresAt > 1e12, `${where}: expiresAt ${r.key.expiresAt} is not epoch milliseconds`);
  }
  assertNoSecret(r, where);
}

/** An IntelliJ file-name pattern (`*` and `?` wildcards, whole name) as a RegExp. */
function namePattern(p) {
  return new RegExp(`^${p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
}

const mappedPatterns = () => template.fileTypeMappings.flatMap((m) => m.fileType.patterns.map((p) => ({ pattern: p, languageId: m.languageId })));

async function openWithKey(name, languageId, line = `CORTEX_API_KEY=${LITERAL_KEY}`) {
  const path = join(workspace, name);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${line}\n`);
  const uri = pathToFileURL(path).href;
  client.notify('textDocument/didOpen', { textDocument: { uri, languageId, version: 1, text: `${line}\n` } });
  return uri;
}

const literalKeyDiagnostic = (uri) => (m) =>
  m.method === 'textDocument/publishDiagnostics' && m.params.uri === uri && m.params.diagnostics.some((d) => d.code === 'literal-key');

before(() => {
  assert.ok(bin, 'SCANMINT_BIN is not set: run tests/jetbrains/run.sh');
  const base = process.env.SCANMINT_TEST_TMP ?? mkdtempSync(join(tmpdir(), 'scanmint-jetbrains-'));
  workspace = join(base, 'project');
  mkdirSync(workspace, { recursive: true });
  for (const name of BY_FOLDER) {
    mkdirSync(dirname(join(workspace, name)), { recursive: true });
    writeFileSync(join(workspace, name), name.endsWith('.json') ? `{\n  "terminal.integrated.env.linux": {\n    "CORTEX_API_KEY": "${LITERAL_KEY}"\n  }\n}\n` : `env:\n  CORTEX_API_KEY: ${LITERAL_KEY}\n`);
  }
  const [cmd, ...args] = commandLine();
  client = new LspClient(cmd, args, {
    // How LSP4IJ answers server requests: progress is accepted, configuration comes from
    // settings.json, a showMessageRequest notification balloon is dismissed (null).
    answer: (msg) => {
      if (msg.method === 'workspace/configuration') return msg.params.items.map(() => settings);
      return null;
    },
  });
});

after(async () => {
  await client?.close();
});

test('template.json is what LSP4IJ imports: id, name, url of the project, file-name mappings', () => {
  // LSP4IJ's LanguageServerTemplateDeserializer reads `name` and `programArgs.default`
  // unconditionally, and turns fileType.patterns into a file-name-pattern mapping only when the
  // mapping has a languageId; a fileType.name would map an IntelliJ file type of that name instead.
  assert.equal(template.id, 'scanmint');
  assert.equal(template.name, 'scanmint');
  const cargo = readFileSync(join(here, '..', '..', 'Cargo.toml'), 'utf8');
  assert.equal(template.url, PROJECT_URL);
  assert.match(cargo, new RegExp(`^repository = "${PROJECT_URL}"$`, 'm'), 'the crate names the same project page');
  assert.ok(template.fileTypeMappings.length > 0);
  for (const m of template.fileTypeMappings) {
    assert.equal(m.fileType.name, undefined, 'file-name patterns, not an IntelliJ file type');
    assert.equal(typeof m.languageId, 'string');
    for (const p of m.fileType.patterns) {
      assert.ok(!p.includes('/'), `${p}: LSP4IJ matches names, not paths`);
      assert.ok(!/^\*(\.\w+)?$/.test(p), `${p} maps every file (of a type)`);
    }
  }
});

test('no file-name pattern maps a file a scanner does not read', () => {
  for (const name of NOT_SCANNED) {
    const hit = mappedPatterns().find(({ pattern }) => namePattern(pattern).test(name));
    assert.equal(hit, undefined, `${name} is mapped by ${hit?.pattern}`);
  }
});

test('initialize, as LSP4IJ sends it, with the template\'s initializationOptions', async () => {
  const rootUri = pathToFileURL(workspace).href;
  initResult = await client.request('initialize', {
    processId: process.pid,
    clientInfo: { name: 'IntelliJ', version: '2025.2.1 (build IU-252.25557.131)' },
    locale: 'en',
    rootPath: workspace,
    rootUri,
    initializationOptions,
    capabilities,
    trace: 'off',
    workspaceFolders: [{ uri: rootUri, name: 'project' }],
  });
  // programArgs.default started this very server.
  const version = spawnSync(bin, ['--version'], { encoding: 'utf8' }).stdout.trim();
  assert.equal(`${initResult.serverInfo?.name} ${initResult.serverInfo?.version}`, version, 'serverInfo');
  const caps = initResult.capabilities;
  assert.deepEqual([...caps.executeCommandProvider.commands].sort(), [...COMMANDS].sort());
  const sync = typeof caps.textDocumentSync === 'object' ? caps.textDocumentSync.change : caps.textDocumentSync;
  assert.equal(sync, 1, 'full text document sync');
  assert.ok(caps.codeActionProvider, 'codeActionProvider');
});

test('initialized and didChangeConfiguration (settings.json) are accepted', async () => {
  client.notify('initialized', {});
  client.notify('workspace/didChangeConfiguration', { settings });
  // The session stays up: a request after them is answered.
  firstStatus = await client.request('scanmint/status', null);
  assertStatusReport(firstStatus, 'scanmint/status');
});

test('scanmint/status reports the profile, tenant and storage tier', async () => {
  firstStatus = await client.request('scanmint/status', {});
  assertStatusReport(firstStatus, 'scanmint/status');
  assert.equal(firstStatus.profile, 'default');
  if (process.env.SCANMINT_BASE_URL) {
    assert.equal(firstStatus.baseUrl?.replace(/\/$/, ''), process.env.SCANMINT_BASE_URL.replace(/\/$/, ''));
  }
  assert.notEqual(firstStatus.state, 'needs_login', 'the Primary key from the environment is usable');
});

test('workspace/executeCommand scanmint.rotate mints a newer generation', async () => {
  rotateFrom = client.received.length;
  rotateResult = await client.request('workspace/executeCommand', { command: 'scanmint.rotate', arguments: [] }, 30_000);
  assert.equal(rotateResult.profile, 'default');
  assert.ok(Number.isInteger(rotateResult.keyId), `keyId ${rotateResult.keyId}`);
  assert.ok(Number.isInteger(rotateResult.generation), `generation ${rotateResult.generation}`);
  assert.ok(rotateResult.generation > (firstStatus.key?.generation ?? 0), 'generation grows');
  assert.equal(typeof rotateResult.message, 'string');
  assertNoSecret(rotateResult, 'rotate result');
});

test('scanmint/didChangeStatus announces the rotated key', async () => {
  const note = await client.waitFor(
    (m) => m.method === 'scanmint/didChangeStatus' && m.params?.key?.generation === rotateResult.generation && m.params.state === 'ready',
    `scanmint/didChangeStatus with generation ${rotateResult.generation}`,
    15_000,
    rotateFrom,
  );
  assertStatusReport(note.params, 'didChangeStatus');
  assert.equal(note.params.key.keyId, rotateResult.keyId);
  const now = await client.request('scanmint/status', {});
  assert.equal(now.key?.generation, rotateResult.generation);
});

test('work-done progress around the rotation (LSP4IJ advertises window.workDoneProgress)', async () => {
  const create = client.received.slice(rotateFrom).find((m) => m.method === 'window/workDoneProgress/create');
  assert.ok(create, 'window/workDoneProgress/create');
  const token = create.params.token;
  const kinds = client.received
    .slice(rotateFrom)
    .filter((m) => m.method === '$/progress' && JSON.stringify(m.params.token) === JSON.stringify(token))
    .map((m) => m.params.value?.kind);
  assert.equal(kinds[0], 'begin', `progress kinds: ${kinds}`);
  if (!kinds.includes('end')) {
    await client.waitFor(
      (m) => m.method === '$/progress' && m.params?.value?.kind === 'end' && JSON.stringify(m.params.token) === JSON.stringify(token),
      'progress end',
      10_000,
      rotateFrom,
    );
  }
});

test('files no name pattern can express are covered by the workspace scan (clientKind "editor" took effect)', async () => {
  for (const name of BY_FOLDER) {
    assert.equal(mappedPatterns().find(({ pattern }) => namePattern(pattern).test(name.split('/').pop())), undefined, `${name} is mapped`);
    const uri = pathToFileURL(join(workspace, name)).href;
    await client.waitFor(literalKeyDiagnostic(uri), `the server's own diagnostic for ${name} (never opened)`, 10_000);
  }
});

test('every file-name pattern maps a file the server scans', async () => {
  for (const { pattern, languageId } of mappedPatterns()) {
    const name = pattern.replace(/\*/g, 'local').replace(/\?/g, 'x');
    assert.ok(namePattern(pattern).test(name));
    const from = client.received.length;
    const uri = await openWithKey(join('mapped', name), languageId, name.endsWith('.env') || name.startsWith('.env') ? `CORTEX_API_KEY=${LITERAL_KEY}` : `api_key: ${LITERAL_KEY}`);
    await client.waitFor(literalKeyDiagnostic(uri), `a literal-key diagnostic for ${name} (pattern ${pattern})`, 10_000, from);
    client.notify('textDocument/didClose', { textDocument: { uri } });
  }
});

test('the server ignores the files the template leaves unmapped', async () => {
  const uris = NOT_SCANNED.map((name) => openWithKey(join('unmapped', name), 'plaintext'));
  const opened = await Promise.all(uris);
  await new Promise((r) => setTimeout(r, 1000));
  const flagged = client.received.filter((m) => m.method === 'textDocument/publishDiagnostics' && opened.includes(m.params.uri) && m.params.diagnostics.length > 0);
  assert.deepEqual(flagged.map((m) => m.params.uri), []);
  for (const uri of opened) client.notify('textDocument/didClose', { textDocument: { uri } });
});

test('a literal key in cortex.env gets a warning and a quick fix', async () => {
  const path = join(workspace, 'cortex.env');
  const text = `CORTEX_API_BASE_URL=https://api-acme.xdr.us.paloaltonetworks.com\nCORTEX_API_KEY_ID=17\nCORTEX_API_KEY=${LITERAL_KEY}\n`;
  writeFileSync(path, text);
  const uri = pathToFileURL(path).href;
  const from = client.received.length;
  const { languageId } = mappedPatterns().find(({ pattern }) => namePattern(pattern).test('cortex.env'));
  client.notify('textDocument/didOpen', { textDocument: { uri, languageId, version: 1, text } });
  const pub = await client.waitFor(
    (m) => m.method === 'textDocument/publishDiagnostics' && m.params.uri === uri && m.params.diagnostics.length > 0,
    'diagnostics for cortex.env',
    10_000,
    from,
  );
  const diag = pub.params.diagnostics.find((d) => d.code === 'literal-key');
  assert.ok(diag, `a literal-key diagnostic: ${JSON.stringify(pub.params.diagnostics)}`);
  assert.equal(diag.source, 'scanmint');
  assert.equal(diag.severity, 2, 'Warning');
  assert.equal(diag.range.start.line, 2);
  assert.ok(!JSON.stringify(diag).includes(LITERAL_KEY), 'the diagnostic repeats the key');
  const actions = await client.request('textDocument/codeAction', {
    textDocument: { uri },
    range: diag.range,
    context: { diagnostics: [diag], triggerKind: 1 },
  });
  assert.ok(Array.isArray(actions) && actions.length > 0, 'code actions');
  const fix = actions.find((a) => a.kind === 'quickfix' || a.kind?.startsWith('quickfix'));
  assert.ok(fix, `a quickfix among ${JSON.stringify(actions.map((a) => a.title))}`);
  client.notify('textDocument/didClose', { textDocument: { uri } });
});

test('scanmint/credentials keeps the secret from an editor that did not opt in', async () => {
  assert.equal(initializationOptions.exposeSecretToEditor, false);
  const creds = await client.request('scanmint/credentials', {});
  assert.ok(Number.isInteger(creds.keyId));
  assert.ok(creds.key === undefined || creds.key === null, 'no key');
  assert.ok(creds.env === undefined || creds.env === null || !creds.env.CORTEX_API_KEY, 'no CORTEX_API_KEY');
});

test('the Cortex plugin\'s CLI Path: a `scanmint wrapper` script runs the CLI with a minted key', async () => {
  // What the plugin does with its CLI Path: runs it with its own (stale) credential flags.
  const dir = join(workspace, '..', 'wrapper');
  mkdirSync(dir, { recursive: true });
  const fakeCli = join(dir, 'cortexcli');
  const report = join(dir, 'report.txt');
  writeFileSync(
    fakeCli,
    `#!/bin/sh\nprintf 'args=%s\\nid=%s\\nkeylen=%s\\nurl=%s\\n' "$*" "$CORTEX_API_KEY_ID" "\${#CORTEX_API_KEY}" "$CORTEX_API_BASE_URL" > '${report}'\n`,
    { mode: 0o755 },
  );
  const wrapper = join(dir, 'cortexcli-scanmint');
  const made = spawnSync(bin, ['wrapper', '--cli', fakeCli, '--out', wrapper], { encoding: 'utf8' });
  assert.equal(made.status, 0, `scanmint wrapper: ${made.stderr}`);
  // An IDE's scan on a workstation, not a CI job: CI=true (as this repository's CI sets it)
  // with the Primary key in the environment would make `exec` mint an ephemeral job key.
  const ideEnv = { ...process.env };
  delete ideEnv.CI;
  const ran = spawnSync(wrapper, ['code', 'scan', '--api-key', 'STALE', '--api-key-id', '9', '--api-base-url', 'https://stale.example', '--path', '.'], {
    encoding: 'utf8',
    timeout: 30_000,
    env: ideEnv,
  });
  assert.equal(ran.status, 0, `wrapper exit ${ran.status}: ${ran.stderr}`);
  const got = Object.fromEntries(readFileSync(report, 'utf8').trim().split('\n').map((l) => l.split(/=(.*)/s).slice(0, 2)));
  assert.equal(got.args, 'code scan --path .', 'credential flags stripped');
  const status = await client.request('scanmint/status', {});
  assert.equal(Number(got.id), status.key?.keyId, 'the CLI got the current key id');
  assert.ok(Number(got.keylen) > 0, 'the CLI got a secret');
  assert.equal(got.url.replace(/\/$/, ''), status.baseUrl.replace(/\/$/, ''));
});

// LSP4IJ cannot run scanmint's log-in command, so initializationOptions.json says
// `"loginPrompt": "terminal"`: the server should then tell the person to run `scanmint login` in a
// terminal instead of offering a "Log in" action nothing would carry out.
test('a profile without a Primary key: the prompt says to run `scanmint login` in a terminal, with no "Log in" action', async () => {
  assert.equal(initializationOptions.loginPrompt, 'terminal');
  const dir = mkdtempSync(join(process.env.SCANMINT_TEST_TMP ?? tmpdir(), 'nologin-'));
  const env = { ...process.env, XDG_RUNTIME_DIR: join(dir, 'run'), XDG_STATE_HOME: join(dir, 'state') };
  for (const k of ['SCANMINT_PRIMARY_KEY', 'SCANMINT_PRIMARY_KEY_ID', 'SCANMINT_PRIMARY_SECURITY_LEVEL', 'SCANMINT_BASE_URL']) delete env[k];
  mkdirSync(env.XDG_RUNTIME_DIR, { recursive: true, mode: 0o700 });
  const fresh = new LspClient(bin, ['lsp', '--standalone'], { env });
  try {
    const rootUri = pathToFileURL(workspace).href;
    await fresh.request('initialize', { processId: process.pid, rootUri, initializationOptions, capabilities, workspaceFolders: [{ uri: rootUri, name: 'project' }] });
    fresh.notify('initialized', {});
    const prompt = await fresh.waitFor(
      (m) => (m.method === 'window/showMessageRequest' || m.method === 'window/showMessage') && /log ?in/i.test(m.params?.message ?? ''),
      'a log-in prompt',
      10_000,
    );
    assert.match(prompt.params.message, /`?scanmint login/, 'names the terminal command');
    assert.deepEqual((prompt.params.actions ?? []).map((a) => a.title).filter((t) => t === 'Log in'), [], 'a "Log in" action LSP4IJ cannot carry out');
  } finally {
    await fresh.close();
  }
});

test('shutdown and exit end `scanmint lsp`', async () => {
  const result = await client.request('shutdown', undefined, 10_000);
  assert.equal(result, null);
  client.notify('exit');
  const timer = setTimeout(() => client.proc.kill('SIGKILL'), 5000);
  const { code } = await client.exited;
  clearTimeout(timer);
  assert.equal(code, 0, `exit code; stderr: ${client.stderr.slice(-1000)}`);
});
