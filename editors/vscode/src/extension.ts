// scanmint for VS Code: launches `scanmint lsp`, shows the key's status, offers the commands.
import * as vscode from 'vscode';
import {
  ExecuteCommandRequest,
  LanguageClient,
  type LanguageClientOptions,
  MessageType,
  RevealOutputChannelOn,
  type ServerOptions,
  ShowMessageRequest,
  type ShowMessageRequestParams,
  State as ClientState,
} from 'vscode-languageclient/node';
import {
  type Credentials,
  type DoctorResult,
  EnvNames,
  isStatusReport,
  type LoginResult,
  Methods,
  type RevokeResult,
  type RotateResult,
  ServerCommands,
  type StatusReport,
} from './protocol';
import { binaryCandidates, type Found, resolveBinary } from './binary';
import { redact } from './redact';
import { documentSelector } from './selector';
import {
  errorMessage,
  formatDoctor,
  initializationOptions,
  loginArgs,
  profileArgs,
  RESTART_KEYS,
  resolveSettings,
  type Settings,
  validateBaseUrl,
  validateKeyId,
  validateSecret,
} from './settings';
import { md, statusLines, statusView } from './status';

/** What `activate` returns: other extensions and tests read the status through it. */
export interface ScanmintApi {
  getStatus(): StatusReport | undefined;
  onDidChangeStatus: vscode.Event<StatusReport>;
}

const LOGIN_ACTION = 'Log in';
const OPEN_SETTINGS = 'Open settings';
const INSTALL_HELP = 'Show install instructions';

let client: LanguageClient | undefined;
let settings: Settings;
let status: StatusReport | undefined;
let statusItem: vscode.StatusBarItem;
let log: vscode.OutputChannel;
let doctorChannel: vscode.OutputChannel | undefined;
let envCollection: vscode.GlobalEnvironmentVariableCollection;
let appliedGeneration: number | undefined;
let envRefresh: Promise<void> | undefined;
let startFailure: string | undefined;
let extensionPath: string;
let binary: Found | undefined;
const statusEmitter = new vscode.EventEmitter<StatusReport>();

function readSettings(): Settings {
  const cfg = vscode.workspace.getConfiguration('scanmint');
  return resolveSettings((key) => cfg.get(key));
}

/** An output channel that never shows a secret, even at `scanmint.trace.server: verbose`. */
function redactingChannel(inner: vscode.OutputChannel): vscode.OutputChannel {
  return {
    get name() {
      return inner.name;
    },
    append: (v: string) => inner.append(redact(v)),
    appendLine: (v: string) => inner.appendLine(redact(v)),
    replace: (v: string) => inner.replace(redact(v)),
    clear: () => inner.clear(),
    show: (a?: unknown, b?: boolean) =>
      typeof a === 'boolean' || a === undefined ? inner.show(a) : inner.show(a as vscode.ViewColumn, b),
    hide: () => inner.hide(),
    dispose: () => inner.dispose(),
  };
}

// ---------------------------------------------------------------------------------------- status

function render(): void {
  let view = statusView(status);
  if (startFailure) {
    view = {
      text: '$(error) scanmint: not running',
      tooltip: `**scanmint** could not start: ${md(startFailure)}  \nSet \`scanmint.path\`, install the VSIX that bundles scanmint, or put \`scanmint\` on PATH.  \n_Click for actions_`,
      severity: 'error',
    };
  } else if (client && client.state === ClientState.Stopped) {
    // The library gave up restarting it (or it was stopped): the last status is stale.
    view = {
      text: '$(error) scanmint: not running',
      tooltip: '**scanmint**: the language server stopped. See the scanmint output.  \n_Click to restart or show the log_',
      severity: 'error',
    };
  }
  statusItem.text = view.text;
  const tip = new vscode.MarkdownString(view.tooltip, true);
  statusItem.tooltip = tip;
  statusItem.backgroundColor = view.severity
    ? new vscode.ThemeColor(`statusBarItem.${view.severity}Background`)
    : undefined;
  statusItem.show();
}

function setStatus(report: unknown): void {
  if (!isStatusReport(report)) return;
  // Generations only grow: ignore a late reply that would show an older key.
  if (status?.key && report.key && report.key.generation < status.key.generation && report.profile === status.profile) {
    return;
  }
  status = report;
  render();
  statusEmitter.fire(report);
  void syncTerminalEnv();
}

