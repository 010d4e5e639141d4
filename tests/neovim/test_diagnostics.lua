-- A literal Cortex key in a file a scanner reads: Warning diagnostic + quick fix.
local h = dofile('tests/neovim/helpers.lua')

vim.lsp.enable('scanmint')

local ws = h.env.tmp .. '/ws-diagnostics'
-- A key-shaped literal (same alphabet and length as the emulator's keys).
local literal = h.env.key:reverse()

local function from_scanmint(buf)
  return vim.tbl_filter(function(d)
    return d.source == 'scanmint'
  end, vim.diagnostic.get(buf))
end

local buf, client, diag

h.test('cortex.env with a literal CORTEX_API_KEY gets a scanmint Warning', function()
  buf = h.open(ws .. '/cortex.env', {
    'CORTEX_API_BASE_URL=' .. h.env.base_url,
    'CORTEX_API_KEY_ID=7',
    'CORTEX_API_KEY=' .. literal,
  })
  client = h.attached(buf)
  h.wait(10000, function()
    return #from_scanmint(buf) > 0
  end, 'scanmint diagnostics on cortex.env')
  local diags = from_scanmint(buf)
  h.eq(1, #diags, 'diagnostics: ' .. vim.inspect(diags))
  diag = diags[1]
  h.eq(vim.diagnostic.severity.WARN, diag.severity, 'severity')
  h.eq(2, diag.lnum, 'line (0-based) of CORTEX_API_KEY')
  h.eq('literal-key', diag.code, 'code')
  h.ok(not diag.message:find(literal, 1, true), 'the message must not repeat the key: ' .. diag.message)
end)

h.test('the quick fix is offered and removes only the value', function()
  local params = {
    textDocument = { uri = vim.uri_from_bufnr(buf) },
    range = { start = { line = diag.lnum, character = 0 }, ['end'] = { line = diag.lnum, character = 0 } },
    context = { diagnostics = { diag.user_data.lsp }, only = { 'quickfix' } },
  }
  local actions = h.request(client, 'textDocument/codeAction', params)
  h.ok(type(actions) == 'table' and #actions >= 1, 'code actions: ' .. vim.inspect(actions))
  local action = actions[1]
  h.ok(action.edit or action.command, 'the action does something: ' .. vim.inspect(action))
  if action.edit then
    vim.lsp.util.apply_workspace_edit(action.edit, client.offset_encoding)
  end
  if action.command then
    local cmd = type(action.command) == 'table' and action.command or action
    h.request(client, 'workspace/executeCommand', { command = cmd.command, arguments = cmd.arguments })
  end
  h.wait(5000, function()
    return not table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), '\n'):find(literal, 1, true)
  end, 'the literal to disappear')
  local lines = vim.api.nvim_buf_get_lines(buf, 0, -1, false)
  local text = table.concat(lines, '\n')
  h.eq(3, #lines, 'no line is deleted:\n' .. text)
  h.eq('CORTEX_API_KEY=', lines[3], 'the setting stays, empty')
  h.ok(text:find('CORTEX_API_KEY_ID=7', 1, true), 'other lines stay:\n' .. text)
  h.wait(5000, function()
    return #from_scanmint(buf) == 0
  end, 'the warning to clear after the edit')
end)

h.test('a reference (not a literal) is not flagged', function()
  local ref = h.open(ws .. '/.cortex.yaml', { 'api_key: ${{ secrets.CORTEX_API_KEY }}', 'api_key_id: 7' })
  h.attached(ref)
  -- Give the server a chance to (wrongly) publish before checking.
  vim.wait(1500, function()
    return #from_scanmint(ref) > 0
  end, 20)
  h.eq({}, from_scanmint(ref), 'diagnostics on a secrets reference')
end)

h.test('the same literal in a file scanners do not read is not flagged', function()
  local other = h.open(ws .. '/notes.md', { 'CORTEX_API_KEY=' .. literal })
  h.eq({}, vim.lsp.get_clients({ bufnr = other }), 'clients attached to notes.md')
  vim.wait(1500, function()
    return #from_scanmint(other) > 0
  end, 20)
  h.eq({}, from_scanmint(other), 'diagnostics on notes.md')
end)

h.finish()
