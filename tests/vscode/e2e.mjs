// The scanmint VS Code extension in a real VS Code (code-server 4.100.3 = VS Code 1.100.3),
// driven through headless Debian Chromium with playwright-core, against the real `scanmint`.
//
// Run it through tests/vscode/run.sh, which provides an isolated HOME/XDG tree, a running
// `scanmint emulator`, a config file pointing at it and the emulator's Primary key in the
// environment (SCANMINT_BIN, SCANMINT_BASE_URL, SCANMINT_PRIMARY_KEY[_ID], SCANMINT_ADMIN_URL,
// SCANMINT_TEST_TMP). scripts/setup-vscode.sh installs code-server and Chromium.
//
// Phase 1, a user whose daemon has a Primary key (from the environment): activation, a minted key
//   in the status bar (checked against the tenant), its tooltip, "Rotate now" from the palette,
//   the literal-key diagnostic in the Problems view, the log-in command's input boxes, and
//   scanmint.terminalEnv in a new integrated terminal.
// Phase 2, a second user (own XDG dirs, so its own daemon) with no Primary key: the status bar
//   asks for a log-in, the daemon's "Log in" notification runs the log-in command, and after it a
//   key is minted.
// Prints "N passed, M failed" last; exits non-zero on any failure. Screenshots: artifacts/.
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const extDir = join(here, '..', '..', 'editors', 'vscode');
const artifacts = join(here, 'artifacts');
const codeServer = join(here, 'node_modules', '.bin', 'code-server');
const env = process.env;
const bin = env.SCANMINT_BIN;
const tmp = env.SCANMINT_TEST_TMP;
const started = Date.now();

// A literal key a scanner would read: 128 characters, like a Cortex API key.
const LITERAL_KEY = 'Zk3q'.repeat(32);
const KEY_TEXT = /scanmint: #(\d+) until (?:[A-Z][a-z]{2} \d+ )?\d\d:\d\d/;

const results = [];
const codeServers = [];
const browsers = [];

const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)}s`;
const log = (msg) => console.log(`[${elapsed()}] ${msg}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function check(name, fn) {
  const t0 = Date.now();
  const took = () => `${((Date.now() - t0) / 1000).toFixed(1)}s`;
  try {
    const detail = await fn();
    results.push({ name, ok: true });
    console.log(`ok   - ${name}${detail ? ` (${detail})` : ''} [${took()}]`);
  } catch (err) {
    results.push({ name, ok: false });
    console.log(`FAIL - ${name}: ${err?.message ?? err} [${took()}]`);
  }
}

async function waitFor(what, fn, timeoutMs, intervalMs = 250) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await sleep(intervalMs);
  }
  throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}${last ? ` (${last.message})` : ''}`);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${(r.stderr || r.stdout || '').trim().slice(-2000)}`);
  return r.stdout;
}

/** `scanmint status --json` from outside the editor, as the given user. */
function cliStatus(userEnv = env) {
  const r = spawnSync(bin, ['status', '--json'], { encoding: 'utf8', timeout: 15_000, env: userEnv });
  try {
    return JSON.parse(r.stdout);
  } catch {
    throw new Error(`scanmint status --json exited ${r.status}: ${(r.stdout + r.stderr).trim().slice(0, 500)}`);
  }
}

/** The emulated tenant's view of a key: it must exist, be active, and be no broader than shown. */
async function tenantKey(keyId) {
  if (!env.SCANMINT_ADMIN_URL) return undefined;
  const keys = await (await fetch(`${env.SCANMINT_ADMIN_URL}/keys`)).json();
  const k = keys.find((x) => x.id === keyId);
  if (!k) throw new Error(`key #${keyId} is not in the tenant's key list`);
  if (k.state !== 'active') throw new Error(`key #${keyId} is ${k.state} at the tenant`);
  if (k.is_primary) throw new Error(`key #${keyId} is the Primary key`);
  return k;
}