function statusParams(): Record<string, unknown> {
  return settings.profile ? { profile: settings.profile } : {};
}

async function refreshStatus(): Promise<StatusReport | undefined> {
  if (!client || client.state !== ClientState.Running) return status;
  try {
    setStatus(await client.sendRequest(Methods.status, statusParams()));
  } catch (err) {
    log.appendLine(`scanmint/status failed: ${errorMessage(err)}`);
  }
  return status;
}

// ------------------------------------------------------------------------- terminal environment

function clearTerminalEnv(): void {
  envCollection.clear();
  appliedGeneration = undefined;
}

/** Keep CORTEX_API_* in new terminals in step with the daemon's current key generation. */
async function syncTerminalEnv(): Promise<void> {
  if (!settings.terminalEnv || !status) {
    if (appliedGeneration !== undefined) clearTerminalEnv();
    return;
  }
  if (status.state === 'needs_login' || (status.state === 'error' && !status.key)) {
    clearTerminalEnv();
    return;
  }
  if (status.state !== 'ready' && status.state !== 'degraded') return; // a mint is in flight
  if (status.key && status.key.generation === appliedGeneration) return;
  if (envRefresh) return envRefresh; // the next status notification re-checks
  envRefresh = (async () => {
    try {
      if (!client || client.state !== ClientState.Running) return;
      const params = { ...statusParams(), minValidSecs: 60 };
      const creds = await client.sendRequest<Credentials>(Methods.credentials, params);
      const env = creds.env;
      if (!env || !env.CORTEX_API_KEY) {
        log.appendLine('scanmint/credentials returned no secret: is exposeSecretToEditor honoured by the daemon?');
        return;
      }
      envCollection.persistent = false;
      envCollection.description = `scanmint: key #${creds.keyId} (generation ${creds.generation})`;
      for (const name of EnvNames) {
        if (env[name] !== undefined) envCollection.replace(name, env[name]);
      }
      appliedGeneration = creds.generation;
      log.appendLine(`Terminal environment set for key #${creds.keyId}, generation ${creds.generation}`);
    } catch (err) {
      log.appendLine(`scanmint/credentials failed: ${errorMessage(err)}`);
    } finally {
      envRefresh = undefined;
    }
  })();
  return envRefresh;
}

// -------------------------------------------------------------------------------------- client

/** The Settings editor on scanmint.path: a machine setting, so in a remote window (SSH, containers,
 *  code-server) on the Remote tab, where the User tab does not show it. */
async function openPathSetting(): Promise<void> {
  if (vscode.env.remoteName) {
    try {
      await vscode.commands.executeCommand('workbench.action.openRemoteSettings', { query: 'scanmint.path' });
      return;
    } catch (err) {
      log.appendLine(`Opening the remote settings: ${errorMessage(err)}`);
    }
  }
  await vscode.commands.executeCommand('workbench.action.openSettings', 'scanmint.path');
}

/** Says what to do when no binary works; the buttons open the setting or the README. */
async function explainMissingBinary(): Promise<void> {
  const pick = await vscode.window.showErrorMessage(
    'scanmint: no working scanmint binary. Set scanmint.path, install the VS Code extension package that bundles it, or put scanmint on PATH.',
    OPEN_SETTINGS,
    INSTALL_HELP,
  );
  if (pick === OPEN_SETTINGS) {
    await openPathSetting();
  } else if (pick === INSTALL_HELP) {
    const readme = vscode.Uri.joinPath(vscode.Uri.file(extensionPath), 'README.md');
    await vscode.commands.executeCommand('markdown.showPreview', readme).then(undefined, () => vscode.window.showTextDocument(readme));
  }
}

