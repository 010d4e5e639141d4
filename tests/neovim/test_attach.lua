-- The client attaches to any buffer and keeps the status cache from scanmint/didChangeStatus.
local h = dofile('tests/neovim/helpers.lua')
local scanmint = require('scanmint')

local ws = h.env.tmp .. '/ws-attach'
local buf_plain, buf_noft, buf_proj

h.test('attaches to a file outside any project', function()
  buf_plain = h.open(ws .. '/loose/notes.txt', { 'hello' })
  -- Enabled after the buffer is open: vim.lsp.enable() must catch up on existing buffers.
  vim.lsp.enable('scanmint')
  local client = h.attached(buf_plain)
  h.eq({ h.env.bin, 'lsp' }, client.config.cmd, 'cmd (from $SCANMINT_BIN)')
  h.eq(ws .. '/loose', client.root_dir, 'root_dir falls back to the file directory')
end)

h.test('sends init_options: editor session, no secret for the editor', function()
  local client = h.attached(buf_plain)
  h.eq('editor', client.config.init_options.clientKind, 'clientKind')
  h.eq(false, client.config.init_options.exposeSecretToEditor, 'exposeSecretToEditor')
end)

h.test('attaches to a buffer with no filetype (no FileType event)', function()
  buf_noft = h.open(ws .. '/loose/data.zzunknown', { '' })
  h.eq('', vim.bo[buf_noft].filetype, 'filetype')
  h.attached(buf_noft)
end)

h.test('attaches to a file in a git project, reusing the one client', function()
  vim.fn.mkdir(ws .. '/proj/.git', 'p')
  buf_proj = h.open(ws .. '/proj/src/main.py', { 'print(1)' })
  h.attached(buf_proj)
  local clients = vim.lsp.get_clients({ name = 'scanmint' })
  h.eq(1, #clients, 'number of scanmint clients')
  local attached = clients[1].attached_buffers
  h.ok(attached[buf_plain] and attached[buf_noft] and attached[buf_proj], 'all three buffers attached')
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

h.finish()
