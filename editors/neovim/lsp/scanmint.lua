-- scanmint: short-lived, least-privilege API keys for IDE security scanners.
-- Neovim >= 0.11: vim.lsp.enable('scanmint'). The binary is vim.g.scanmint_path, else
-- $SCANMINT_BIN, else `scanmint` on $PATH (read when this config is first resolved).
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
  -- No `filetypes`: every buffer. plugin/scanmint.lua also covers buffers with no filetype,
  -- which never fire the FileType event vim.lsp.enable() listens to.
  root_dir = scanmint.root_dir,
  reuse_client = scanmint.reuse_client,
  init_options = scanmint.init_options(),
  handlers = {
    ['scanmint/didChangeStatus'] = scanmint.on_status,
    ['window/showMessageRequest'] = show_message_request,
  },
  on_exit = function()
    vim.schedule(scanmint.on_exit)
  end,
}
