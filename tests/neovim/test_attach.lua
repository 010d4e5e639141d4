-- The client attaches only to the files a scanner reads, and what reaches the server proves it:
-- `scanmint lsp` runs behind a `tee` of its stdin (the bytes Neovim wrote to the server), and
-- the server's own diagnostics show it read the buffers' unsaved text and the added folders.
local h = dofile('tests/neovim/helpers.lua')
local scanmint = require('scanmint')

local ws = h.env.tmp .. '/ws-attach'
local literal = h.env.key:reverse() -- key-shaped, not a real key

-- The server, started through a wrapper that records every byte Neovim sends it.
local wire = ws .. '/wire.log'
local wrapper = ws .. '/scanmint-tee'
vim.fn.mkdir(ws, 'p')
vim.fn.writefile({
  '#!/bin/sh',
  ('tee -a %s | %s "$@"'):format(vim.fn.shellescape(wire), vim.fn.shellescape(h.env.bin)),
}, wrapper)
vim.fn.setfperm(wrapper, 'rwx------')
vim.g.scanmint_path = wrapper

-- Every textDocument/publishDiagnostics the server sent: { [uri] = last diagnostics }.
local published = {}
local publish = vim.lsp.handlers['textDocument/publishDiagnostics']
vim.lsp.handlers['textDocument/publishDiagnostics'] = function(err, params, ctx, config)
  published[params.uri] = params.diagnostics
  return publish(err, params, ctx, config)
end