/** The binary to run, or undefined after saying why none works (see binary.ts for the order). */
async function findBinary(): Promise<Found | undefined> {
  const r = await resolveBinary(binaryCandidates({ setting: settings.path, extensionPath, pathEnv: process.env.PATH }));
  for (const f of r.failures) log.appendLine(`Not using the ${f.source === 'PATH' ? 'PATH' : f.source} binary: ${f.reason}`);
  if (!r.found) {
    startFailure = `no working scanmint binary (${r.failures.map((f) => f.reason).join('; ')})`;
    render();
    void explainMissingBinary();
    return undefined;
  }
  log.appendLine(`Using ${r.found.command} (${r.found.version}; ${r.found.source})`);
  const bad = r.failures.find((f) => f.source === 'setting');
  if (bad) void vscode.window.showWarningMessage(`scanmint: scanmint.path does not work (${bad.reason}); using ${r.found.command}.`, OPEN_SETTINGS).then((a) => {
    if (a) void openPathSetting();
  });
  return r.found;
}

async function startClient(): Promise<void> {
  settings = readSettings();
  startFailure = undefined;
  binary = await findBinary();
  if (!binary) return;
  const serverOptions: ServerOptions = {
    command: binary.command,
    args: settings.args,
    options: { env: process.env },
  };
  const channel = redactingChannel(log);
  const clientOptions: LanguageClientOptions = {
    // Only the files a scanner reads: the daemon has no business with the rest (status and
    // commands do not depend on an open document).
    documentSelector: documentSelector(),
    initializationOptions: initializationOptions(settings),
    outputChannel: channel,
    traceOutputChannel: channel,
    revealOutputChannelOn: RevealOutputChannelOn.Never,
  };
  const c = new LanguageClient('scanmint', 'scanmint', serverOptions, clientOptions);
  c.onNotification(Methods.didChangeStatus, (report: unknown) => setStatus(report));
  // Replaces the library's default handler: the same message, and "Log in" runs our command.
  c.onRequest(ShowMessageRequest.type, async (params: ShowMessageRequestParams) => {
    const show =
      params.type === MessageType.Error
        ? vscode.window.showErrorMessage
        : params.type === MessageType.Warning
          ? vscode.window.showWarningMessage
          : vscode.window.showInformationMessage;
    const picked = await show(params.message, ...(params.actions ?? []));
    if (picked?.title === LOGIN_ACTION) void vscode.commands.executeCommand('scanmintClient.login');
    return picked ?? null;
  });
  c.onDidChangeState((e) => {
    if (e.newState === ClientState.Stopped) render();
    // Also after the library restarted a crashed server: the daemon may hold a newer key.
    if (e.newState === ClientState.Running && e.oldState !== ClientState.Running) void refreshStatus();
  });
  client = c;
  try {
    await c.start();
  } catch (err) {
    startFailure = errorMessage(err);
    log.appendLine(`Could not start \`${binary.command} ${settings.args.join(' ')}\`: ${startFailure}`);
    render();
    return;
  }
  await refreshStatus();
}

async function stopClient(): Promise<void> {
  const c = client;
  client = undefined;
  if (c && c.needsStop()) {
    try {
      await c.stop(5000);
    } catch (err) {
      log.appendLine(`Stopping the language server: ${errorMessage(err)}`);
    }
  }
}

async function restartClient(): Promise<void> {
  await stopClient();
  status = undefined;
  clearTerminalEnv();
  render();
  await startClient();
}

function runningClient(): LanguageClient | undefined {
  if (client && client.state === ClientState.Running) return client;
  void vscode.window
    .showErrorMessage('scanmint is not running. See the scanmint output for why.', 'Show log', 'Restart')
    .then((a) => {
      if (a === 'Show log') log.show();
      if (a === 'Restart') void restartClient();
    });
  return undefined;
}

async function execute<T>(command: string, args: unknown[]): Promise<T> {
  const c = runningClient();
  if (!c) throw new Error('scanmint is not running');
  return (await c.sendRequest(ExecuteCommandRequest.type, { command, arguments: args })) as T;
}

/** Run a server command under a progress notification; errors become error messages. */
async function withProgress<T>(title: string, run: () => Promise<T>): Promise<T | undefined> {
  if (!runningClient()) return undefined;
  try {
    return await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `scanmint: ${title}` },
      run,
    );
  } catch (err) {
    void vscode.window.showErrorMessage(`scanmint: ${errorMessage(err)}`);
    return undefined;
  }
}

// ------------------------------------------------------------------------------------ commands

