-- scanmint for Neovim: status cache, statusline, and the :Scanmint commands.
-- The LSP config itself lives in lsp/scanmint.lua (for vim.lsp.enable('scanmint')).
local M = {}

local NAME = 'scanmint'
local levels = vim.log.levels

M.options = {
  profile = nil, -- nil: the daemon's default profile
  notify = true, -- vim.notify when the state changes
}

--- Latest StatusReport from scanmint/didChangeStatus.
---@type table?
M.report = nil
local last_summary = nil -- what the last notification was about

--- Options: { profile = 'name', path = '/path/to/scanmint', notify = true, enable = true }.
--- A `cmd` or `init_options` the person set with vim.lsp.config('scanmint', ...) is kept.
function M.setup(opts)
  opts = opts or {}
  if opts.path then
    vim.g.scanmint_path = opts.path
  end
  if opts.profile ~= nil then
    M.options.profile = opts.profile
  end
  if opts.notify ~= nil then
    M.options.notify = opts.notify
  end
  -- An empty update only invalidates the resolved config: lsp/scanmint.lua runs again and
  -- picks up the new path and profile, under whatever the person configured themselves.
  vim.lsp.config(NAME, {})
  if opts.enable ~= false then
    vim.lsp.enable(NAME)
  end
end

--- vim.lsp.is_enabled() exists from Neovim 0.11.2 only; 0.11.0 and 0.11.1 keep the same
--- table it reads.
function M.is_enabled()
  if vim.lsp.is_enabled then
    return vim.lsp.is_enabled(NAME)
  end
  return type(vim.lsp._enabled_configs) == 'table' and vim.lsp._enabled_configs[NAME] ~= nil
end

--- The binary: vim.g.scanmint_path, else $SCANMINT_BIN, else `scanmint` on $PATH.
function M.bin()
  return vim.g.scanmint_path or vim.env.SCANMINT_BIN or 'scanmint'
end

function M.profile()
  return M.options.profile or vim.g.scanmint_profile
end

function M.init_options()
  return { clientKind = 'editor', profile = M.profile(), exposeSecretToEditor = false }
end

--- Whether a scanner reads the file at `path`, by its place in a workspace. The same list as
--- the server's (src/serve/scan.rs, is_scanned_file): only these files are sent to the daemon.
function M.is_scanned(path)
  if type(path) ~= 'string' or path == '' then
    return false
  end
  local name = vim.fs.basename(path)
  local parent = vim.fs.basename(vim.fs.dirname(path))
  local grandparent = vim.fs.basename(vim.fs.dirname(vim.fs.dirname(path)))
  local yaml = name:match('%.ya?ml$') ~= nil
  return name == 'cortex.env'
    or name == '.cortex.yaml'
    or name == '.cortex.yml'
    or name == '.env'
    or vim.startswith(name, '.env.')
    or (name == 'settings.json' and parent == '.vscode')
    or (yaml and parent == 'workflows' and grandparent == '.github')
    or name == '.gitlab-ci.yml'
    or name == 'azure-pipelines.yml'
    or name == 'bitbucket-pipelines.yml'
    or (name == 'config.yml' and parent == '.circleci')
end

--- root_dir for vim.lsp.config: calls on_dir only for the files a scanner reads, so no other
--- buffer is attached (or sent to the daemon). The root is the project (.git, cortex.env,
--- .cortex.yaml) when there is one, else the directory holding `.vscode`, `.github`... or the file.
function M.root_dir(bufnr, on_dir)
  local name = vim.api.nvim_buf_get_name(bufnr)
  if not M.is_scanned(name) then
    return
  end
  local root = vim.fs.root(bufnr, { '.git', 'cortex.env', '.cortex.yaml' })
  if not root then
    local dir = vim.fs.dirname(name)
    local up = { ['.vscode'] = 1, ['.circleci'] = 1, workflows = 2 }
    for _ = 1, up[vim.fs.basename(dir)] or 0 do
      dir = vim.fs.dirname(dir)
    end
    root = dir
  end
  on_dir(root)
end

-- Tell a running client about one more workspace folder (once it is initialized: the
-- initialize request already went out with the folders it had).
local function add_folder(client, dir)
  local folder = { uri = vim.uri_from_fname(dir), name = dir }
  for _, f in ipairs(client.workspace_folders or {}) do
    if f.uri == folder.uri then
      return
    end
  end
  client.workspace_folders = client.workspace_folders or {}
  table.insert(client.workspace_folders, folder)
  local tries = 0
  local function send()
    if client:is_stopped() then
      return
    end
    if not client.initialized then
      tries = tries + 1
      return tries < 400 and vim.defer_fn(send, 25) or nil
    end
    client:notify('workspace/didChangeWorkspaceFolders', { event = { added = { folder }, removed = {} } })
  end
  send()