-- The JSON-RPC messages in the wire log, decoded, in order.
local function sent()
  local data = table.concat(vim.fn.readfile(wire, 'b'), '\n')
  local msgs, pos = {}, 1
  while true do
    local s, e, len = data:find('Content%-Length: (%d+)\r\n\r\n', pos)
    if not s then
      return msgs, data
    end
    msgs[#msgs + 1] = vim.json.decode(data:sub(e + 1, e + tonumber(len)))
    pos = e + tonumber(len) + 1
  end
end

local function sent_uris(method)
  local uris = {}
  for _, m in ipairs(sent()) do
    if m.method == method then
      uris[#uris + 1] = m.params.textDocument.uri
    end
  end
  return uris
end

local function literal_key_on(uri, ms)
  h.wait(ms or 10000, function()
    for _, d in ipairs(published[uri] or {}) do
      if d.code == 'literal-key' then
        return true
      end
    end
  end, 'a literal-key diagnostic from the server for ' .. uri)
end

local others, env_buf, client

h.test('attaches to the files a scanner reads, and to no other buffer', function()
  vim.fn.mkdir(ws .. '/proj/.git', 'p')
  others = {
    h.open(ws .. '/loose/notes.txt', { 'CORTEX_API_KEY=' .. literal }),
    h.open(ws .. '/proj/src/main.py', { 'print(1)' }),
    h.open(ws .. '/proj/data.zzunknown', { '' }),
  }
  -- Enabled after buffers are open: vim.lsp.enable() catches up on existing buffers.
  vim.lsp.enable('scanmint')
  env_buf = h.open(ws .. '/proj/cortex.env', { 'CORTEX_API_KEY_ID=7' })
  client = h.attached(env_buf)
  h.eq({ wrapper, 'lsp' }, client.config.cmd, 'cmd (vim.g.scanmint_path)')
  h.eq(ws .. '/proj', client.root_dir, 'root_dir is the project')
  h.eq('editor', client.config.init_options.clientKind, 'clientKind')
  h.eq(false, client.config.init_options.exposeSecretToEditor, 'exposeSecretToEditor')
  local yaml = h.open(ws .. '/proj/.github/workflows/ci.yml', { 'on: push' })
  h.attached(yaml)
  vim.wait(500) -- a wrong attach would have happened by now
  for _, b in ipairs(others) do
    h.eq({}, vim.lsp.get_clients({ bufnr = b }), 'clients of ' .. vim.api.nvim_buf_get_name(b))
  end
  h.eq(1, #vim.lsp.get_clients({ name = 'scanmint' }), 'one scanmint client')
end)

h.test('the server received the scanned buffers only (didOpen on the wire)', function()
  local opened = sent_uris('textDocument/didOpen')
  h.eq({
    vim.uri_from_fname(ws .. '/proj/cortex.env'),
    vim.uri_from_fname(ws .. '/proj/.github/workflows/ci.yml'),
  }, opened, 'didOpen URIs sent to the server')
  local _, raw = sent()
  for _, name in ipairs({ 'notes.txt', 'main.py', 'data.zzunknown', literal }) do
    h.ok(not raw:find(name, 1, true), name .. ' reached the server')
  end
end)

h.test("the server reads the buffer's unsaved text (diagnostic on an edit)", function()
  local uri = vim.uri_from_bufnr(env_buf)
  vim.api.nvim_buf_set_lines(env_buf, -1, -1, false, { 'CORTEX_API_KEY=' .. literal })
  literal_key_on(uri)
  h.eq({ 'CORTEX_API_KEY_ID=7' }, vim.fn.readfile(ws .. '/proj/cortex.env'), 'the file on disk (unchanged)')
end)

h.test('a buffer in another project reuses the client and adds its workspace folder', function()
  -- proj2/.env holds a key on disk and is never opened: only the daemon's folder scan finds it.
  vim.fn.mkdir(ws .. '/proj2/.git', 'p')
  vim.fn.writefile({ 'CORTEX_API_KEY=' .. literal }, ws .. '/proj2/.env')
  local buf = h.open(ws .. '/proj2/.cortex.yaml', { 'api_key_id: 7' })
  local c = h.attached(buf)
  h.eq(client.id, c.id, 'the same client')
  local folder = vim.uri_from_fname(ws .. '/proj2')
  h.ok(
    vim.iter(c.workspace_folders or {}):any(function(f)
      return f.uri == folder
    end),
    'client.workspace_folders: ' .. vim.inspect(c.workspace_folders)
  )
  literal_key_on(vim.uri_from_fname(ws .. '/proj2/.env'))
  local added = vim.tbl_filter(function(m)
    return m.method == 'workspace/didChangeWorkspaceFolders'
  end, (sent()))
  h.eq(1, #added, 'didChangeWorkspaceFolders sent once')
  h.eq(folder, added[1].params.event.added[1].uri, 'the folder added')
end)

h.test('receives scanmint/didChangeStatus and caches it', function()
  h.wait(10000, function()
    return scanmint.status() ~= nil
  end, 'a scanmint/didChangeStatus notification')
  local r = scanmint.status()
  h.ok(
    vim.tbl_contains({ 'ready', 'minting', 'rotating', 'degraded' }, r.state),
    'state with an env Primary key: ' .. tostring(r.state)
  )
  h.eq('env', r.storage, 'storage tier (Primary key from the environment)')
  h.eq(h.env.base_url, r.baseUrl, 'baseUrl')
end)

h.test('statusline() reflects the cached state', function()
  local line = scanmint.statusline()
  h.ok(line:match('^scanmint: '), 'statusline: ' .. line)
  h.ok(not line:find('log in') and not line:find('error'), 'statusline while healthy: ' .. line)
  -- Feed synthetic reports through the real handler to check the mapping.
  local saved = scanmint.status()
  scanmint.on_status(nil, { state = 'needs_login', profile = 'default', storage = 'env', baseUrl = vim.NIL })
  h.eq('scanmint: log in', scanmint.statusline(), 'needs_login')
  scanmint.on_status(nil, { state = 'minting', profile = 'default', storage = 'env' })
  h.eq('scanmint: minting…', scanmint.statusline(), 'minting')
  local exp = (os.time() + 600) * 1000
  scanmint.on_status(nil, {
    state = 'ready',
    profile = 'default',
    storage = 'env',
    key = { keyId = 42, expiresAt = exp, generation = 3 },
  })
  h.eq('scanmint: key #42 until ' .. os.date('%H:%M', exp / 1000), scanmint.statusline(), 'ready')
  scanmint.on_status(nil, saved)
end)

h.test('notifies on a state change, not on an identical repeat or a new key', function()
  local saved = scanmint.status()
  local function report(state, key_id, err)
    return {
      state = state,
      profile = 'default',
      storage = 'env',
      key = key_id and { keyId = key_id, expiresAt = (os.time() + 600) * 1000, generation = key_id } or nil,
      lastError = err and { code = err, message = 'boom' } or nil,
    }
  end
  local before = #h.notes
  scanmint.on_status(nil, report('error', nil, 'tenant_unavailable'))
  scanmint.on_status(nil, report('error', nil, 'tenant_unavailable'))
  local got = h.notes_with('tenant_unavailable', before)
  h.eq(1, #got, 'notifications for two identical error reports')
  h.eq(vim.log.levels.ERROR, got[1].level, 'level')
  scanmint.on_status(nil, report('ready', 7))
  h.eq(1, #h.notes_with('key #7 until', before), 'recovery to ready is announced')
  scanmint.on_status(nil, report('rotating', 7))
  scanmint.on_status(nil, report('ready', 8))
  h.eq(0, #h.notes_with('key #8', before), 'a rotation is not announced')
  scanmint.on_status(nil, report('needs_login'))
  local login = h.notes_with(':Scanmint login', before)
  h.eq(1, #login, 'needs_login is announced')
  h.eq(vim.log.levels.WARN, login[1].level, 'needs_login level')
  scanmint.on_status(nil, saved)
end)

h.test('the statusline says "stopped" when the server has stopped, not nothing', function()
  h.ok(scanmint.statusline() ~= '', 'statusline while running')
  client:stop(true)
  h.wait(5000, function()
    return #vim.lsp.get_clients({ name = 'scanmint' }) == 0
  end, 'the client to stop')
  h.wait(2000, function()
    return scanmint.statusline():find('stopped', 1, true) ~= nil
  end, 'a "stopped" statusline (got ' .. vim.inspect(scanmint.statusline()) .. ')')
  h.ok(vim.startswith(scanmint.statusline(), 'scanmint: stopped'), scanmint.statusline())
end)

h.test('status and commands work with no scanned file open: one client, attached to nothing', function()
  vim.cmd.buffer(others[1]) -- notes.txt: not scanned
  local err, r = h.run(scanmint.show_status)
  h.eq(nil, err, ':Scanmint status error')
  h.eq('default', r.profile, 'status from the server')
  local clients = vim.lsp.get_clients({ name = 'scanmint' })
  h.eq(1, #clients, 'one client')
  h.eq({}, clients[1].attached_buffers, 'attached buffers')
  -- The statusline comes back with the new client's first status.
  h.wait(5000, function()
    return not scanmint.statusline():find('stopped', 1, true)
  end, 'the statusline to leave "stopped"')
  -- Opening a scanned file now reuses that client and adds the project.
  local buf = h.open(ws .. '/proj3/.env.local', { 'A=1' })
  local c = h.attached(buf)
  h.eq(clients[1].id, c.id, 'the same client')
  h.eq(vim.uri_from_fname(ws .. '/proj3'), (c.workspace_folders or {})[1].uri, 'the folder added')
end)

h.test(':Scanmint completes its subcommands', function()
  h.eq(
    { 'login', 'logout', 'status', 'rotate', 'revoke', 'doctor' },
    vim.fn.getcompletion('Scanmint ', 'cmdline'),
    'completion'
  )
  h.eq({ 'rotate', 'revoke' }, vim.fn.getcompletion('Scanmint r', 'cmdline'), 'completion of "r"')
end)

h.test('setup() sets the binary and profile of the config', function()
  scanmint.setup({ path = h.env.bin, profile = 'default' })
  local cfg = vim.lsp.config.scanmint
  h.eq({ h.env.bin, 'lsp' }, cfg.cmd, 'cmd')
  h.eq({ clientKind = 'editor', profile = 'default', exposeSecretToEditor = false }, cfg.init_options, 'init_options')
  h.ok(vim.lsp.is_enabled('scanmint'), 'enabled')
end)

h.test("setup() keeps a cmd the person set with vim.lsp.config", function()
  local mine = { wrapper, 'lsp' }
  vim.lsp.config('scanmint', { cmd = mine })
  scanmint.setup({ profile = 'default' })
  h.eq(mine, vim.lsp.config.scanmint.cmd, 'cmd after setup()')
  h.eq('default', vim.lsp.config.scanmint.init_options.profile, 'profile still applied')
end)

h.finish()
