-- :Scanmint login|logout|status|rotate|revoke|doctor, and attaching to scanned files that
-- have no filetype.
if vim.g.loaded_scanmint then
  return
end
vim.g.loaded_scanmint = true

if vim.fn.has('nvim-0.11') == 0 then
  vim.notify('scanmint needs Neovim 0.11 or newer', vim.log.levels.ERROR)
  return
end

local subcommands = { 'login', 'logout', 'status', 'rotate', 'revoke', 'doctor' }

vim.api.nvim_create_user_command('Scanmint', function(opts)
  require('scanmint').command(opts.fargs[1])
end, {
  nargs = '?',
  desc = 'scanmint: ' .. table.concat(subcommands, '|') .. ' (default: status)',
  complete = function(arglead)
    return vim.tbl_filter(function(s)
      return vim.startswith(s, arglead)
    end, subcommands)
  end,
})

-- vim.lsp.enable() starts clients on FileType, which never fires for a buffer whose filetype
-- is unknown (say, an empty `cortex.env`). Cover those buffers too; root_dir still decides.
vim.api.nvim_create_autocmd({ 'BufReadPost', 'BufNewFile' }, {
  group = vim.api.nvim_create_augroup('scanmint.attach', {}),
  callback = function(ev)
    vim.schedule(function()
      local scanmint = require('scanmint')
      if
        scanmint.is_enabled()
        and vim.api.nvim_buf_is_valid(ev.buf)
        and vim.bo[ev.buf].buftype == ''
        and vim.bo[ev.buf].filetype == ''
        and #vim.lsp.get_clients({ bufnr = ev.buf, name = 'scanmint' }) == 0
      then
        scanmint.attach(ev.buf)
      end
    end)
  end,
})
