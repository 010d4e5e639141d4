-- Log-in flow against a daemon that has no Primary key (run.sh gives this script its own
-- runtime/state dirs and no SCANMINT_PRIMARY_KEY*). Only the input UI is stubbed.
local h = dofile('tests/neovim/helpers.lua')
local scanmint = require('scanmint')

-- Even at DEBUG (which logs every request's params) the secret must stay out of the LSP log.
vim.lsp.log.set_level(vim.log.levels.DEBUG)

local answers = {}
local prompts = {}
vim.fn.input = function(opts)
  local prompt = type(opts) == 'table' and opts.prompt or opts
  prompts[#prompts + 1] = prompt
  if prompt:find('URL') then
    return answers.url
  elseif prompt:find('key ID') then
    return answers.key_id
  elseif prompt:find('level') then
    return answers.level
  end
  error('unexpected prompt: ' .. prompt)
end
vim.fn.inputsecret = function(prompt)
  prompts[#prompts + 1] = 'SECRET ' .. prompt
  return answers.secret
end
-- The user accepts the first "Log in" prompt and dismisses any later one.
local asked = {}
vim.ui.select = function(items, opts, on_choice)
  asked[#asked + 1] = { items = items, prompt = opts.prompt }
  for i, item in ipairs(items) do
    if item.title == 'Log in' and #asked == 1 then
      return on_choice(item, i)
    end
  end
  on_choice(nil, nil)
end

local wrong = h.env.key:sub(1, -7) .. 'WRONG0'
answers = { url = h.env.base_url, key_id = tostring(h.env.key_id), secret = wrong, level = h.env.level }

vim.lsp.enable('scanmint')
local buf, client, minted

local function state()
  local r = scanmint.status()
  return r and r.state
end

h.test('a daemon without a Primary key asks to "Log in"', function()
  buf = h.open(h.env.tmp .. '/ws-login/.env', { 'X=1' })
  client = h.attached(buf)
  h.wait(10000, function()
    return #asked > 0
  end, 'window/showMessageRequest with a "Log in" action')
  h.wait(5000, function()
    return state() == 'needs_login'
  end, 'state needs_login (got ' .. tostring(state()) .. ')')
  h.eq('scanmint: log in', scanmint.statusline(), 'statusline')
end)

h.test('choosing "Log in" runs the prompts; a refused key is reported without the key', function()
  h.wait(10000, function()
    return #prompts >= 4
  end, 'the login prompts (got ' .. vim.inspect(prompts) .. ')')
  h.ok(prompts[1]:find('URL') and prompts[2]:find('key ID'), 'prompt order: ' .. vim.inspect(prompts))
  h.ok(prompts[3]:match('^SECRET '), 'the key is read with inputsecret: ' .. vim.inspect(prompts))
  local err_note
  h.wait(10000, function()
    for _, n in ipairs(h.notes) do
      if n.level == vim.log.levels.ERROR then
        err_note = n
        return true
      end
    end
  end, 'an error notification for the refused key')
  h.ok(not err_note.msg:find(wrong, 1, true), 'the error repeats the key: ' .. err_note.msg)
  h.eq('needs_login', h.request(client, 'scanmint/status', vim.NIL).state, 'state after a refused key')
end)

h.test(':Scanmint login with the emulator Primary key logs in', function()
  answers.secret = h.env.key
  local before = #h.notes
  vim.cmd('Scanmint login')
  h.wait(10000, function()
    return state() == 'ready'
  end, 'state ready after login (got ' .. tostring(state()) .. ')')
  local errors = vim.tbl_filter(function(n)
    return n.level == vim.log.levels.ERROR
  end, { unpack(h.notes, before + 1) })
  h.eq({}, errors, 'error notifications during login')
  local r = h.request(client, 'scanmint/status', vim.NIL)
  h.eq(h.env.base_url, r.baseUrl, 'baseUrl')
  h.ok(r.storage ~= 'env', 'storage is a real tier, not env: ' .. tostring(r.storage))
  local cred = h.request(client, 'scanmint/credentials', { minValidSecs = 60 })
  h.ok(type(cred.keyId) == 'number' and cred.keyId ~= h.env.key_id, 'a minted key: ' .. vim.inspect(cred))
  minted = cred.keyId
end)

h.test(':Scanmint logout forgets the Primary key', function()
  local asked_logout
  local confirm = vim.fn.confirm
  vim.fn.confirm = function(msg)
    asked_logout = msg
    return 1
  end
  local err, result = h.run(scanmint.logout)
  vim.fn.confirm = confirm
  h.ok(asked_logout and asked_logout:find('revoke every key', 1, true), 'asked first: ' .. tostring(asked_logout))
  h.eq(nil, err, 'error')
  h.ok(type(result.revoked) == 'table' and vim.tbl_contains(result.revoked, minted), 'revoked the minted key: ' .. vim.inspect(result))
  for _, id in ipairs(result.revoked) do
    h.eq('deleted', (h.tenant_key(id) or {}).state, ('tenant state of key #%d'):format(id))
  end
  h.wait(10000, function()
    return state() == 'needs_login'
  end, 'state needs_login after logout (got ' .. tostring(state()) .. ')')
  h.eq('scanmint: log in', scanmint.statusline(), 'statusline')
end)

-- Any string anywhere in Lua's reachable globals that contains `needle`.
local function find_in_globals(needle)
  local seen, hits = {}, {}
  local function walk(v, path, depth)
    if type(v) == 'string' then
      if v:find(needle, 1, true) then
        hits[#hits + 1] = path
      end
    elseif type(v) == 'table' and not seen[v] and depth < 12 then
      seen[v] = true
      local k, val = next(v)
      while k ~= nil do
        walk(k, path .. '.<key>', depth + 1)
        walk(val, path .. '.' .. tostring(k), depth + 1)
        k, val = next(v, k)
      end
    end
  end
  walk(_G, '_G', 0)
  walk(debug.getregistry(), 'registry', 0)
  return hits
end

h.test('neither key is echoed, logged or kept in a global', function()
  -- Drop the test's own copies before looking.
  local secrets = { wrong, h.env.key }
  answers, wrong, h.env.key = nil, nil, nil
  collectgarbage()
  local messages = vim.api.nvim_exec2('messages', { output = true }).output
  local log = table.concat(vim.fn.readfile(vim.lsp.get_log_path()), '\n')
  h.ok(log:find('scanmint/credentials', 1, true), 'the LSP log records requests (DEBUG)')
  for i, secret in ipairs(secrets) do
    local which = i == 1 and 'refused key' or 'primary key'
    h.ok(not h.all_notes():find(secret, 1, true), which .. ' in a notification')
    h.ok(not messages:find(secret, 1, true), which .. ' in :messages')
    h.ok(not log:find(secret, 1, true), which .. ' in ' .. vim.lsp.get_log_path())
    h.eq({}, find_in_globals(secret), which .. ' reachable from a global')
  end
end)

h.finish()