async function login(): Promise<void> {
  if (!runningClient()) return;
  const current = await refreshStatus();
  const title = 'scanmint: log in';
  const baseUrl = await vscode.window.showInputBox({
    title,
    prompt: 'Tenant API URL (Settings → Configurations → API Keys → Copy API URL)',
    value: current?.baseUrl ?? '',
    placeHolder: 'https://api-acme.xdr.us.paloaltonetworks.com',
    ignoreFocusOut: true,
    validateInput: validateBaseUrl,
  });
  if (baseUrl === undefined) return;
  const keyId = await vscode.window.showInputBox({
    title,
    prompt: 'ID of the Primary API key (the daemon mints short-lived keys with it)',
    placeHolder: '42',
    ignoreFocusOut: true,
    validateInput: validateKeyId,
  });
  if (keyId === undefined) return;
  const key = await vscode.window.showInputBox({
    title,
    prompt: 'The Primary API key. It goes to the scanmint daemon and its keychain, not to VS Code.',
    password: true,
    ignoreFocusOut: true,
    validateInput: validateSecret,
  });
  if (key === undefined) return;
  const level = await vscode.window.showQuickPick(
    [
      { label: 'Standard', description: 'the key is sent as is', value: 'standard' as const },
      { label: 'Advanced', description: 'requests are signed with a nonce and timestamp', value: 'advanced' as const },
    ],
    { title, placeHolder: 'Security level of the Primary key', ignoreFocusOut: true },
  );
  if (!level) return;
  const args = loginArgs({ baseUrl, keyId, key, securityLevel: level.value }, settings.profile ?? current?.profile);
  try {
    const result = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: 'scanmint: logging in…' },
      () => execute<LoginResult>(ServerCommands.login, [args]),
    );
    void vscode.window.showInformationMessage(`scanmint: ${result.message}`);
  } catch (err) {
    const again = await vscode.window.showErrorMessage(`scanmint: log-in failed: ${errorMessage(err)}`, 'Try again');
    if (again) return login();
  }
  await refreshStatus();
}

async function logout(): Promise<void> {
  const profile = settings.profile ?? status?.profile ?? 'default';
  const ok = await vscode.window.showWarningMessage(
    `Log out of scanmint profile "${profile}"?`,
    {
      modal: true,
      detail: 'Every key this machine minted for it is revoked at the tenant and the Primary key is forgotten. Scans fail until you log in again.',
    },
    'Log out',
  );
  if (ok !== 'Log out') return;
  const result = await withProgress('logging out…', () => execute<RevokeResult>(ServerCommands.logout, profileArgs(settings.profile)));
  if (!result) return;
  clearTerminalEnv();
  void vscode.window.showInformationMessage(`scanmint: ${result.message}`);
  await refreshStatus();
}

async function rotate(): Promise<void> {
  const result = await withProgress('rotating…', () => execute<RotateResult>(ServerCommands.rotate, profileArgs(settings.profile)));
  if (!result) return;
  vscode.window.setStatusBarMessage(`scanmint: ${result.message}`, 5000);
  await refreshStatus();
}

async function revoke(): Promise<void> {
  const profile = settings.profile ?? status?.profile ?? 'default';
  const active = status?.key ? `key #${status.key.keyId}` : 'the active key';
  const pick = await vscode.window.showQuickPick(
    [
      {
        label: 'Revoke the active and retiring keys',
        description: `${active} and the keys still in their grace period`,
        detail: 'The next scan mints a fresh key.',
        all: false,
      },
      {
        label: 'Revoke every key of this machine',
        description: `also any key at the tenant tagged as this machine's for profile "${profile}"`,
        detail: 'For keys left behind by a crash or an old state directory. The next scan mints a fresh key.',
        all: true,
      },
    ],
    { title: 'scanmint: revoke', placeHolder: 'Which keys?' },
  );
  if (!pick) return;
  const ok = await vscode.window.showWarningMessage(
    pick.all ? `Revoke every key this machine minted for profile "${profile}"?` : `Revoke ${active} and the retiring keys of profile "${profile}"?`,
    {
      modal: true,
      detail: pick.all
        ? "The active and retiring keys, and every other key at the tenant tagged as this machine's, stop working now. Scanners get a fresh key on their next scan."
        : 'They stop working now. Scanners get a fresh key on their next scan.',
    },
    'Revoke',
  );
  if (ok !== 'Revoke') return;
  const result = await withProgress('revoking…', () =>
    execute<RevokeResult>(ServerCommands.revoke, profileArgs(settings.profile, pick.all ? { all: true } : {})),
  );
  if (!result) return;
  void vscode.window.showInformationMessage(`scanmint: ${result.message}`);
  await refreshStatus();
}