end

--- One client for all buffers: the daemon is per user, not per project. Reusing it for a
--- buffer in another project adds that project as a workspace folder (the daemon watches it).
function M.reuse_client(client, config)
  if client.name ~= config.name or client:is_stopped() then
    return false
  end
  if type(config.root_dir) == 'string' then
    add_folder(client, config.root_dir)
  end
  return true
end

-- Status ------------------------------------------------------------------------------

local function clock(ms)
  local secs = math.floor(ms / 1000)
  if os.date('%Y-%m-%d', secs) == os.date('%Y-%m-%d') then
    return os.date('%H:%M', secs)
  end
  return os.date('%Y-%m-%d %H:%M', secs)
end

local function key_text(key)
  if os.time() * 1000 >= key.expiresAt then
    return ('key #%d expired'):format(key.keyId)
  end
  return ('key #%d until %s'):format(key.keyId, clock(key.expiresAt))
end

--- How the last client ended ({ code, signal }), until a new one reports a status.
---@type table?
M.stopped = nil

--- A short text for 'statusline' / 'winbar'; '' until a scanmint client has started, then
--- 'scanmint: stopped' once it has ended (a crashed or stopped server is not news to hide).
function M.statusline()
  local r = M.report
  if not r then
    local st = M.stopped
    if not st then
      return ''
    end
    local how = (st.signal and st.signal ~= 0 and (' (signal %d)'):format(st.signal))
      or (st.code and st.code ~= 0 and (' (exit %d)'):format(st.code))
      or ''
    return 'scanmint: stopped' .. how
  end
  local s = r.state
  if s == 'ready' then
    return 'scanmint: ' .. (r.key and key_text(r.key) or 'ready')
  elseif s == 'minting' or s == 'rotating' then
    return ('scanmint: %s…'):format(s)
  elseif s == 'needs_login' then
    return 'scanmint: log in'
  elseif s == 'degraded' then
    return 'scanmint: degraded' .. (r.key and (', ' .. key_text(r.key)) or '')
  end
  return 'scanmint: error'
end

--- The cached StatusReport (a copy), or nil.
function M.status()
  return M.report and vim.deepcopy(M.report)
end

local function error_text(e)
  return e and ((e.code and (e.code .. ': ') or '') .. (e.message or '')) or nil
end

-- One line for a notification; nil for states not worth interrupting anyone for.
local function state_message(r)
  local s = r.state
  if s == 'ready' then
    return r.key and ('scanmint: ' .. key_text(r.key) .. (' (generation %d)'):format(r.key.generation))
      or 'scanmint: ready',
      levels.INFO
  elseif s == 'needs_login' then
    return 'scanmint: log in with :Scanmint login', levels.WARN
  elseif s == 'degraded' then
    return 'scanmint: the tenant is failing, still serving the current key: '
      .. (error_text(r.lastError) or '?'),
      levels.WARN
  elseif s == 'error' then
    return 'scanmint: no usable key: ' .. (error_text(r.lastError) or 'unknown error'), levels.ERROR
  end
  return nil -- minting / rotating: the statusline shows those
end

--- Handler for scanmint/didChangeStatus.
function M.on_status(_, report)
  if type(report) ~= 'table' then
    return
  end
  local first = M.report == nil
  M.report = report
  M.stopped = nil
  vim.cmd.redrawstatus({ bang = true })
  vim.api.nvim_exec_autocmds('User', { pattern = 'ScanmintStatus', data = report, modeline = false })

  local msg, level = state_message(report)
  if not msg then
    return
  end
  -- A state change, not a new key: rotations show in the statusline, not as messages.
  local summary = report.state .. '|' .. (report.lastError and report.lastError.code or '')
  if summary == last_summary then
    return
  end
  last_summary = summary
  -- Quiet start: a healthy state at attach time is not news.
  if M.options.notify and not (first and report.state == 'ready') then
    vim.notify(msg, level, { title = NAME })
  end
end

function M.on_exit(code, signal)
  -- Another scanmint client still running keeps the status it reports.
  for _, c in ipairs(vim.lsp.get_clients({ name = NAME })) do
    if not c:is_stopped() then
      return
    end
  end
  M.report = nil
  M.stopped = { code = code, signal = signal }
  last_summary = nil
  pcall(vim.cmd.redrawstatus, { bang = true })
end

-- Client --------------------------------------------------------------------------------

local function resolved_config()
  local cfg = vim.lsp.config[NAME]
  if not cfg then
    return nil, 'no lsp/scanmint.lua on runtimepath'
  end
  if type(cfg.cmd) == 'table' and vim.fn.executable(cfg.cmd[1]) == 0 then
    return nil, ('binary not found: %s (set vim.g.scanmint_path or $SCANMINT_BIN)'):format(cfg.cmd[1])
  end
  return vim.deepcopy(cfg)
