-- scanmint: short-lived, least-privilege API keys for IDE security scanners.
-- Neovim >= 0.11: vim.lsp.enable('scanmint'). The binary is vim.g.scanmint_path, else
-- $SCANMINT_BIN, else `scanmint` on $PATH (read each time this config is resolved). A `cmd` set
-- with vim.lsp.config('scanmint', { cmd = ... }) wins over all three.
local scanmint = require('scanmint')

-- The server asks once per session when its profile needs a login, with the action "Log in":
-- let the user choose (the default handler, through vim.ui.select), then run our own login.
local function show_message_request(err, params, ctx, config)
  local choice = vim.lsp.handlers['window/showMessageRequest'](err, params, ctx, config)
  if type(choice) == 'table' and choice.title == 'Log in' then
    vim.schedule(function()
      scanmint.login()
    end)
  end
  return choice
end

---@type vim.lsp.Config
return {
  cmd = { scanmint.bin(), 'lsp' },
  -- No `filetypes`: the files a scanner reads have no filetype of their own (`cortex.env`,
  -- `.env.local`, CI YAML), so root_dir decides by file name and only calls on_dir for those.
  -- plugin/scanmint.lua covers the ones with no filetype at all (no FileType event).
  root_dir = scanmint.root_dir,
  reuse_client = scanmint.reuse_client,
  init_options = scanmint.init_options(),
  handlers = {
    ['scanmint/didChangeStatus'] = scanmint.on_status,
    ['window/showMessageRequest'] = show_message_request,
  },
  on_exit = function(code, signal)
    vim.schedule(function()
      scanmint.on_exit(code, signal)
    end)
  end,
}