/** All `scanmint` output-channel logs of a code-server profile (the trace and the extension's lines). */
function outputLogs(userDir) {
  const found = [];
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else if (/-scanmint\.log$/.test(e.name)) found.push(join(d, e.name));
    }
  };
  if (existsSync(join(userDir, 'logs'))) walk(join(userDir, 'logs'));
  return found.map((f) => readFileSync(f, 'utf8')).join('\n');
}

function dumpLogs(userDir, csLog) {
  const files = [];
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else if (/scanmint\.log$|remoteexthost\.log$/.test(e.name)) files.push(join(d, e.name));
    }
  };
  if (existsSync(join(userDir, 'logs'))) walk(join(userDir, 'logs'));
  for (const f of files) console.log(`----- ${f} (last 60 lines)\n${readFileSync(f, 'utf8').split('\n').slice(-60).join('\n')}`);
  console.log(`----- ${csLog} (last 20 lines)\n${readFileSync(csLog, 'utf8').split('\n').slice(-20).join('\n')}`);
}

/** A code-server profile with the extension installed and test-friendly settings. */
function makeProfile(name, vsix) {
  const userDir = join(tmp, `${name}-code-user`);
  const extsDir = join(tmp, `${name}-code-ext`);
  mkdirSync(join(userDir, 'User'), { recursive: true });
  const settings = {
    'workbench.startupEditor': 'none',
    'workbench.tips.enabled': false,
    'workbench.welcomePage.walkthroughs.openOnInstall': false,
    'security.workspace.trust.enabled': false,
    'telemetry.telemetryLevel': 'off',
    'update.mode': 'none',
    'extensions.autoUpdate': false,
    'extensions.autoCheckUpdates': false,
    'extensions.ignoreRecommendations': true,
    // Verbose, so that the test can check that no secret reaches the output channel.
    'scanmint.trace.server': 'verbose',
  };
  writeFileSync(join(userDir, 'User', 'settings.json'), JSON.stringify(settings, null, 2));
  // scanmint.path is machine-scoped: it lives in the remote ("Machine") settings of code-server.
  mkdirSync(join(userDir, 'Machine'), { recursive: true });
  writeFileSync(join(userDir, 'Machine', 'settings.json'), JSON.stringify({ 'scanmint.path': bin }, null, 2));
  const out = run(codeServer, ['--user-data-dir', userDir, '--extensions-dir', extsDir, '--install-extension', vsix]);
  return { userDir, extsDir, installOutput: out };
}

/** A workspace with a literal key in cortex.env. */
function makeWorkspace(name) {
  const ws = join(tmp, `${name}-workspace`);
  mkdirSync(ws, { recursive: true });
  writeFileSync(
    join(ws, 'cortex.env'),
    `CORTEX_API_BASE_URL=${env.SCANMINT_BASE_URL}\nCORTEX_API_KEY_ID=17\nCORTEX_API_KEY=${LITERAL_KEY}\n`,
  );
  writeFileSync(join(ws, 'README.md'), '# scratch workspace for the scanmint VS Code test\n');
  return ws;
}

/** code-server in its own process group (setsid): the whole group is killed at the end. */
async function startCodeServer(name, profile, ws, serverEnv) {
  const port = await freePort();
  const csLog = join(tmp, `${name}-code-server.log`);
  writeFileSync(csLog, '');
  const args = [
    codeServer,
    '--auth', 'none',
    '--bind-addr', `127.0.0.1:${port}`,
    '--disable-telemetry',
    '--disable-update-check',
    '--disable-workspace-trust',
    '--disable-getting-started-override',
    '--user-data-dir', profile.userDir,
    '--extensions-dir', profile.extsDir,
    ws,
  ];
  const proc = spawn('setsid', args, { stdio: ['ignore', 'pipe', 'pipe'], env: serverEnv });
  codeServers.push(proc);
  proc.stdout.on('data', (d) => writeFileSync(csLog, d, { flag: 'a' }));
  proc.stderr.on('data', (d) => writeFileSync(csLog, d, { flag: 'a' }));
  await waitFor('code-server /healthz', async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok, 60_000);
  log(`${name}: code-server on 127.0.0.1:${port}`);
  return { port, csLog };
}

