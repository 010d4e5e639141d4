-- The shim on a remote machine, unchanged: with SCANMINT_SOCKET naming the workstation's
-- restricted socket (run.sh gives this test its own dirs and no Primary key), `scanmint lsp`
-- joins the workstation's daemon, gets status and keys, and cannot log out; no daemon starts here.
local h = dofile('tests/neovim/helpers.lua')
vim.lsp.enable('scanmint')

local socket = assert(vim.env.SCANMINT_SOCKET, 'run.sh sets SCANMINT_SOCKET for this test')
local buf = h.open(h.env.tmp .. '/remote/ws/.env', { 'EMPTY=1' })
local client = h.attached(buf)

h.test('status comes from the workstation daemon', function()
  local status = h.request(client, 'scanmint/status', vim.empty_dict())
  h.eq('ready', status.state, 'state')
  h.eq(h.env.base_url, status.baseUrl, 'tenant')
end)

h.test('a key is handed out, never the Primary key', function()
  local creds = h.request(client, 'scanmint/credentials', vim.empty_dict())
  h.ok(type(creds.key) == 'string' and creds.key ~= h.env.key, 'a minted key')
  h.ok(creds.keyId ~= h.env.key_id, 'not the Primary key id')
end)

h.test('logout is refused over the remote socket', function()
  local resp = client:request_sync('workspace/executeCommand', { command = 'scanmint.logout', arguments = {} }, 10000)
  h.ok(resp and resp.err, 'an error, got ' .. vim.inspect(resp))
  h.ok(resp.err.message:find('remote socket', 1, true), resp.err.message)
  h.eq('ready', h.request(client, 'scanmint/status', vim.empty_dict()).state, 'still logged in')
end)

h.test('no daemon and no runtime directory on the remote side', function()
  h.ok(vim.fn.isdirectory(vim.env.XDG_RUNTIME_DIR .. '/scanmint') == 0, 'no runtime dir here')
  h.ok(vim.uv.fs_stat(socket) ~= nil, 'the forwarded socket is used')
end)

h.finish()
