// The harness of the VS Code test (e2e.mjs): result bookkeeping, code-server profiles and
// processes, the emulated tenant's admin endpoint, and a driver for the workbench in headless
// Chromium. Kept apart so that e2e.mjs reads as the list of things a person does.
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const here = dirname(fileURLToPath(import.meta.url));
export const extDir = join(here, '..', '..', 'editors', 'vscode');
export const artifacts = join(here, 'artifacts');
export const codeServer = join(here, 'node_modules', '.bin', 'code-server');
export const env = process.env;
export const bin = env.SCANMINT_BIN;
export const tmp = env.SCANMINT_TEST_TMP;

/** The status bar text with a live key, exactly: `scanmint: #1001 until 14:05`. */
export const KEY_TEXT = /^scanmint: #(\d+) until (?:[A-Z][a-z]{2} \d+ )?\d\d:\d\d$/;

const started = Date.now();
export const results = [];
const codeServers = [];
const browsers = [];

export const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)}s`;
export const log = (msg) => console.log(`[${elapsed()}] ${msg}`);
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function check(name, fn) {
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

export const failures = () => results.filter((r) => !r.ok).length;

export async function waitFor(what, fn, timeoutMs, intervalMs = 250) {
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

export function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${(r.stderr || r.stdout || '').trim().slice(-2000)}`);
  return r.stdout;
}

/** `scanmint status --json` from outside the editor, as the given user. */
export function cliStatus(userEnv = env) {
  const r = spawnSync(bin, ['status', '--json'], { encoding: 'utf8', timeout: 15_000, env: userEnv });
  try {
    return JSON.parse(r.stdout);
  } catch {
    throw new Error(`scanmint status --json exited ${r.status}: ${(r.stdout + r.stderr).trim().slice(0, 500)}`);
  }
}

// ------------------------------------------------------------------------------ the tenant

/** A call under the emulator's admin URL exactly as its boot line printed it (it may carry a
 *  token in its path or query): only the path is extended. */
function adminUrl(sub) {
  if (!env.SCANMINT_ADMIN_URL) throw new Error('SCANMINT_ADMIN_URL is empty: the emulator printed no admin_url, so the tenant cannot be checked');
  const u = new URL(env.SCANMINT_ADMIN_URL);
  u.pathname = `${u.pathname.replace(/\/+$/, '')}/${sub}`;
  return u;
}

export async function tenantKeys() {
  const r = await fetch(adminUrl('keys'));
  if (!r.ok) throw new Error(`admin ${r.status}: ${(await r.text()).slice(0, 200)}`);
  return r.json();
}

/** The tenant's view of a key: it must exist, be active, not the Primary, and read-only. */
export async function tenantKey(keyId) {
  const k = (await tenantKeys()).find((x) => x.id === keyId);
  if (!k) throw new Error(`key #${keyId} is not in the tenant's key list`);
  if (k.state !== 'active') throw new Error(`key #${keyId} is ${k.state} at the tenant`);
  if (k.is_primary) throw new Error(`key #${keyId} is the Primary key`);
  return k;
}

/** The minted (non-Primary) keys the tenant still accepts. */
export async function activeMinted() {
  return (await tenantKeys()).filter((k) => !k.is_primary && k.state === 'active').map((k) => k.id);
}

// ------------------------------------------------------------------------- code-server profiles

/** The text of a code-server profile's output-channel logs whose file name matches NAME. */
export function outputLogs(userDir, name = /-scanmint\.log$/) {
  const found = [];
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else if (name.test(e.name)) found.push(join(d, e.name));
    }
  };
  if (existsSync(join(userDir, 'logs'))) walk(join(userDir, 'logs'));
  return found.map((f) => readFileSync(f, 'utf8')).join('\n');
}

export function dumpLogs(profile, csLog) {
  const files = [];
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else if (/scanmint.*\.log$|remoteexthost\.log$/.test(e.name)) files.push(join(d, e.name));
    }
  };
  if (existsSync(join(profile.userDir, 'logs'))) walk(join(profile.userDir, 'logs'));
  for (const f of files) console.log(`----- ${f} (last 40 lines)\n${readFileSync(f, 'utf8').split('\n').slice(-40).join('\n')}`);
  console.log(`----- ${csLog} (last 20 lines)\n${readFileSync(csLog, 'utf8').split('\n').slice(-20).join('\n')}`);
}

/** A code-server profile with VSIX installed. MACHINE: the remote ("Machine") settings, where
 *  machine-scoped settings such as scanmint.path live; TRUST: leave workspace trust on. */
