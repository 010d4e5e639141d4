-- Run inside a separate Neovim set up by an install recipe (see test_install.lua): checks that
-- the plugin came from $SCANMINT_PLUGIN_DIR and works. Prints "FAIL ..." lines, exits 0 or 1.
local plugin_dir = assert(vim.env.SCANMINT_PLUGIN_DIR)
local failures = {}
local function check(ok, what)
  if not ok then
    failures[#failures + 1] = what
  end
end

check(vim.fn.exists(':Scanmint') == 2, ':Scanmint is defined')
check(vim.lsp._enabled_configs and vim.lsp._enabled_configs.scanmint ~= nil, "vim.lsp.enable('scanmint') ran")
local files = vim.api.nvim_get_runtime_file('lsp/scanmint.lua', true)
check(
  #files == 1 and vim.fn.resolve(files[1]) == vim.fn.resolve(plugin_dir .. '/lsp/scanmint.lua'),
  'lsp/scanmint.lua comes from ' .. plugin_dir .. ' only: ' .. vim.inspect(files)
)
local helped = pcall(vim.cmd.help, 'scanmint-install')
check(helped and vim.fn.expand('%:t') == 'scanmint.txt', ':help scanmint-install opens scanmint.txt')
if helped then
  vim.cmd.close()
end

-- A scanned file gets the client, and the daemon answers through it.
local dir = vim.fn.tempname()
vim.fn.mkdir(dir, 'p')
vim.fn.writefile({ 'A=1' }, dir .. '/.env')
vim.cmd.edit(dir .. '/.env')
local buf = vim.api.nvim_get_current_buf()
local client
vim.wait(10000, function()
  client = vim.lsp.get_clients({ bufnr = buf, name = 'scanmint' })[1]
  return client ~= nil and client.initialized
end, 20)
check(client and client.initialized, 'the scanmint client attached to .env')
if client then
  local resp = client:request_sync('scanmint/status', vim.NIL, 10000)
  check(resp and resp.result and resp.result.state ~= nil, 'scanmint/status answered: ' .. vim.inspect(resp))
  client:stop(true)
  vim.wait(2000, function()
    return client:is_stopped()
  end)
end

for _, f in ipairs(failures) do
  io.stdout:write('FAIL ', f, '\n')
end
io.stdout:write(#failures == 0 and 'ALL OK\n' or '')
io.stdout:flush()
os.exit(#failures == 0 and 0 or 1)