async function doctor(): Promise<void> {
  const result = await withProgress('running checks…', () => execute<DoctorResult>(ServerCommands.doctor, profileArgs(settings.profile)));
  if (!result) return;
  doctorChannel ??= vscode.window.createOutputChannel('scanmint: doctor');
  doctorChannel.clear();
  for (const line of formatDoctor(result)) doctorChannel.appendLine(redact(line));
  doctorChannel.show(true);
  const failed = result.checks.filter((c) => c.status === 'fail').length;
  if (!result.ok) void vscode.window.showWarningMessage(`scanmint doctor: ${failed} check(s) failed. See the report.`);
}

async function showStatus(): Promise<void> {
  const report = await refreshStatus();
  type Item = vscode.QuickPickItem & { command?: string; run?: () => void };
  const items: Item[] = [];
  if (startFailure && (!client || client.state !== ClientState.Running)) {
    items.push({ label: '$(error) scanmint is not running', detail: startFailure });
  } else if (report) {
    items.push({ label: 'Status', kind: vscode.QuickPickItemKind.Separator });
    for (const line of statusLines(report)) items.push({ label: line });
  }
  items.push({ label: 'Actions', kind: vscode.QuickPickItemKind.Separator });
  const needsLogin = report?.state === 'needs_login';
  const actions: Item[] = [
    { label: '$(sign-in) Log in…', command: 'scanmintClient.login' },
    { label: '$(sync) Rotate now', command: 'scanmintClient.rotate' },
    { label: '$(trash) Revoke keys…', command: 'scanmintClient.revoke' },
    { label: '$(pulse) Doctor', command: 'scanmintClient.doctor' },
    { label: '$(sign-out) Log out', command: 'scanmintClient.logout' },
    { label: '$(output) Show log', run: () => log.show() },
    { label: '$(debug-restart) Restart language server', command: 'scanmintClient.restart' },
  ];
  if (!needsLogin) actions.push(actions.shift()!); // "Log in" first only when it is needed
  items.push(...actions);
  const pick = await vscode.window.showQuickPick(items, { title: 'scanmint', placeHolder: 'Status and actions' });
  if (pick?.command) await vscode.commands.executeCommand(pick.command);
  else pick?.run?.();
}

// ------------------------------------------------------------------------------------ lifecycle

export async function activate(context: vscode.ExtensionContext): Promise<ScanmintApi> {
  extensionPath = context.extensionPath;
  log = vscode.window.createOutputChannel('scanmint');
  envCollection = context.environmentVariableCollection;
  envCollection.persistent = false; // the secret never lands on disk
  envCollection.clear();
  statusItem = vscode.window.createStatusBarItem('scanmint.status', vscode.StatusBarAlignment.Right, 100);
  statusItem.name = 'scanmint';
  statusItem.command = 'scanmintClient.showStatus';
  render();

  const timer = setInterval(render, 30_000); // "until 14:05" turns into "expired" without a message
  context.subscriptions.push(
    log,
    statusItem,
    statusEmitter,
    { dispose: () => clearInterval(timer) },
    { dispose: () => doctorChannel?.dispose() },
    vscode.commands.registerCommand('scanmintClient.login', login),
    vscode.commands.registerCommand('scanmintClient.logout', logout),
    vscode.commands.registerCommand('scanmintClient.rotate', rotate),
    vscode.commands.registerCommand('scanmintClient.revoke', revoke),
    vscode.commands.registerCommand('scanmintClient.doctor', doctor),
    vscode.commands.registerCommand('scanmintClient.showStatus', showStatus),
    vscode.commands.registerCommand('scanmintClient.restart', restartClient),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (RESTART_KEYS.some((k) => e.affectsConfiguration(`scanmint.${k}`))) void restartClient();
    }),
  );

  await startClient();
  return {
    getStatus: () => status,
    onDidChangeStatus: statusEmitter.event,
  };
}

export async function deactivate(): Promise<void> {
  await stopClient();
}
