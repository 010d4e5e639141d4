// The scanmint VS Code extension in a real VS Code (code-server 4.100.3 = VS Code 1.100.3),
// driven through headless Debian Chromium with playwright-core.
//
// Run through tests/vscode/run.sh (isolated HOME/XDG dirs, emulator, config, Primary key in the
// environment). Needs: scripts/setup-vscode.sh done, SCANMINT_BIN, SCANMINT_ADMIN_URL (optional).
// Prints "N passed, M failed" last; exits non-zero on any failure.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const extDir = join(root, 'editors', 'vscode');
const artifacts = join(here, 'artifacts');
const codeServer = join(here, 'node_modules', '.bin', 'code-server');
const bin = process.env.SCANMINT_BIN;
const tmp = process.env.SCANMINT_TEST_TMP ?? mkdtempSync(join(tmpdir(), 'scanmint-vscode-'));
const started = Date.now();

const results = [];
let codeServerProc;
let browser;

const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)}s`;
const log = (msg) => console.log(`[${elapsed()}] ${msg}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function check(name, fn) {
  try {
    const detail = await fn();
    results.push({ name, ok: true });
    console.log(`ok   - ${name}${detail ? ` (${detail})` : ''}`);
    return true;
  } catch (err) {
    results.push({ name, ok: false });
    console.log(`FAIL - ${name}: ${err?.message ?? err}`);
    return false;
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
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${(r.stderr || r.stdout || '').trim().slice(-2000)}`);
  }
  return r.stdout;
}

/** `scanmint status --json` through the daemon, from outside the editor. */
function cliStatus() {
  const r = spawnSync(bin, ['status', '--json'], { encoding: 'utf8', timeout: 15_000 });
  try {
    return JSON.parse(r.stdout);
  } catch {
    throw new Error(`scanmint status --json exited ${r.status}: ${(r.stdout + r.stderr).trim().slice(0, 500)}`);
  }
}

async function cleanup() {
  try {
    await browser?.close();
  } catch {}
  if (codeServerProc?.pid) {
    try {
      process.kill(-codeServerProc.pid, 'SIGTERM'); // its whole process group: extension host, scanmint lsp
    } catch {}
  }
}

function finish() {
  const passed = results.filter((r) => r.ok).length;
  const failed = results.length - passed;
  console.log(`vscode e2e took ${elapsed()}`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed || !results.length ? 1 : 0;
}

/** The scanmint output channel and the extension host log, for when something fails. */
function dumpLogs(userDir) {
  const logsDir = join(userDir, 'logs');
  const files = [];
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/scanmint|exthost\.log$|remoteexthost\.log$/.test(e.name)) files.push(p);
    }
  };
  if (existsSync(logsDir)) walk(logsDir);
  for (const f of files) {
    const text = readFileSync(f, 'utf8');
    console.log(`----- ${f.slice(tmp.length)} (last 60 lines)`);
    console.log(text.split('\n').slice(-60).join('\n'));
  }
}

// A literal key a scanner would read: 128 characters, like a Cortex API key.
const LITERAL_KEY = 'Zk3q'.repeat(32);

async function main() {
  if (!bin) throw new Error('SCANMINT_BIN is not set: run tests/vscode/run.sh');
  if (!existsSync(codeServer)) throw new Error('code-server is not installed: run scripts/setup-vscode.sh');
  mkdirSync(artifacts, { recursive: true });

  // ---- package the extension and install it into a fresh code-server profile
  log('packaging the extension');
  run('npm', ['run', '--silent', 'package'], { cwd: extDir });
  const vsix = join(extDir, 'scanmint.vsix');
  const userDir = join(tmp, 'code-user');
  const extsDir = join(tmp, 'code-ext');
  mkdirSync(join(userDir, 'User'), { recursive: true });
  writeFileSync(
    join(userDir, 'User', 'settings.json'),
    JSON.stringify(
      {
        'workbench.startupEditor': 'none',
        'workbench.tips.enabled': false,
        'workbench.welcomePage.walkthroughs.openOnInstall': false,
        'security.workspace.trust.enabled': false,
        'telemetry.telemetryLevel': 'off',
        'update.mode': 'none',
        'extensions.autoUpdate': false,
        'extensions.autoCheckUpdates': false,
        'extensions.ignoreRecommendations': true,
        'chat.commandCenter.enabled': false,
        'scanmint.path': bin,
        'scanmint.trace.server': 'messages',
      },
      null,
      2,
    ),
  );
  log('installing the .vsix into code-server');
  const installed = run(codeServer, ['--user-data-dir', userDir, '--extensions-dir', extsDir, '--install-extension', vsix]);
  await check('extension installs into code-server', async () => {
    if (!/successfully installed/i.test(installed)) throw new Error(installed.trim());
    return `${(statSync(vsix).size / 1024).toFixed(0)} KiB .vsix`;
  });

  // ---- a workspace with a literal key in cortex.env
  const ws = join(tmp, 'workspace');
  mkdirSync(ws, { recursive: true });
  writeFileSync(
    join(ws, 'cortex.env'),
    `CORTEX_API_BASE_URL=${process.env.SCANMINT_BASE_URL ?? 'https://api-acme.xdr.us.paloaltonetworks.com'}\n` +
      `CORTEX_API_KEY_ID=17\nCORTEX_API_KEY=${LITERAL_KEY}\n`,
  );
  writeFileSync(join(ws, 'README.md'), '# scratch workspace for the scanmint VS Code test\n');

  // ---- code-server in its own process group
  const port = await freePort();
  log(`starting code-server on 127.0.0.1:${port}`);
  const csLog = join(tmp, 'code-server.log');
  writeFileSync(csLog, '');
  codeServerProc = spawn(
    'setsid',
    [
      codeServer,
      '--auth', 'none',
      '--bind-addr', `127.0.0.1:${port}`,
      '--disable-telemetry',
      '--disable-update-check',
      '--disable-workspace-trust',
      '--disable-getting-started-override',
      '--user-data-dir', userDir,
      '--extensions-dir', extsDir,
      ws,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], detached: false },
  );
  codeServerProc.stdout.on('data', (d) => writeFileSync(csLog, d, { flag: 'a' }));
  codeServerProc.stderr.on('data', (d) => writeFileSync(csLog, d, { flag: 'a' }));
  await waitFor('code-server /healthz', async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok, 60_000);

  // ---- the workbench in headless Chromium
  browser = await chromium.launchPersistentContext(join(tmp, 'chromium'), {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1400, height: 860 },
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const page = browser.pages()[0] ?? (await browser.newPage());
  await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(ws)}`);
  await page.waitForSelector('.monaco-workbench', { timeout: 30_000 });
  log('workbench loaded');

  const statusItem = page.locator('.statusbar-item', { hasText: 'scanmint' }).first();
  const statusText = async () => ((await statusItem.count()) ? (await statusItem.innerText()).trim() : '');
  const KEY_TEXT = /scanmint: #(\d+) until (?:[A-Z][a-z]{2} \d+ )?\d\d:\d\d/;

  const runCommand = async (title) => {
    await page.locator('.monaco-workbench').click({ position: { x: 700, y: 300 } }).catch(() => {});
    await page.keyboard.press('F1');
    const input = page.locator('.quick-input-widget input');
    await input.waitFor({ state: 'visible', timeout: 10_000 });
    await input.fill(`>${title}`);
    const row = page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first();
    await row.waitFor({ timeout: 10_000 });
    await page.keyboard.press('Enter');
  };

  await check('extension activates: status bar item shows', async () => {
    const text = await waitFor('a scanmint status bar item', statusText, 30_000);
    return JSON.stringify(text);
  });

  // The daemon prefetches a key on start; if it has not, "Rotate now" makes it mint.
  let firstKeyId;
  await check('status bar shows a valid minted key', async () => {
    let text = await waitFor('a key in the status bar', async () => KEY_TEXT.test(await statusText()), 15_000).catch(() => null);
    if (!text) {
      log(`no key shown yet (${JSON.stringify(await statusText())}); running "scanmint: Rotate now" to mint`);
      await runCommand('scanmint: Rotate now');
      await waitFor('a key in the status bar', async () => KEY_TEXT.test(await statusText()), 30_000);
    }
    text = await statusText();
    firstKeyId = Number(KEY_TEXT.exec(text)[1]);
    if (process.env.SCANMINT_ADMIN_URL) {
      const keys = await (await fetch(`${process.env.SCANMINT_ADMIN_URL}/keys`)).text();
      if (!new RegExp(`\\b${firstKeyId}\\b`).test(keys)) throw new Error(`key #${firstKeyId} is not in the emulator's ${process.env.SCANMINT_ADMIN_URL}/keys`);
    }
    return JSON.stringify(text);
  });

  let before;
  await check('`scanmint status --json` agrees with the status bar', async () => {
    before = cliStatus();
    if (before?.key?.keyId !== firstKeyId) throw new Error(`CLI shows ${JSON.stringify(before?.key)}; status bar #${firstKeyId}`);
    return `generation ${before.key.generation}, ${before.key.fingerprint}`;
  });

  await check('tooltip shows fingerprint, role, storage, generation (no secret)', async () => {
    await statusItem.hover();
    const hover = page.locator('.workbench-hover, .monaco-hover').filter({ hasText: 'Fingerprint' }).first();
    await hover.waitFor({ timeout: 10_000 });
    const text = await hover.innerText();
    for (const want of ['Fingerprint', 'Role', 'Storage', 'generation']) {
      if (!text.includes(want)) throw new Error(`tooltip lacks "${want}": ${JSON.stringify(text)}`);
    }
    if (before?.key?.fingerprint && !text.includes(before.key.fingerprint)) throw new Error(`tooltip lacks ${before.key.fingerprint}`);
    if (process.env.SCANMINT_PRIMARY_KEY && text.includes(process.env.SCANMINT_PRIMARY_KEY)) throw new Error('tooltip shows the Primary key');
    await page.mouse.move(10, 10);
    return text.split('\n').find((l) => l.includes('generation'))?.trim();
  });

  await check('"scanmint: Rotate now" from the palette changes the key and generation', async () => {
    await runCommand('scanmint: Rotate now');
    const text = await waitFor(
      'a new key in the status bar',
      async () => {
        const t = await statusText();
        const m = KEY_TEXT.exec(t);
        return m && Number(m[1]) !== firstKeyId ? t : null;
      },
      30_000,
    );
    const after = cliStatus();
    if (!(after?.key?.generation > (before?.key?.generation ?? Infinity))) {
      throw new Error(`generation did not grow: ${before?.key?.generation} → ${after?.key?.generation}`);
    }
    if (`#${after.key.keyId}` !== `#${KEY_TEXT.exec(text)[1]}`) throw new Error(`CLI key #${after.key.keyId}, status bar ${text}`);
    return `${JSON.stringify(text)}, generation ${before.key.generation} → ${after.key.generation}`;
  });

  await check('Problems view shows the literal key in cortex.env', async () => {
    await page.keyboard.press('F1');
    const input = page.locator('.quick-input-widget input');
    await input.waitFor({ state: 'visible', timeout: 10_000 });
    await input.fill('cortex.env');
    await page.locator('.quick-input-list .monaco-list-row', { hasText: 'cortex.env' }).first().waitFor({ timeout: 10_000 });
    await page.keyboard.press('Enter');
    await page.locator('.tab', { hasText: 'cortex.env' }).first().waitFor({ timeout: 10_000 });
    await runCommand('Problems: Focus on Problems View');
    const row = page.locator('.markers-panel .monaco-list-row', { hasText: 'scanmint' }).first();
    await row.waitFor({ timeout: 20_000 });
    const text = (await row.innerText()).replace(/\s+/g, ' ').trim();
    if (text.includes(LITERAL_KEY)) throw new Error('the diagnostic repeats the literal key');
    return JSON.stringify(text);
  });

  await page.screenshot({ path: join(artifacts, 'workbench.png') });
  log(`screenshot: ${join(artifacts, 'workbench.png')}`);

  // ---- log-in through the palette: input boxes, a password box, a quick pick
  await check('"scanmint: Log in" asks for URL, key id, key (password box), level and logs in', async () => {
    if (!process.env.SCANMINT_PRIMARY_KEY_ID || !process.env.SCANMINT_PRIMARY_KEY) throw new Error('no emulator key in the environment');
    await runCommand('scanmint: Log in');
    const input = page.locator('.quick-input-widget input.input');
    const step = async (value, wantPassword) => {
      await input.waitFor({ state: 'visible', timeout: 10_000 });
      const type = await input.getAttribute('type');
      if (wantPassword !== (type === 'password')) throw new Error(`input type ${type} for ${wantPassword ? 'the key' : 'a non-secret field'}`);
      await input.fill(value);
      await page.keyboard.press('Enter');
      await sleep(300);
    };
    await step(process.env.SCANMINT_BASE_URL, false);
    await step(String(process.env.SCANMINT_PRIMARY_KEY_ID), false);
    await step(process.env.SCANMINT_PRIMARY_KEY, true);
    const level = /advanced/i.test(process.env.SCANMINT_SECURITY_LEVEL ?? '') ? 'Advanced' : 'Standard';
    await page.locator('.quick-input-list .monaco-list-row', { hasText: level }).first().click({ timeout: 10_000 });
    const toast = page.locator('.notification-toast', { hasText: /scanmint: (?!logging)/ }).first();
    await toast.waitFor({ timeout: 20_000 });
    const text = (await toast.innerText()).replace(/\s+/g, ' ').trim();
    if (/log-in failed/i.test(text)) throw new Error(text);
    if (text.includes(process.env.SCANMINT_PRIMARY_KEY)) throw new Error('the notification shows the key');
    await page.keyboard.press('Escape');
    return JSON.stringify(text.slice(0, 120));
  });

  // ---- scanmint.terminalEnv: new terminals get the current key, nothing else does
  await check('scanmint.terminalEnv puts CORTEX_API_* into a new terminal', async () => {
    const settingsPath = join(userDir, 'User', 'settings.json');
    const s = JSON.parse(readFileSync(settingsPath, 'utf8'));
    writeFileSync(settingsPath, JSON.stringify({ ...s, 'scanmint.terminalEnv': true }, null, 2));
    // The extension restarts its session with exposeSecretToEditor and logs when the env is set.
    const logFile = () => {
      const found = [];
      const walk = (d) => {
        for (const e of readdirSync(d, { withFileTypes: true })) {
          if (e.isDirectory()) walk(join(d, e.name));
          else if (/-scanmint\.log$/.test(e.name)) found.push(join(d, e.name));
        }
      };
      walk(join(userDir, 'logs'));
      return found.map((f) => readFileSync(f, 'utf8')).join('\n');
    };
    const line = await waitFor('"Terminal environment set" in the scanmint output', () => /Terminal environment set for key #\d+/.exec(logFile())?.[0], 20_000);
    const out = join(ws, 'terminal-env.txt');
    await runCommand('Terminal: Create New Terminal');
    await page.locator('.terminal-wrapper.active .xterm, .xterm').first().waitFor({ timeout: 15_000 });
    await sleep(1500); // the shell's prompt
    await page.keyboard.type(`printf '%s|%s|%s\\n' "$CORTEX_API_KEY_ID" "\${#CORTEX_API_KEY}" "$CORTEX_API_BASE_URL" > '${out}'`);
    await page.keyboard.press('Enter');
    const got = await waitFor('the terminal to write its environment', () => (existsSync(out) ? readFileSync(out, 'utf8').trim() : ''), 15_000);
    const [id, len, url] = got.split('|');
    const st = cliStatus();
    if (Number(id) !== st?.key?.keyId) throw new Error(`terminal has CORTEX_API_KEY_ID=${id}; daemon key #${st?.key?.keyId}`);
    if (!(Number(len) > 0)) throw new Error('terminal has no CORTEX_API_KEY');
    if (!url) throw new Error('terminal has no CORTEX_API_BASE_URL');
    const settingsOut = readFileSync(settingsPath, 'utf8');
    if (process.env.SCANMINT_PRIMARY_KEY && logFile().includes(process.env.SCANMINT_PRIMARY_KEY)) throw new Error('the output channel shows the Primary key');
    return `${line}; terminal: key #${id}, ${len}-character secret, ${url}${settingsOut.includes('CORTEX_API_KEY"') ? ' (!)' : ''}`;
  });

  if (results.some((r) => !r.ok)) {
    console.log(`status bar at the end: ${JSON.stringify(await statusText())}`);
    dumpLogs(userDir);
    console.log(`----- code-server.log (last 30 lines)\n${readFileSync(csLog, 'utf8').split('\n').slice(-30).join('\n')}`);
  }
}

process.on('SIGINT', () => cleanup().then(() => process.exit(130)));
process.on('SIGTERM', () => cleanup().then(() => process.exit(143)));

try {
  await main();
} catch (err) {
  results.push({ name: 'setup', ok: false });
  console.log(`FAIL - ${err?.stack ?? err}`);
} finally {
  await cleanup();
  finish();
}