export function makeProfile(name, vsix, { machine = {}, trust = false } = {}) {
  const userDir = join(tmp, `${name}-code-user`);
  const extsDir = join(tmp, `${name}-code-ext`);
  mkdirSync(join(userDir, 'User'), { recursive: true });
  const settings = {
    'workbench.startupEditor': 'none',
    'workbench.tips.enabled': false,
    'workbench.welcomePage.walkthroughs.openOnInstall': false,
    'security.workspace.trust.enabled': trust,
    'telemetry.telemetryLevel': 'off',
    'update.mode': 'none',
    'extensions.autoUpdate': false,
    'extensions.autoCheckUpdates': false,
    'extensions.ignoreRecommendations': true,
  };
  writeFileSync(join(userDir, 'User', 'settings.json'), JSON.stringify(settings, null, 2));
  mkdirSync(join(userDir, 'Machine'), { recursive: true });
  writeFileSync(join(userDir, 'Machine', 'settings.json'), JSON.stringify(machine, null, 2));
  const installOutput = run(codeServer, ['--user-data-dir', userDir, '--extensions-dir', extsDir, '--install-extension', vsix]);
  if (!/successfully installed/i.test(installOutput)) throw new Error(`install: ${installOutput.trim()}`);
  return { name, userDir, extsDir, installOutput };
}

/** A workspace with a literal key in cortex.env (line 3) and a README. */
export function makeWorkspace(name, literalKey) {
  const ws = join(tmp, `${name}-workspace`);
  mkdirSync(ws, { recursive: true });
  writeFileSync(join(ws, 'cortex.env'), `CORTEX_API_BASE_URL=${env.SCANMINT_BASE_URL}\nCORTEX_API_KEY_ID=17\nCORTEX_API_KEY=${literalKey}\n`);
  writeFileSync(join(ws, 'README.md'), '# scratch workspace for the scanmint VS Code test\n');
  return ws;
}

/** The environment of another user of this machine: own HOME and XDG dirs (so its own daemon
 *  and store), the same config; the Primary key in the environment only with PRIMARY. */
export function otherUser(name, { primary }) {
  const home = join(tmp, `${name}-user`);
  const userEnv = { ...env };
  for (const [k, sub] of [['HOME', 'home'], ['XDG_CONFIG_HOME', 'config'], ['XDG_DATA_HOME', 'data'], ['XDG_STATE_HOME', 'state'], ['XDG_CACHE_HOME', 'cache'], ['XDG_RUNTIME_DIR', 'run']]) {
    userEnv[k] = join(home, sub);
    mkdirSync(userEnv[k], { recursive: true, mode: 0o700 });
  }
  cpSync(join(env.XDG_CONFIG_HOME, 'scanmint'), join(userEnv.XDG_CONFIG_HOME, 'scanmint'), { recursive: true });
  if (!primary) {
    delete userEnv.SCANMINT_PRIMARY_KEY;
    delete userEnv.SCANMINT_PRIMARY_KEY_ID;
  }
  return userEnv;
}

