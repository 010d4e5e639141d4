// The scanmint VS Code extension in a real VS Code (code-server 4.100.3 = VS Code 1.100.3),
// driven through headless Debian Chromium with playwright-core, against the real `scanmint` and
// `scanmint emulator`. Run it through tests/vscode/run.sh (isolated HOME/XDG, a running emulator,
// a config file pointing at it, its Primary key in the environment; see tests/editors-node.sh).
//
// Scenarios (SCANMINT_E2E=main,login,missing,bundled picks some; default all):
//   main    : a user whose daemon has a Primary key (from the environment): the prefetched key in
//             the status bar (checked at the tenant), tooltip, only scanned files reach the daemon,
//             Problems view, the quick fix through Ctrl+. , Rotate, Doctor, Revoke (modal),
//             Restart, Log in's input boxes, terminalEnv with the secret kept out of the trace.
//   login   : a second user with no Primary key: "log in" in the status bar, the daemon's Log in
//             notification, a key afterwards, then Log out (modal) revokes it.
//   missing : no binary anywhere: the message with "Open settings" and "Show install instructions".
//   bundled : the platform VSIX from editors/vscode/package-vsix.sh, no scanmint on PATH, no
//             scanmint.path, workspace trust on and the folder not trusted (Restricted Mode).
// Prints "N passed, M failed" last; exits non-zero on any failure. Screenshots: artifacts/.
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  activeMinted, artifacts, bin, check, cleanup, cliStatus, codeServer, dumpLogs, elapsed, env, extDir,
  failures, isExecutable, KEY_TEXT, log, lspPids, makeProfile, makeWorkspace, openWorkbench, otherUser, exesOf, outputLogs,
  results, run, sleep, startCodeServer, tenantKey, tmp, waitFor, withoutScanmintOnPath,
} from './lib.mjs';

// A literal key a scanner would read: 128 characters, like a Cortex API key.
const LITERAL_KEY = 'Zk3q'.repeat(32);

/** Runs BODY for a scenario; on a failure, a screenshot and the logs. */
async function scenario(name, body) {
  const before = failures();
  const ctx = {};
  log(`== scenario ${name}`);
  try {
    await body(ctx);
  } catch (err) {
    results.push({ name: `${name}: setup`, ok: false });
    console.log(`FAIL - ${name}: ${err?.stack ?? err}`);
  }
  if (failures() > before) {
    await ctx.wb?.page.screenshot({ path: join(artifacts, `failure-${name}.png`) }).catch(() => {});
    if (ctx.wb) console.log(`${name}: status bar at the end: ${JSON.stringify(await ctx.wb.statusText().catch(() => '?'))}`);
    if (ctx.profile && ctx.csLog) dumpLogs(ctx.profile, ctx.csLog);
  }
  await cleanup(); // one code-server and browser at a time on a 2-core machine
}

// ------------------------------------------------------------------------------------- main

