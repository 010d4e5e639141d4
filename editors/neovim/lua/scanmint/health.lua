-- :checkhealth scanmint: the configured command, the daemon's state and its storage tier.
local M = {}

local health = vim.health

local storage_advice = {
  ['secret-service'] = { 'ok', 'the OS keychain (Secret Service)' },
  keyutils = { 'ok', 'the kernel keyring (keyutils)' },
  env = { 'ok', 'environment variables (SCANMINT_PRIMARY_KEY*)' },
  file = { 'warn', 'a file in $XDG_RUNTIME_DIR (opted in; readable by your user)' },
  memory = { 'warn', 'memory only: the Primary key is lost when the daemon exits' },
}

-- The command the client really starts: vim.lsp.config.scanmint.cmd, which a person's own
-- vim.lsp.config('scanmint', { cmd = ... }) overrides, not what the plugin would pick.
local function check_binary()
  local cfg = vim.lsp.config.scanmint
  local cmd = cfg and cfg.cmd
  if type(cmd) ~= 'table' or type(cmd[1]) ~= 'string' then
    health.error(('vim.lsp.config.scanmint.cmd is %s, not a command line'):format(vim.inspect(cmd)), {
      "Leave cmd unset (the plugin runs `scanmint lsp`), or set { '/path/to/scanmint', 'lsp' }",
    })
    return nil
  end
  health.info('command: ' .. table.concat(cmd, ' '))
  local bin = cmd[1]
  local path = vim.fn.exepath(bin)
  if path == '' then
    health.error(('binary not found: %s'):format(bin), {
      'Install scanmint and put it on $PATH',
      'or set vim.g.scanmint_path (or $SCANMINT_BIN) to the binary',
      "or vim.lsp.config('scanmint', { cmd = { '/path/to/scanmint', 'lsp' } })",
    })
    return nil
  end
  local ok, res = pcall(function()
    return vim.system({ path, '--version' }, { text = true }):wait(5000)
  end)
  if not ok or res.code ~= 0 then
    health.error(('%s --version failed: %s'):format(path, ok and vim.trim(res.stderr or '') or res))
    return nil
  end
  health.ok(('%s (%s)'):format(vim.trim(res.stdout), path))
  return path
end

-- The StatusReport, from the attached client if there is one, else from the CLI.
local function fetch_status(path)
  local client = vim.lsp.get_clients({ name = 'scanmint' })[1]
  if client and client.initialized then
    local p = require('scanmint').profile()
    local resp, err = client:request_sync('scanmint/status', p and { profile = p } or vim.NIL, 5000)
    if resp and resp.result then
      return resp.result, ('the attached client (id %d) answers scanmint/status'):format(client.id)
    end
    return nil, nil, ('scanmint/status failed: %s'):format(resp and vim.inspect(resp.err) or err)
  end
  local ok, res = pcall(function()
    return vim.system({ path, 'status', '--json' }, { text = true }):wait(10000)
  end)
  if not ok then
    return nil, nil, tostring(res)
  end
  local dok, report = pcall(vim.json.decode, res.stdout or '', { luanil = { object = true } })
  if dok and type(report) == 'table' and report.state then
    -- `status` exits non-zero when credentials are not usable; the daemon still answered.
    return report, ('`scanmint status --json` answers (exit code %d)'):format(res.code)
  end
  return nil,
    nil,
    ('`scanmint status --json` exited %d: %s'):format(res.code, vim.trim(res.stderr or ''))
end

function M.check()
  health.start('scanmint')

  if vim.fn.has('nvim-0.11') == 1 then
    health.ok('Neovim ' .. tostring(vim.version()))
  else
    health.error('Neovim 0.11 or newer is needed (vim.lsp.config / vim.lsp.enable)')
  end

  local path = check_binary()

  if require('scanmint').is_enabled() then
    health.ok("vim.lsp.enable('scanmint') is on")
  else
    health.warn('the scanmint language server is not enabled', {
      "vim.lsp.enable('scanmint') or require('scanmint').setup()",
    })
  end

  if not path then
    return
  end

  local report, how, err = fetch_status(path)
  if not report then
    health.error('the daemon is not reachable: ' .. err, { 'Run `scanmint doctor`', 'See :LspLog' })
    return
  end
  health.ok('daemon reachable: ' .. how)

  local state = report.state
  local last = report.lastError and (' (%s: %s)'):format(report.lastError.code, report.lastError.message)
    or ''
  if state == 'ready' or state == 'minting' or state == 'rotating' then
    health.ok(('state: %s, profile %s'):format(state, report.profile))
  elseif state == 'needs_login' then
    health.warn(('state: needs_login, profile %s%s'):format(report.profile, last), { ':Scanmint login' })
  elseif state == 'degraded' then
    health.warn('state: degraded, serving a still-valid key' .. last, { ':Scanmint doctor' })
  else
    health.error(('state: %s%s'):format(state, last), { ':Scanmint doctor' })
  end

  if report.key then
    health.ok(
      ('key #%d, generation %d, expires %s'):format(
        report.key.keyId,
        report.key.generation,
        os.date('%Y-%m-%d %H:%M', math.floor(report.key.expiresAt / 1000))
      )
    )
  else
    health.info('no minted key yet (one is minted when a scanner asks)')
  end

  local tier = storage_advice[report.storage]
  if not tier then
    health.warn('storage: ' .. tostring(report.storage))
  elseif tier[1] == 'ok' then
    health.ok(('storage: %s, %s'):format(report.storage, tier[2]))
  else
    health.warn(('storage: %s, %s'):format(report.storage, tier[2]), {
      'Run a Secret Service (e.g. gnome-keyring) or use keyutils; see `scanmint doctor`',
    })
  end
end

return M