/** A headless Chromium on the workbench, and helpers to drive it. */
async function openWorkbench(name, port, ws) {
  const browser = await chromium.launchPersistentContext(join(tmp, `${name}-chromium`), {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1400, height: 860 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  browsers.push(browser);
  const page = browser.pages()[0] ?? (await browser.newPage());
  await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(ws)}`);
  await page.waitForSelector('.monaco-workbench', { timeout: 30_000 });
  log(`${name}: workbench loaded`);

  const statusItem = page.locator('.statusbar-item', { hasText: 'scanmint' }).first();
  const statusText = async () => ((await statusItem.count()) ? (await statusItem.innerText()).trim() : '');
  const quickInput = page.locator('.quick-input-widget input.input');

  const runCommand = async (title) => {
    await page.keyboard.press('Escape');
    await page.keyboard.press('F1');
    await quickInput.waitFor({ state: 'visible', timeout: 10_000 });
    await quickInput.fill(`>${title}`);
    await page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first().waitFor({ timeout: 10_000 });
    await page.keyboard.press('Enter');
  };

  /** Answers the log-in command's prompts; returns the text of the resulting notification. */
  const answerLogin = async () => {
    const step = async (value, secret) => {
      await quickInput.waitFor({ state: 'visible', timeout: 10_000 });
      const type = await quickInput.getAttribute('type');
      if (secret !== (type === 'password')) throw new Error(`input type ${type} for ${secret ? 'the key' : 'a non-secret field'}`);
      await quickInput.fill(value);
      await page.keyboard.press('Enter');
      await sleep(300);
    };
    await step(env.SCANMINT_BASE_URL, false);
    await step(String(env.SCANMINT_PRIMARY_KEY_ID), false);
    await step(env.SCANMINT_PRIMARY_KEY, true);
    const level = /advanced/i.test(env.SCANMINT_SECURITY_LEVEL ?? '') ? 'Advanced' : 'Standard';
    await page.locator('.quick-input-list .monaco-list-row', { hasText: level }).first().click({ timeout: 10_000 });
    const toast = page.locator('.notification-toast', { hasText: /scanmint: (?!logging)/ }).first();
    await toast.waitFor({ timeout: 20_000 });
    const text = (await toast.innerText()).replace(/\s+/g, ' ').trim();
    if (/log-in failed/i.test(text)) throw new Error(text);
    if (text.includes(env.SCANMINT_PRIMARY_KEY)) throw new Error('the notification shows the key');
    await runCommand('Notifications: Clear All Notifications');
    return text;
  };

  /** Waits for a key in the status bar; if none comes, "Rotate now" makes the daemon mint. */
  const waitForKey = async (timeoutMs = 15_000) => {
    const shown = await waitFor('a key in the status bar', async () => KEY_TEXT.test(await statusText()), timeoutMs).catch(() => null);
    if (!shown) {
      log(`no key shown yet (${JSON.stringify(await statusText())}); running "scanmint: Rotate now" to mint`);
      await runCommand('scanmint: Rotate now');
      await waitFor('a key in the status bar', async () => KEY_TEXT.test(await statusText()), 30_000);
    }
    const text = await statusText();
    return { text, keyId: Number(KEY_TEXT.exec(text)[1]) };
  };

  return { page, statusItem, statusText, runCommand, answerLogin, waitForKey };
}

// ------------------------------------------------------------------------------------ phase 1

async function phase1(vsix) {
  const profile = makeProfile('p1', vsix);
  await check('extension installs into code-server', async () => {
    if (!/successfully installed/i.test(profile.installOutput)) throw new Error(profile.installOutput.trim());
    return `${(statSync(vsix).size / 1024).toFixed(0)} KiB .vsix`;
  });
  const ws = makeWorkspace('p1');
  const { port, csLog } = await startCodeServer('p1', profile, ws, env);
  const wb = await openWorkbench('p1', port, ws);
  const { page, statusItem, statusText, runCommand } = wb;

  await check('extension activates: status bar item shows', async () => JSON.stringify(await waitFor('a scanmint status bar item', statusText, 30_000)));

  let first;
  await check('status bar shows a valid minted key (an active, read-only key at the tenant)', async () => {
    first = await wb.waitForKey();
    const k = await tenantKey(first.keyId);
    return `${JSON.stringify(first.text)}${k ? `; tenant: ${k.roles.join(', ')}, ${k.security_level}` : ''}`;
  });

  let before;
  await check('`scanmint status --json` agrees with the status bar', async () => {
    before = cliStatus();
    if (before?.key?.keyId !== first?.keyId) throw new Error(`CLI shows ${JSON.stringify(before?.key)}; status bar #${first?.keyId}`);
    return `generation ${before.key.generation}, ${before.key.fingerprint}, storage ${before.storage}`;
  });

  await check('tooltip shows fingerprint, role, storage, generation (no secret)', async () => {
    await statusItem.hover();
    const hover = page.locator('.workbench-hover, .monaco-hover').filter({ hasText: 'Fingerprint' }).first();
    await hover.waitFor({ timeout: 10_000 });
    const text = await hover.innerText();
    for (const want of ['Fingerprint', 'Role', 'Storage', `generation ${before?.key?.generation}`, before?.key?.fingerprint]) {
      if (!text.includes(want)) throw new Error(`tooltip lacks "${want}": ${JSON.stringify(text)}`);
    }
    if (text.includes(env.SCANMINT_PRIMARY_KEY)) throw new Error('tooltip shows the Primary key');
    await page.mouse.move(10, 10);
    return text.split('\n').find((l) => l.includes('generation'))?.trim();
  });

  await check('"scanmint: Rotate now" from the palette changes the key and generation', async () => {
    await runCommand('scanmint: Rotate now');
    const text = await waitFor(
      'a new key in the status bar',
      async () => {
        const m = KEY_TEXT.exec(await statusText());
        return m && Number(m[1]) !== first?.keyId ? m[0] : null;
      },
      30_000,
    );
    const after = cliStatus();
    if (!(after?.key?.generation > before?.key?.generation)) throw new Error(`generation did not grow: ${before?.key?.generation} → ${after?.key?.generation}`);
    if (`#${after.key.keyId}` !== `#${KEY_TEXT.exec(text)[1]}`) throw new Error(`CLI key #${after.key.keyId}, status bar ${text}`);
    await tenantKey(after.key.keyId);
    return `${JSON.stringify(text)}, generation ${before.key.generation} → ${after.key.generation}`;
  });

  await check('Problems view shows the literal key in cortex.env', async () => {
    await page.keyboard.press('F1');
    const input = page.locator('.quick-input-widget input.input');
    await input.waitFor({ state: 'visible', timeout: 10_000 });
    await input.fill('cortex.env'); // without '>': Quick Open a file
    await page.locator('.quick-input-list .monaco-list-row', { hasText: 'cortex.env' }).first().waitFor({ timeout: 10_000 });
    await page.keyboard.press('Enter');
    await page.locator('.tab', { hasText: 'cortex.env' }).first().waitFor({ timeout: 10_000 });
    await runCommand('Problems: Focus on Problems View');
    const row = page.locator('.markers-panel .monaco-list-row', { hasText: 'literal-key' }).first();
    await row.waitFor({ timeout: 20_000 });
    const text = (await row.innerText()).replace(/\s+/g, ' ').trim();
    if (text.includes(LITERAL_KEY)) throw new Error('the diagnostic repeats the literal key');
    if (!/\[Ln 3,/.test(text)) throw new Error(`not on line 3: ${text}`);
    return JSON.stringify(text.length > 110 ? `${text.slice(0, 60)}…${text.slice(-45)}` : text);
  });

  await page.screenshot({ path: join(artifacts, 'workbench.png') });
  log(`screenshot: ${join(artifacts, 'workbench.png')}`);

  await check('"scanmint: Log in" asks for URL, key id, key (password box), level and logs in', async () => {
    await runCommand('scanmint: Log in');
    return JSON.stringify((await wb.answerLogin()).slice(0, 100));
  });

  await check('scanmint.terminalEnv puts CORTEX_API_* into a new terminal, and nowhere else', async () => {
    // As a person would: the Settings editor, search, tick the box. A machine-scoped setting:
    // code-server shows it under the Remote tab (as VS Code does in a remote window).
    await runCommand('Preferences: Open User Settings');
    const search = page.locator('.settings-editor .suggest-input-container textarea').first();
    await search.waitFor({ timeout: 10_000 });
    await search.focus();
    await page.keyboard.type('scanmint.terminalEnv');
    await page.locator('.settings-editor .settings-tabs-widget .action-label', { hasText: 'Remote' }).first().click({ timeout: 10_000 });
    const box = page.locator('.settings-editor .setting-item-bool', { hasText: 'Terminal Env' }).locator('.setting-value-checkbox').first();
    await box.click({ timeout: 10_000 });
    const machineSettings = join(profile.userDir, 'Machine', 'settings.json');
    await waitFor('scanmint.terminalEnv in Machine/settings.json', () => /"scanmint\.terminalEnv":\s*true/.test(readFileSync(machineSettings, 'utf8')), 10_000);
    // The extension restarts its session with exposeSecretToEditor and says when the env is set.
    const line = await waitFor('"Terminal environment set" in the scanmint output', () => /Terminal environment set for key #\d+/.exec(outputLogs(profile.userDir))?.[0], 20_000);
    const out = join(ws, 'terminal-env.txt');
    await runCommand('Terminal: Create New Terminal');
    await page.locator('.terminal-wrapper.active .xterm, .xterm').first().waitFor({ timeout: 15_000 });
    await sleep(1500); // the shell's prompt
    await page.keyboard.type(`printf '%s|%s|%s\\n' "$CORTEX_API_KEY_ID" "$CORTEX_API_KEY" "$CORTEX_API_BASE_URL" > '${out}'`);
    await page.keyboard.press('Enter');
    const got = await waitFor('the terminal to write its environment', () => (existsSync(out) ? readFileSync(out, 'utf8').trim() : ''), 15_000);
    const [id, secret, url] = got.split('|');
    const st = cliStatus();
    if (Number(id) !== st?.key?.keyId) throw new Error(`terminal has CORTEX_API_KEY_ID=${id}; daemon key #${st?.key?.keyId}`);
    if (!secret) throw new Error('terminal has no CORTEX_API_KEY');
    if (url?.replace(/\/$/, '') !== env.SCANMINT_BASE_URL.replace(/\/$/, '')) throw new Error(`terminal has CORTEX_API_BASE_URL=${url}`);
    // The trace is verbose: the credentials reply passed through the output channel, redacted.
    const logs = outputLogs(profile.userDir);
    if (logs.includes(secret)) throw new Error('the scanmint output shows the minted secret');
    if (logs.includes(env.SCANMINT_PRIMARY_KEY)) throw new Error('the scanmint output shows the Primary key');
    if (!logs.includes('<redacted>')) throw new Error('no redacted secret in the verbose trace: was the credentials reply traced?');
    for (const f of ['User', 'Machine']) {
      if (readFileSync(join(profile.userDir, f, 'settings.json'), 'utf8').includes(secret)) throw new Error(`the secret is in ${f}/settings.json`);
    }
    return `${line}; terminal: key #${id}, ${secret.length}-character secret; not in the verbose trace or settings`;
  });

  if (results.some((r) => !r.ok)) {
    await page.screenshot({ path: join(artifacts, 'failure-phase1.png') }).catch(() => {});
    console.log(`phase 1 status bar at the end: ${JSON.stringify(await statusText())}`);
    dumpLogs(profile.userDir, csLog);
  }
}

// ------------------------------------------------------------------------------------ phase 2

async function phase2(vsix) {
  const failedBefore = results.filter((r) => !r.ok).length;
  // A second user: own HOME and XDG dirs (so its own daemon and store), the same config, and no
  // Primary key anywhere.
  const home = join(tmp, 'p2-user');
  const userEnv = { ...env };
  for (const [k, sub] of [['HOME', 'home'], ['XDG_CONFIG_HOME', 'config'], ['XDG_DATA_HOME', 'data'], ['XDG_STATE_HOME', 'state'], ['XDG_CACHE_HOME', 'cache'], ['XDG_RUNTIME_DIR', 'run']]) {
    userEnv[k] = join(home, sub);
    mkdirSync(userEnv[k], { recursive: true, mode: 0o700 });
  }
  cpSync(join(env.XDG_CONFIG_HOME, 'scanmint'), join(userEnv.XDG_CONFIG_HOME, 'scanmint'), { recursive: true });
  delete userEnv.SCANMINT_PRIMARY_KEY;
  delete userEnv.SCANMINT_PRIMARY_KEY_ID;

  const profile = makeProfile('p2', vsix);
  const ws = makeWorkspace('p2');
  const { port, csLog } = await startCodeServer('p2', profile, ws, userEnv);
  const wb = await openWorkbench('p2', port, ws);
  const { page, statusText } = wb;

  await check('without a Primary key the status bar asks for a log-in', async () =>
    JSON.stringify(await waitFor('"scanmint: log in"', async () => ((await statusText()).includes('scanmint: log in') ? statusText() : null), 30_000)),
  );

  await check('the daemon\'s "Log in" notification runs the log-in command, then a key is minted', async () => {
    const toast = page.locator('.notification-toast', { has: page.locator('.monaco-button', { hasText: 'Log in' }) }).first();
    await toast.waitFor({ timeout: 20_000 });
    const message = (await toast.locator('.notification-list-item-message').innerText()).trim();
    await toast.locator('.monaco-button', { hasText: 'Log in' }).first().click();
    const result = await wb.answerLogin();
    const { text, keyId } = await wb.waitForKey(5_000); // "ready" may mean "mints on demand"
    await tenantKey(keyId);
    const st = cliStatus(userEnv);
    if (st?.key?.keyId !== keyId) throw new Error(`CLI (second user) shows ${JSON.stringify(st?.key)}; status bar #${keyId}`);
    return `asked: ${JSON.stringify(message.slice(0, 80))}; ${JSON.stringify(result.slice(0, 60))}; then ${JSON.stringify(text)}`;
  });

  await page.screenshot({ path: join(artifacts, 'login.png') });
  if (results.filter((r) => !r.ok).length > failedBefore) {
    await page.screenshot({ path: join(artifacts, 'failure-phase2.png') }).catch(() => {});
    console.log(`phase 2 status bar at the end: ${JSON.stringify(await statusText())}`);
    dumpLogs(profile.userDir, csLog);
  }
}

// --------------------------------------------------------------------------------------- main

async function cleanup() {
  for (const b of browsers) await b.close().catch(() => {});
  for (const p of codeServers) {
    try {
      process.kill(-p.pid, 'SIGTERM'); // the whole group: extension host, `scanmint lsp`
    } catch {}
  }
}

process.on('SIGINT', () => cleanup().then(() => process.exit(130)));
process.on('SIGTERM', () => cleanup().then(() => process.exit(143)));

try {
  for (const v of ['SCANMINT_BIN', 'SCANMINT_TEST_TMP', 'SCANMINT_BASE_URL', 'SCANMINT_PRIMARY_KEY', 'SCANMINT_PRIMARY_KEY_ID', 'XDG_CONFIG_HOME']) {
    if (!env[v]) throw new Error(`${v} is not set: run tests/vscode/run.sh`);
  }
  if (!existsSync(codeServer)) throw new Error('code-server is not installed: run scripts/setup-vscode.sh');
  mkdirSync(artifacts, { recursive: true });
  log('packaging the extension');
  run('npm', ['run', '--silent', 'package'], { cwd: extDir });
  const vsix = join(extDir, 'scanmint.vsix');
  await phase1(vsix);
  await cleanup(); // one code-server and browser at a time on a 2-core machine
  codeServers.length = 0;
  browsers.length = 0;
  await phase2(vsix);
} catch (err) {
  results.push({ name: 'setup', ok: false });
  console.log(`FAIL - ${err?.stack ?? err}`);
} finally {
  await cleanup();
  const passed = results.filter((r) => r.ok).length;
  const failed = results.length - passed;
  console.log(`vscode e2e took ${elapsed()}`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed || !results.length ? 1 : 0;
}