async function main(vsix, ctx) {
  // Verbose trace, so that the test sees what reaches the daemon and that no secret is traced.
  const profile = (ctx.profile = makeProfile('main', vsix, { machine: { 'scanmint.path': bin, 'scanmint.trace.server': 'verbose' } }));
  const ws = makeWorkspace('main', LITERAL_KEY);
  const { port, csLog } = await startCodeServer(profile, ws, env);
  ctx.csLog = csLog;
  const wb = (ctx.wb = await openWorkbench('main', port, ws));
  const { page, statusItem, statusText, runCommand } = wb;

  let first;
  await check('the status bar shows the prefetched key, active and read-only at the tenant', async () => {
    first = await wb.waitForKey(45_000);
    const k = await tenantKey(first.keyId);
    return `${JSON.stringify(first.text)}; tenant: ${k.roles.join(', ')}, ${k.security_level}`;
  });

  let before;
  await check('`scanmint status --json` agrees with the status bar', async () => {
    before = cliStatus();
    if (before?.state !== 'ready' || before?.key?.keyId !== first?.keyId) throw new Error(`CLI shows ${before?.state} ${JSON.stringify(before?.key)}; status bar #${first?.keyId}`);
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

  await check('only the files a scanner reads reach the daemon (README.md is not sent, cortex.env is)', async () => {
    await wb.openFile('README.md');
    await page.keyboard.type('edited ');
    await wb.openFile('cortex.env');
    const wsUri = pathToFileURL(ws).href;
    // The verbose trace, one entry per message; README.md was opened and edited first, so its
    // didOpen/didChange would come before cortex.env's didOpen.
    const sent = () => outputLogs(profile.userDir).split('[Trace - ').filter((e) => /Sending notification 'textDocument\/did(Open|Change)'/.test(e));
    await waitFor('didOpen of cortex.env in the trace', () => sent().some((e) => e.includes(`${wsUri}/cortex.env`)), 15_000);
    const readme = sent().filter((e) => e.includes(`${wsUri}/README.md`));
    if (readme.length) throw new Error(`README.md was sent to the daemon: ${readme[0].slice(0, 200)}`);
    return `${sent().length} didOpen/didChange sent, all for cortex.env`;
  });

  await check('Problems view shows the literal key in cortex.env', async () => {
    await runCommand('Problems: Focus on Problems View');
    const row = page.locator('.markers-panel .monaco-list-row', { hasText: 'literal-key' }).first();
    await row.waitFor({ timeout: 20_000 });
    const text = (await row.innerText()).replace(/\s+/g, ' ').trim();
    if (text.includes(LITERAL_KEY)) throw new Error('the diagnostic repeats the literal key');
    if (!/\[Ln 3,/.test(text)) throw new Error(`not on line 3: ${text}`);
    return JSON.stringify(text.length > 110 ? `${text.slice(0, 60)}…${text.slice(-45)}` : text);
  });

  await page.screenshot({ path: join(artifacts, 'workbench.png') });

  await check('the quick fix, applied with Ctrl+. in the editor, removes the key and the warning', async () => {
    await wb.openFile('cortex.env');
    await page.locator('.editor-instance .monaco-editor .view-lines').first().click();
    await page.keyboard.press('F8'); // "Go to next problem": the cursor lands on the finding
    await sleep(500);
    await page.keyboard.press('Escape');
    await page.keyboard.press('Control+Period');
    const action = page.locator('.action-widget .monaco-list-row', { hasText: 'Remove the literal key' }).first();
    await action.waitFor({ timeout: 10_000 });
    const title = (await action.innerText()).trim();
    await page.keyboard.press('Enter'); // the preferred fix is focused, as a person sees it
    await page.keyboard.press('Control+S');
    const file = join(ws, 'cortex.env');
    await waitFor('cortex.env saved without the key', () => !readFileSync(file, 'utf8').includes(LITERAL_KEY), 10_000);
    const text = readFileSync(file, 'utf8');
    if (!text.includes('CORTEX_API_KEY_ID=17')) throw new Error(`the fix took more than the key: ${JSON.stringify(text)}`);
    await runCommand('Problems: Focus on Problems View');
    await waitFor('the warning to go', async () => (await page.locator('.markers-panel .monaco-list-row', { hasText: 'literal-key' }).count()) === 0, 15_000);
    return `${JSON.stringify(title)}; cortex.env now ${JSON.stringify(text)}`;
  });

  let rotated;
  await check('"scanmint: Rotate now" from the palette changes the key and generation', async () => {
    const current = KEY_TEXT.exec(await statusText());
    if (!current) throw new Error(`no key shown before rotating: ${JSON.stringify(await statusText())}`);
    await runCommand('scanmint: Rotate now');
    rotated = await wb.waitForKey(30_000, Number(current[1]));
    const after = cliStatus();
    if (!(after?.key?.generation > before?.key?.generation)) throw new Error(`generation did not grow: ${before?.key?.generation} → ${after?.key?.generation}`);
    if (after.key.keyId !== rotated.keyId) throw new Error(`CLI key #${after.key.keyId}, status bar ${rotated.text}`);
    await tenantKey(after.key.keyId);
    return `${JSON.stringify(rotated.text)}, generation ${before.key.generation} → ${after.key.generation}`;
  });

  await check('"scanmint: Doctor" writes its report to the "scanmint: doctor" output', async () => {
    await runCommand('scanmint: Doctor');
    const report = await waitFor('the doctor report', () => {
      const t = outputLogs(profile.userDir, /doctor\.log$/);
      return /(OK|PROBLEMS FOUND): \d+ passed, \d+ warnings, \d+ failed/.test(t) ? t : null;
    }, 30_000);
    const checks = report.split('\n').filter((l) => /^[✓!✗] /.test(l));
    if (checks.length < 3) throw new Error(`only ${checks.length} checks: ${report}`);
    if (!report.includes('scanmint doctor —')) throw new Error(report);
    // The Output view shows it (the editor renders spaces as no-break spaces: \s).
    await page.locator('.part.panel .monaco-editor .view-lines', { hasText: /\d+\spassed,\s\d+\swarnings/ }).first().waitFor({ timeout: 10_000 });
    await page.screenshot({ path: join(artifacts, 'doctor.png') });
    return `${checks.length} checks; ${report.trim().split('\n').pop()}`;
  });

  await check('"scanmint: Revoke keys" says what it revokes, asks, and Cancel keeps the key', async () => {
    const shown = KEY_TEXT.exec(await statusText());
    if (!shown) throw new Error(`no key shown: ${JSON.stringify(await statusText())}`);
    const keyId = Number(shown[1]);
    await runCommand('scanmint: Revoke keys');
    await page.locator('.quick-input-list .monaco-list-row', { hasText: 'Revoke the active and retiring keys' }).first().waitFor({ timeout: 10_000 });
    const items = await page.locator('.quick-input-list .monaco-list-row').allInnerTexts();
    const listing = items.join(' | ').replace(/\s+/g, ' ');
    if (!/active and retiring/i.test(listing) || !/every key of this machine/i.test(listing)) throw new Error(`choices: ${listing}`);
    await wb.pick('Revoke the active and retiring keys');
    const asked = await wb.answerDialog('Cancel');
    if (!asked.includes(`#${keyId}`)) throw new Error(`the confirmation does not name key #${keyId}: ${asked}`);
    await sleep(1000);
    await tenantKey(keyId); // still active
    if (!(await statusText()).startsWith(`scanmint: #${keyId} `)) throw new Error(`status changed after Cancel: ${await statusText()}`);
    return JSON.stringify(asked.slice(0, 140));
  });

  await check('Revoke, confirmed, revokes the active key at the tenant', async () => {
    const keyId = Number(KEY_TEXT.exec(await statusText())?.[1]);
    await runCommand('scanmint: Revoke keys');
    await wb.pick('Revoke the active and retiring keys');
    await wb.answerDialog('Revoke');
    await waitFor(`key #${keyId} revoked at the tenant`, async () => !(await activeMinted()).includes(keyId), 20_000);
    await waitFor('the status bar to drop the revoked key', async () => !(await statusText()).startsWith(`scanmint: #${keyId} `), 20_000);
    return `#${keyId} revoked; status bar ${JSON.stringify(await statusText())}`;
  });

  await check('"scanmint: Restart language server" starts a new `scanmint lsp` and shows a key again', async () => {
    const old = lspPids();
    if (old.length !== 1) throw new Error(`expected one \`scanmint lsp\`, found ${old.length}`);
    await runCommand('scanmint: Restart language server');
    const now = await waitFor('a new scanmint lsp process', () => {
      const p = lspPids();
      return p.length === 1 && p[0] !== old[0] ? p : null;
    }, 30_000);
    const { text } = await wb.waitForKey(30_000);
    return `pid ${old[0]} → ${now[0]}; ${JSON.stringify(text)}`;
  });

  await check('"scanmint: Log in" refuses a non-loopback http:// URL, then asks for key id, key (password box), level', async () => {
    await runCommand('scanmint: Log in');
    // Before any key is asked for: the URL box says why and does not move on.
    const input = page.locator('.quick-input-widget input.input');
    await input.waitFor({ state: 'visible', timeout: 10_000 });
    await input.fill('http://api-acme.xdr.us.paloaltonetworks.com');
    const why = page.locator('.quick-input-widget .quick-input-message', { hasText: 'https://' }).first();
    await why.waitFor({ timeout: 10_000 });
    const refusal = (await why.innerText()).trim();
    await page.keyboard.press('Enter');
    await sleep(500);
    if ((await input.getAttribute('type')) === 'password' || (await input.inputValue()) !== 'http://api-acme.xdr.us.paloaltonetworks.com') throw new Error('the http:// URL was accepted');
    return `${JSON.stringify(refusal.slice(0, 80))}; then ${JSON.stringify((await wb.answerLogin()).slice(0, 80))}`;
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
    const logs = outputLogs(profile.userDir);
    if (logs.includes(secret)) throw new Error('the scanmint output shows the minted secret');
    if (logs.includes(env.SCANMINT_PRIMARY_KEY)) throw new Error('the scanmint output shows the Primary key');
    if (logs.includes(LITERAL_KEY)) throw new Error('the scanmint output shows the literal key of cortex.env');
    if (!logs.includes('<redacted>')) throw new Error('no redacted secret in the verbose trace: was the credentials reply traced?');
    for (const f of ['User', 'Machine']) {
      if (readFileSync(join(profile.userDir, f, 'settings.json'), 'utf8').includes(secret)) throw new Error(`the secret is in ${f}/settings.json`);
    }
    return `${line}; terminal: key #${id}, ${secret.length}-character secret; not in the verbose trace or settings`;
  });
}

// ------------------------------------------------------------------------------------ login

async function login(vsix, ctx) {
  // A second user with no Primary key anywhere.
  const userEnv = otherUser('login', { primary: false });

  const profile = (ctx.profile = makeProfile('login', vsix, { machine: { 'scanmint.path': bin } }));
  const ws = makeWorkspace('login', LITERAL_KEY);
  const { port, csLog } = await startCodeServer(profile, ws, userEnv);
  ctx.csLog = csLog;
  const wb = (ctx.wb = await openWorkbench('login', port, ws));
  const { page } = wb;

  await check('without a Primary key the status bar says exactly "scanmint: log in"', async () => {
    await wb.waitForStatus('scanmint: log in', 45_000);
  });

  let keyId;
  await check('the daemon\'s "Log in" notification runs the log-in command, then a key is minted', async () => {
    const toast = page.locator('.notification-toast', { has: page.locator('.monaco-button', { hasText: 'Log in' }) }).first();
    await toast.waitFor({ timeout: 20_000 });
    const message = (await toast.locator('.notification-list-item-message').innerText()).trim();
    await toast.locator('.monaco-button', { hasText: 'Log in' }).first().click();
    const result = await wb.answerLogin();
    const shown = await wb.waitForKey(30_000);
    keyId = shown.keyId;
    await tenantKey(keyId);
    const st = cliStatus(userEnv);
    if (st?.key?.keyId !== keyId) throw new Error(`CLI (second user) shows ${JSON.stringify(st?.key)}; status bar #${keyId}`);
    return `asked: ${JSON.stringify(message.slice(0, 80))}; ${JSON.stringify(result.slice(0, 60))}; then ${JSON.stringify(shown.text)}`;
  });
  await page.screenshot({ path: join(artifacts, 'login.png') });

  await check('"scanmint: Log out" asks first; Cancel changes nothing', async () => {
    await wb.runCommand('scanmint: Log out');
    const asked = await wb.answerDialog('Cancel');
    if (!/revoked/i.test(asked) || !/Primary key/i.test(asked)) throw new Error(`the confirmation does not say what happens: ${asked}`);
    await sleep(1000);
    await tenantKey(keyId);
    if (cliStatus(userEnv)?.state === 'needs_login') throw new Error('logged out after Cancel');
    return JSON.stringify(asked.slice(0, 140));
  });

  await check('Log out, confirmed, revokes the key at the tenant and the status bar asks for a log-in', async () => {
    await wb.runCommand('scanmint: Log out');
    await wb.answerDialog('Log out');
    await wb.waitForStatus('scanmint: log in', 30_000);
    await waitFor(`key #${keyId} revoked at the tenant`, async () => !(await activeMinted()).includes(keyId), 20_000);
    const st = cliStatus(userEnv);
    if (st?.state !== 'needs_login' || st.key) throw new Error(`CLI shows ${st?.state} ${JSON.stringify(st?.key)}`);
    return `#${keyId} revoked; CLI ${st.state}`;
  });
}

// ---------------------------------------------------------------------------------- missing

async function missing(vsix, ctx) {
  const profile = (ctx.profile = makeProfile('missing', vsix, { machine: { 'scanmint.path': join(tmp, 'no-such-dir', 'scanmint') } }));
  const ws = makeWorkspace('missing', LITERAL_KEY);
  const { port, csLog } = await startCodeServer(profile, ws, withoutScanmintOnPath(env));
  ctx.csLog = csLog;
  const wb = (ctx.wb = await openWorkbench('missing', port, ws));
  const { page } = wb;
  const toast = page.locator('.notification-toast', { hasText: 'no working scanmint binary' }).first();

  await check('no binary: a message with "Open settings" and "Show install instructions", status "not running"', async () => {
    await toast.waitFor({ timeout: 45_000 });
    const buttons = (await toast.locator('.monaco-button').allInnerTexts()).map((b) => b.trim());
    for (const b of ['Open settings', 'Show install instructions']) if (!buttons.includes(b)) throw new Error(`buttons: ${JSON.stringify(buttons)}`);
    await wb.waitForStatus('scanmint: not running', 10_000);
    const generic = await page.locator('.notification-toast', { hasText: /couldn't create connection|Connection to server/i }).count();
    if (generic) throw new Error("the language client's generic connection error is shown too");
    return JSON.stringify((await toast.locator('.notification-list-item-message').innerText()).trim().slice(0, 120));
  });

  await check('"Open settings" opens the Settings editor on scanmint.path', async () => {
    await toast.locator('.monaco-button', { hasText: 'Open settings' }).click();
    const item = page.locator('.settings-editor .setting-item-contents', { hasText: 'bundled' }).first();
    await item.waitFor({ timeout: 15_000 });
    const text = (await item.innerText()).replace(/\s+/g, ' ');
    if (!/bundled/i.test(text)) throw new Error(`not the scanmint.path setting: ${text.slice(0, 200)}`);
    return JSON.stringify(text.slice(0, 100));
  });

  await check('"Show install instructions" opens the README', async () => {
    await wb.runCommand('scanmint: Restart language server'); // the message again
    await toast.waitFor({ timeout: 30_000 });
    await toast.locator('.monaco-button', { hasText: 'Show install instructions' }).click();
    const tab = page.locator('.tab', { hasText: /README/ }).first();
    await tab.waitFor({ timeout: 15_000 });
    return JSON.stringify((await tab.innerText()).trim());
  });
}

// ---------------------------------------------------------------------------------- bundled

async function bundled(ctx) {
  // Stripped copies keep the package small (the debug binaries are ~170 MB); the launcher's
  // core sits next to it, where package-vsix.sh takes it from.
  mkdirSync(join(tmp, 'vsix-bin'), { recursive: true });
  const binCopy = join(tmp, 'vsix-bin', 'scanmint');
  for (const [from, to] of [[bin, binCopy], [`${bin}-core`, `${binCopy}-core`]]) {
    copyFileSync(from, to);
    try {
      run('strip', [to]);
    } catch (err) {
      log(`strip failed, packaging the binary as is: ${err.message.slice(0, 100)}`);
    }
  }
  const version = JSON.parse(readFileSync(join(extDir, 'package.json'), 'utf8')).version;
  const vsix = join(tmp, `scanmint-${version}-linux-x64.vsix`);
  run(join(extDir, 'package-vsix.sh'), [binCopy, vsix]);
  // A user of its own, so that its daemon is the bundled binary too (not one an earlier scenario
  // started); the Primary key in its environment.
  const userEnv = otherUser('bundled', { primary: true });
  const noPath = withoutScanmintOnPath(userEnv);
  const profile = (ctx.profile = makeProfile('bundled', vsix, { trust: true }));
  const ws = makeWorkspace('bundled', LITERAL_KEY);
  // A hostile workspace: it tries to pick the binary and trace the traffic.
  mkdirSync(join(ws, '.vscode'), { recursive: true });
  writeFileSync(join(ws, '.vscode', 'settings.json'), JSON.stringify({ 'scanmint.path': '/bin/false', 'scanmint.trace.server': 'verbose' }));

  await check('the platform VSIX installs with bin/scanmint and bin/scanmint-core executable', async () => {
    const [dir] = run('sh', ['-c', `ls -d ${profile.extsDir}/scanmint.scanmint-*`]).trim().split('\n');
    const b = join(dir, 'bin', 'scanmint');
    for (const f of [b, `${b}-core`]) {
      if (!isExecutable(f)) throw new Error(`${f} mode ${(statSync(f).mode & 0o777).toString(8)}`);
    }
    return `${(statSync(vsix).size / 1048576).toFixed(1)} MiB; ${b.slice(tmp.length + 1)} ${(statSync(b).mode & 0o777).toString(8)}`;
  });

  const { port, csLog } = await startCodeServer(profile, ws, noPath, { trust: true });
  ctx.csLog = csLog;
  const wb = (ctx.wb = await openWorkbench('bundled', port, ws));
  const { page } = wb;

  await check('in Restricted Mode (folder not trusted) the extension runs', async () => {
    await wb.answerDialog("No, I don't trust the authors");
    await page.locator('.statusbar-item', { hasText: 'Restricted Mode' }).first().waitFor({ timeout: 15_000 });
  });

  await check('with no scanmint on PATH and no scanmint.path, the bundled binary mints a key', async () => {
    const { text, keyId } = await wb.waitForKey(60_000);
    await tenantKey(keyId);
    const logs = outputLogs(profile.userDir);
    const using = /Using (\S+) \(scanmint [^;]*; bundled\)/.exec(logs);
    if (!using || !using[1].startsWith(profile.extsDir)) throw new Error(`not the bundled binary: ${logs.split('\n').filter((l) => l.includes('Using')).join(' / ')}`);
    if (/\/bin\/false/.test(logs)) throw new Error("the workspace's scanmint.path was tried");
    if (/Sending (request|notification)/.test(logs)) throw new Error("the workspace's scanmint.trace.server turned the trace on");
    const procs = exesOf(userEnv.XDG_RUNTIME_DIR).filter((p) => p.args === 'daemon' || p.args === 'lsp');
    const foreign = procs.filter((p) => !p.exe.startsWith(profile.extsDir));
    if (!procs.some((p) => p.args === 'daemon') || foreign.length) throw new Error(`daemon/lsp processes: ${JSON.stringify(procs)}`);
    const st = cliStatus(userEnv);
    if (st?.key?.keyId !== keyId) throw new Error(`CLI shows ${JSON.stringify(st?.key)}; status bar #${keyId}`);
    return `${JSON.stringify(text)}; lsp and daemon run ${using[1].slice(tmp.length + 1)}; the workspace's path and trace ignored`;
  });
}

// --------------------------------------------------------------------------------------- main

process.on('SIGINT', () => cleanup().then(() => process.exit(130)));
process.on('SIGTERM', () => cleanup().then(() => process.exit(143)));

const all = ['main', 'login', 'missing', 'bundled'];
const chosen = (env.SCANMINT_E2E || all.join(',')).split(',').map((s) => s.trim()).filter(Boolean);
try {
  for (const v of ['SCANMINT_BIN', 'SCANMINT_TEST_TMP', 'SCANMINT_BASE_URL', 'SCANMINT_PRIMARY_KEY', 'SCANMINT_PRIMARY_KEY_ID', 'XDG_CONFIG_HOME']) {
    if (!env[v]) throw new Error(`${v} is not set: run tests/vscode/run.sh`);
  }
  for (const c of chosen) if (!all.includes(c)) throw new Error(`SCANMINT_E2E: unknown scenario ${c} (${all.join(', ')})`);
  if (!existsSync(codeServer)) throw new Error('code-server is not installed: run scripts/setup-vscode.sh');
  // Fail, not skip: without the admin URL nothing the tenant holds could be checked.
  if (!env.SCANMINT_ADMIN_URL) throw new Error('SCANMINT_ADMIN_URL is empty: the emulator printed no admin_url');
  mkdirSync(artifacts, { recursive: true });
  let vsix;
  if (chosen.some((c) => c !== 'bundled')) {
    log('packaging the extension');
    run('npm', ['run', '--silent', 'package'], { cwd: extDir });
    vsix = join(extDir, 'scanmint.vsix');
  }
  if (chosen.includes('main')) await scenario('main', (ctx) => main(vsix, ctx));
  if (chosen.includes('login')) await scenario('login', (ctx) => login(vsix, ctx));
  if (chosen.includes('missing')) await scenario('missing', (ctx) => missing(vsix, ctx));
  if (chosen.includes('bundled')) await scenario('bundled', (ctx) => bundled(ctx));
} catch (err) {
  results.push({ name: 'setup', ok: false });
  console.log(`FAIL - ${err?.stack ?? err}`);
} finally {
  await cleanup();
  const passed = results.filter((r) => r.ok).length;
  const failed = results.length - passed;
  console.log(`vscode e2e (${chosen.join(', ')}) took ${elapsed()}`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed || !results.length ? 1 : 0;
}