/** Executable paths of the processes whose environment has XDG_RUNTIME_DIR=RUNTIME. */
export function exesOf(runtime) {
  const exes = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/environ`, 'utf8').split('\0').includes(`XDG_RUNTIME_DIR=${runtime}`)) {
        exes.push({ pid: Number(d), exe: readlinkSync(`/proc/${d}/exe`), args: readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').slice(1, 2).join(' ') });
      }
    } catch {}
  }
  return exes;
}

/** ENV with every PATH directory that holds a `scanmint` removed; fails if one is still found. */
export function withoutScanmintOnPath(base) {
  const dirs = (base.PATH ?? '').split(delimiter).filter((d) => d && !existsSync(join(d, 'scanmint')));
  const e = { ...base, PATH: dirs.join(delimiter) };
  const r = spawnSync('sh', ['-c', 'command -v scanmint'], { encoding: 'utf8', env: e });
  if (r.status === 0) throw new Error(`scanmint is still on PATH: ${r.stdout}`);
  return e;
}

/** code-server in its own process group (setsid): the whole group is killed at the end. */
export async function startCodeServer(profile, ws, serverEnv, { trust = false } = {}) {
  const port = await freePort();
  const csLog = join(tmp, `${profile.name}-code-server.log`);
  writeFileSync(csLog, '');
  const args = [
    codeServer,
    '--auth', 'none',
    '--bind-addr', `127.0.0.1:${port}`,
    '--disable-telemetry',
    '--disable-update-check',
    ...(trust ? [] : ['--disable-workspace-trust']),
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
  log(`${profile.name}: code-server on 127.0.0.1:${port}`);
  return { port, csLog };
}

export async function cleanup() {
  for (const b of browsers.splice(0)) await b.close().catch(() => {});
  for (const p of codeServers.splice(0)) {
    try {
      process.kill(-p.pid, 'SIGTERM'); // the whole group: extension host, `scanmint lsp`
    } catch {}
  }
  await sleep(500);
}

/** PIDs of `BINARY lsp` processes (the language servers code-server started). */
export function lspPids(binary = bin) {
  const want = `${binary}\0lsp\0`;
  const pids = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8') === want) pids.push(Number(d));
    } catch {}
  }
  return pids.sort();
}

export const isExecutable = (p) => (statSync(p).mode & 0o111) === 0o111;

// --------------------------------------------------------------------------------- workbench

/** A headless Chromium on the workbench, and helpers to drive it as a person would. */
export async function openWorkbench(name, port, ws) {
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
  const statusText = async () => ((await statusItem.count()) ? (await statusItem.innerText()).replace(/\s+/g, ' ').trim() : '');
  const quickInput = page.locator('.quick-input-widget input.input');
  const dialog = page.locator('.monaco-dialog-box');

  const quickOpen = async (text) => {
    await page.keyboard.press('Escape');
    await page.keyboard.press('F1');
    await quickInput.waitFor({ state: 'visible', timeout: 10_000 });
    await quickInput.fill(text);
  };

  const runCommand = async (title) => {
    await quickOpen(`>${title}`);
    await page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first().waitFor({ timeout: 10_000 });
    await page.keyboard.press('Enter');
  };

  const openFile = async (file) => {
    await quickOpen(file); // without '>': Quick Open a file
    await page.locator('.quick-input-list .monaco-list-row', { hasText: file }).first().waitFor({ timeout: 10_000 });
    await page.keyboard.press('Enter');
    await page.locator('.tab.active', { hasText: file }).first().waitFor({ timeout: 10_000 });
  };

  const pick = async (label) => {
    await page.locator('.quick-input-list .monaco-list-row', { hasText: label }).first().click({ timeout: 10_000 });
  };

  /** The modal dialog's text; answers it with BUTTON. */
  const answerDialog = async (button) => {
    await dialog.waitFor({ state: 'visible', timeout: 10_000 });
    const text = (await dialog.innerText()).replace(/\s+/g, ' ').trim();
    await dialog.locator('.monaco-button', { hasText: new RegExp(`^${button}$`) }).first().click();
    await dialog.waitFor({ state: 'hidden', timeout: 10_000 });
    return text;
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
    await pick(/advanced/i.test(env.SCANMINT_SECURITY_LEVEL ?? '') ? 'Advanced' : 'Standard');
    const toast = page.locator('.notification-toast', { hasText: /scanmint: (?!logging)/ }).first();
    await toast.waitFor({ timeout: 20_000 });
    const text = (await toast.innerText()).replace(/\s+/g, ' ').trim();
    if (/log-in failed/i.test(text)) throw new Error(text);
    if (text.includes(env.SCANMINT_PRIMARY_KEY)) throw new Error('the notification shows the key');
    await runCommand('Notifications: Clear All Notifications');
    return text;
  };

  /** Waits for exactly a key in the status bar. No command is run to make one appear: a key
   *  that does not come by itself is a prefetch regression. */
  const waitForKey = async (timeoutMs = 30_000, notId = undefined) => {
    const text = await waitFor(
      `a key${notId ? ` other than #${notId}` : ''} in the status bar`,
      async () => {
        const t = await statusText();
        const m = KEY_TEXT.exec(t);
        return m && Number(m[1]) !== notId ? t : null;
      },
      timeoutMs,
    ).catch(async (err) => {
      throw new Error(`${err.message}; it shows ${JSON.stringify(await statusText())}`);
    });
    return { text, keyId: Number(KEY_TEXT.exec(text)[1]) };
  };

  /** Waits for the status bar to read exactly WANT. */
  const waitForStatus = async (want, timeoutMs = 30_000) =>
    waitFor(`status bar ${JSON.stringify(want)}`, async () => (await statusText()) === want, timeoutMs).catch(async (err) => {
      throw new Error(`${err.message}; it shows ${JSON.stringify(await statusText())}`);
    });

  return { page, statusItem, statusText, quickOpen, runCommand, openFile, pick, dialog, answerDialog, answerLogin, waitForKey, waitForStatus };
}