end

--- Attach the scanmint client to a buffer (for buffers FileType never fires for).
function M.attach(bufnr)
  local cfg = resolved_config()
  if not cfg then
    return
  end
  local start = function(root)
    cfg.root_dir = root
    vim.lsp.start(cfg, { bufnr = bufnr, reuse_client = cfg.reuse_client, silent = true })
  end
  if type(cfg.root_dir) == 'function' then
    cfg.root_dir(bufnr, function(root)
      vim.schedule(function()
        start(root)
      end)
    end)
  else
    start(cfg.root_dir)
  end
end

--- The running scanmint client; starts one (attached to no buffer, with no workspace folder)
--- when none runs, so status and commands work with no scanned file open.
---@return vim.lsp.Client?, string?
function M.client()
  local client = vim.lsp.get_clients({ name = NAME })[1]
  if not client then
    local cfg, err = resolved_config()
    if not cfg then
      return nil, err
    end
    if type(cfg.root_dir) ~= 'string' then
      cfg.root_dir = nil
    end
    local id = vim.lsp.start(cfg, { attach = false, reuse_client = cfg.reuse_client })
    client = id and vim.lsp.get_client_by_id(id)
    if not client then
      return nil, 'could not start ' .. table.concat(cfg.cmd, ' ')
    end
  end
  if not vim.wait(10000, function()
    return client.initialized or client:is_stopped()
  end, 20) or client:is_stopped() then
    return nil, 'the language server did not start (see :LspLog)'
  end
  return client
end

-- Requests -------------------------------------------------------------------------------

local function notify(msg, level)
  vim.notify(msg, level or levels.INFO, { title = NAME })
end

--- Send a request; on_result(err, result) with err a string.
local function request(method, params, on_result)
  local client, cerr = M.client()
  if not client then
    return on_result('scanmint: ' .. cerr)
  end
  client:request(method, params, function(err, result)
    on_result(err and ('scanmint: ' .. (err.message or vim.inspect(err))), result)
  end)
end

local function profile_args()
  local p = M.profile()
  return p and { { profile = p } } or nil
end

local function execute(command, arguments, on_result)
  request('workspace/executeCommand', { command = 'scanmint.' .. command, arguments = arguments }, on_result)
end

-- Every command takes an optional on_done(err, result), for scripts and tests.
local function done(on_done, err, ...)
  if err then
    notify(err, levels.ERROR)
  end
  if on_done then
    on_done(err, ...)
  end
end

local function trim(s)
  return vim.trim(s or '')
end

local function cancelled(on_done)
  notify('scanmint: login cancelled')
  if on_done then
    on_done('cancelled')
  end
end

function M.login(on_done)
  local default_url = M.report and M.report.baseUrl
  local base_url = trim(vim.fn.input({
    prompt = 'Cortex API base URL: ',
    default = type(default_url) == 'string' and default_url or '',
  }))
  if base_url == '' then
    return cancelled(on_done)
  end
  local key_id = tonumber(trim(vim.fn.input({ prompt = 'API key ID: ' })))
  if not key_id or key_id ~= math.floor(key_id) or key_id <= 0 then
    return done(on_done, 'scanmint: the API key ID is a positive integer')
  end
  local secret = vim.fn.inputsecret('API key: ')
  if secret == '' then
    return cancelled(on_done)
  end
  local level = trim(vim.fn.input({ prompt = 'Security level (standard/advanced, empty: auto): ' }))
  if level ~= '' and level ~= 'standard' and level ~= 'advanced' then
    return done(on_done, 'scanmint: security level is "standard" or "advanced"')
  end
  vim.cmd.redraw()

  local args = {
    baseUrl = base_url,
    keyId = key_id,
    key = secret,
    securityLevel = level ~= '' and level or nil,
    profile = M.profile(),
  }
  secret = nil
  -- The LSP log records request params at DEBUG level: keep the secret out of it.
  local log_level = vim.lsp.log.get_level()
  if log_level < levels.INFO then
    vim.lsp.log.set_level(levels.INFO)
  end
  local ok, err = pcall(execute, 'login', { args }, function(rerr, result)
    if not rerr and result then
      notify(result.message or ('scanmint: logged in (storage: %s)'):format(result.storage))
    end
    done(on_done, rerr, result)
  end)
  args.key = nil
  vim.lsp.log.set_level(log_level)
  if not ok then
    done(on_done, 'scanmint: ' .. tostring(err))
  end
end

