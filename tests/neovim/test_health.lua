-- :checkhealth scanmint
local h = dofile('tests/neovim/helpers.lua')

vim.lsp.enable('scanmint')

local function checkhealth()
  vim.cmd('silent checkhealth scanmint')
  local lines = vim.api.nvim_buf_get_lines(0, 0, -1, false)
  local text = table.concat(lines, '\n')
  vim.cmd('tabclose')
  return text
end

local function count(text, pattern)
  local n = 0
  for _ in text:gmatch(pattern) do
    n = n + 1
  end
  return n
end

h.test(':checkhealth scanmint is OK with an attached client', function()
  local buf = h.open(h.env.tmp .. '/ws-health/.cortex.yaml', { 'api_key_id: 7' })
  h.attached(buf)
  local text = checkhealth()
  h.eq(0, count(text, 'ERROR'), 'ERROR lines in:\n' .. text)
  h.ok(text:find('OK scanmint %S+ %(' .. vim.pesc(h.env.bin) .. '%)'), 'binary and version line:\n' .. text)
  h.ok(text:find('OK daemon reachable: the attached client', 1, true), 'daemon line:\n' .. text)
  h.ok(text:find('OK state: ready', 1, true), 'state line:\n' .. text)
  h.ok(text:find('OK storage: env', 1, true), 'storage line:\n' .. text)
end)

h.test(':checkhealth scanmint without a client asks `scanmint status --json`', function()
  for _, c in ipairs(vim.lsp.get_clients({ name = 'scanmint' })) do
    c:stop(true)
  end
  h.wait(5000, function()
    return #vim.lsp.get_clients({ name = 'scanmint' }) == 0
  end, 'the client to stop')
  local text = checkhealth()
  h.eq(0, count(text, 'ERROR'), 'ERROR lines in:\n' .. text)
  h.ok(text:find('OK daemon reachable: `scanmint status --json` answers (exit code 0)', 1, true), 'daemon line:\n' .. text)
  h.ok(text:find('OK storage: env', 1, true), 'storage line:\n' .. text)
end)

h.test(':checkhealth scanmint checks the cmd configured, not the path the plugin would pick', function()
  -- vim.g.scanmint_path names nothing, but the person's cmd (what the client runs) works.
  vim.g.scanmint_path = h.env.tmp .. '/no/such/scanmint'
  vim.lsp.config('scanmint', { cmd = { h.env.bin, 'lsp' } })
  local text = checkhealth()
  h.eq(0, count(text, 'ERROR'), 'ERROR lines in:\n' .. text)
  h.ok(text:find('command: ' .. h.env.bin .. ' lsp', 1, true), 'command line:\n' .. text)
end)

h.test(':checkhealth scanmint reports a configured cmd whose binary is missing as an ERROR', function()
  local missing = h.env.tmp .. '/no/such/scanmint'
  vim.g.scanmint_path = nil
  vim.lsp.config('scanmint', { cmd = { missing, 'lsp' } })
  local text = checkhealth()
  h.ok(text:find('ERROR binary not found: ' .. missing, 1, true), 'missing binary:\n' .. text)
end)

h.finish()
