-- Neovim 0.11.0 and 0.11.1 have no vim.lsp.is_enabled (added in 0.11.2); only 0.11.4 can be
-- installed here, so the shim is loaded afresh with that function removed and must still
-- attach, run its commands and pass :checkhealth.
local h = dofile('tests/neovim/helpers.lua')

vim.lsp.is_enabled = nil
for name in pairs(package.loaded) do
  if name == 'scanmint' or vim.startswith(name, 'scanmint.') then
    package.loaded[name] = nil
  end
end
vim.g.loaded_scanmint = nil
vim.cmd.runtime('plugin/scanmint.lua')
local scanmint = require('scanmint')

-- Errors raised in scheduled callbacks (the attach autocmd) end up here, not in the test.
local errors = {}
local notify = vim.notify
vim.notify = function(msg, level, opts)
  if level == vim.log.levels.ERROR then
    errors[#errors + 1] = msg
  end
  return notify(msg, level, opts)
end

h.test('without vim.lsp.is_enabled, a scanned file with no filetype still gets the client', function()
  vim.lsp.enable('scanmint')
  local buf = h.open(h.env.tmp .. '/ws-compat/.env.local', { 'A=1' })
  h.eq('', vim.bo[buf].filetype, 'filetype (so only plugin/scanmint.lua can attach it)')
  h.attached(buf)
  h.eq({}, errors, 'errors')
  h.eq(true, scanmint.is_enabled(), 'is_enabled() through the fallback')
end)

h.test(':checkhealth scanmint runs without vim.lsp.is_enabled', function()
  vim.cmd('silent checkhealth scanmint')
  local text = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), '\n')
  vim.cmd(#vim.api.nvim_list_tabpages() > 1 and 'tabclose' or 'bwipeout')
  h.ok(not text:find('ERROR', 1, true), 'ERROR in:\n' .. text)
  h.ok(text:find("OK vim.lsp.enable('scanmint') is on", 1, true), 'enabled line:\n' .. text)
end)

h.test(':Scanmint status runs without vim.lsp.is_enabled', function()
  local err, r = h.run(scanmint.show_status)
  h.eq(nil, err, 'error')
  h.eq('env', r.storage, 'storage')
end)

h.finish()