local function status_lines(r)
  local lines = {
    ('scanmint: %s (profile %s, storage %s)'):format(r.state, r.profile or '?', r.storage or '?'),
    'tenant: ' .. (type(r.baseUrl) == 'string' and r.baseUrl or 'none (not logged in)'),
  }
  local k = r.key
  if k then
    local secs_left = math.floor(k.expiresAt / 1000 - os.time())
    lines[#lines + 1] = ('key #%d (%s, %s), generation %d, expires %s (%s)'):format(
      k.keyId,
      k.role or '?',
      k.fingerprint or '?',
      k.generation,
      os.date('%Y-%m-%d %H:%M:%S', math.floor(k.expiresAt / 1000)),
      secs_left > 0 and ('in %d min'):format(math.ceil(secs_left / 60)) or 'expired'
    )
  else
    lines[#lines + 1] = 'no key minted yet'
  end
  if r.lastError then
    lines[#lines + 1] = 'last error: ' .. error_text(r.lastError)
  end
  return lines
end

function M.show_status(on_done)
  local p = M.profile()
  request('scanmint/status', p and { profile = p } or vim.NIL, function(err, r)
    if not err and r then
      local level = (r.state == 'error' and levels.ERROR)
        or ((r.state == 'needs_login' or r.state == 'degraded') and levels.WARN)
        or levels.INFO
      notify(table.concat(status_lines(r), '\n'), level)
    end
    done(on_done, err, r)
  end)
end

-- What the destructive commands do, asked before they run (vim.fn.confirm: a dialog in GUIs,
-- a prompt in the terminal).
local questions = {
  revoke = {
    'Revoke the active key and any retiring one on the tenant? Scans running with them fail; '
      .. 'the next scan gets a freshly minted key.',
    '&Revoke\n&Cancel',
  },
  logout = {
    'Log out: revoke every key this machine minted, delete the managed cortex.env and forget '
      .. 'the Primary key? Scans need a new :Scanmint login afterwards.',
    '&Log out\n&Cancel',
  },
}

local function simple(command)
  --- on_done(err, result); opts.confirm = false skips the question (scripts).
  return function(on_done, opts)
    local q = questions[command]
    if q and not (opts and opts.confirm == false) and vim.fn.confirm(q[1], q[2], 2, 'Question') ~= 1 then
      notify(('scanmint: %s cancelled'):format(command))
      if on_done then
        on_done('cancelled')
      end
      return
    end
    execute(command, profile_args(), function(err, result)
      if not err then
        notify(result and result.message or ('scanmint: %s done'):format(command))
      end
      done(on_done, err, result)
    end)
  end
end

M.rotate = simple('rotate')
M.revoke = simple('revoke')
M.logout = simple('logout')

--- Doctor's report in a scratch buffer (one line per check); on_done(err, result, bufnr).
function M.doctor(on_done)
  execute('doctor', profile_args(), function(err, result)
    if err or not result then
      return done(on_done, err or 'scanmint: doctor returned nothing')
    end
    local warnings = #vim.tbl_filter(function(c)
      return c.status == 'warn'
    end, result.checks or {})
    local lines = {
      (result.ok and 'scanmint doctor: all checks passed' or 'scanmint doctor: problems found')
        .. (warnings > 0 and (' (%d warning%s)'):format(warnings, warnings > 1 and 's' or '') or ''),
      '',
    }
    for _, c in ipairs(result.checks or {}) do
      local line = ('%-4s  %-20s %s'):format((c.status or '?'):upper(), c.name or '?', c.detail or '')
      if c.fix and c.fix ~= vim.NIL and c.fix ~= '' then
        line = line .. '  (fix: ' .. c.fix .. ')'
      end
      lines[#lines + 1] = (line:gsub('\n', ' '))
    end
    local buf = vim.fn.bufnr('scanmint://doctor')
    if buf == -1 then
      buf = vim.api.nvim_create_buf(false, true)
      vim.api.nvim_buf_set_name(buf, 'scanmint://doctor')
      vim.bo[buf].filetype = 'scanmint-doctor'
      vim.keymap.set('n', 'q', '<cmd>close<cr>', { buffer = buf, nowait = true })
    end
    vim.bo[buf].modifiable = true
    vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
    vim.bo[buf].modifiable = false
    if vim.fn.bufwinid(buf) == -1 then
      vim.cmd('botright sbuffer ' .. buf)
      vim.api.nvim_win_set_height(0, math.min(#lines + 1, 20))
    end
    done(on_done, nil, result, buf)
  end)
end

M.subcommands = {
  login = M.login,
  logout = M.logout,
  status = M.show_status,
  rotate = M.rotate,
  revoke = M.revoke,
  doctor = M.doctor,
}

function M.command(name)
  local fn = M.subcommands[name or 'status']
  if not fn then
    return notify('scanmint: unknown subcommand ' .. name, levels.ERROR)
  end
  fn()
end

return M
