-- :Scanmint status / rotate / revoke / doctor against the daemon (env Primary key).
local h = dofile('tests/neovim/helpers.lua')
local scanmint = require('scanmint')

vim.lsp.enable('scanmint')

-- The confirmation dialog, stubbed: records each question, answers `confirm_answer`
-- (1 = the action, 2 = Cancel).
local questions, confirm_answer = {}, 2
vim.fn.confirm = function(msg, choices)
  questions[#questions + 1] = { msg = msg, choices = choices }
  return confirm_answer
end

local buf = h.open(h.env.tmp .. '/ws-commands/.env', { 'APP=1' })
local client, cred

local function last_note(since, needle)
  local got = h.notes_with(needle, since)
  return got[#got]
end

h.test('scanmint/credentials mints a key and withholds the secret from the editor', function()
  client = h.attached(buf)
  cred = h.request(client, 'scanmint/credentials', { minValidSecs = 60 })
  h.ok(type(cred.keyId) == 'number', 'keyId: ' .. vim.inspect(cred))
  h.ok(type(cred.generation) == 'number', 'generation: ' .. vim.inspect(cred))
  h.ok(cred.expiresAt > (os.time() + 60) * 1000, 'expiresAt at least minValidSecs ahead: ' .. vim.inspect(cred))
  h.eq(nil, cred.key, 'key (exposeSecretToEditor=false)')
  h.eq(nil, cred.env, 'env (exposeSecretToEditor=false)')
end)

h.test(':Scanmint status shows the key and its expiry in local time', function()
  local before = #h.notes
  vim.cmd('Scanmint status')
  h.wait(10000, function()
    return last_note(before, 'expires') ~= nil
  end, 'the status notification')
  local msg = last_note(before, 'expires').msg
  local expiry = os.date('%Y-%m-%d %H:%M:%S', math.floor(cred.expiresAt / 1000))
  for _, want in ipairs({
    ('key #%d'):format(cred.keyId),
    'expires ' .. expiry,
    'generation ' .. cred.generation,
    'storage env',
    h.env.base_url,
  }) do
    h.ok(msg:find(want, 1, true), ('status text lacks %q:\n%s'):format(want, msg))
  end
end)

h.test(':Scanmint rotate moves to a new key with a higher generation', function()
  local g0 = h.request(client, 'scanmint/status', vim.NIL).key.generation
  local before = #h.notes
  vim.cmd('Scanmint rotate')
  h.wait(10000, function()
    local r = scanmint.status()
    return r and r.state == 'ready' and r.key and r.key.generation > g0
  end, 'a didChangeStatus with generation > ' .. g0)
  local r = h.request(client, 'scanmint/status', vim.NIL)
  h.ok(r.key.generation > g0, ('server generation %d > %d'):format(r.key.generation, g0))
  h.ok(r.key.keyId ~= cred.keyId, 'a different key id after rotation')
  local want = ('scanmint: key #%d until %s'):format(r.key.keyId, os.date('%H:%M', math.floor(r.key.expiresAt / 1000)))
  h.eq(want, scanmint.statusline(), 'statusline after rotation')
  local at_tenant = h.tenant_key(r.key.keyId)
  h.ok(at_tenant, ('key #%d exists at the tenant'):format(r.key.keyId))
  h.eq('active', at_tenant.state, 'tenant state of the new key')
  h.eq({ r.key.role }, at_tenant.roles, 'tenant roles of the new key')
  h.eq({}, h.notes_with('until', before), 'a rotation is not a state change: no notification')
end)

h.test('rotate shows the server message and reports the new generation', function()
  local g0 = scanmint.status().key.generation
  local before = #h.notes
  local err, result = h.run(scanmint.rotate)
  h.eq(nil, err, 'error')
  h.ok(result.generation > g0, ('result generation %s > %d'):format(tostring(result.generation), g0))
  h.ok(type(result.message) == 'string' and #h.notes_with(result.message, before) == 1, 'message shown once')
end)

h.test(':Scanmint revoke and logout ask first; Cancel changes nothing on the tenant', function()
  -- The server's current key (the cached status may still show the one just rotated out).
  local current = h.request(client, 'scanmint/status', vim.NIL).key
  local before = #h.notes
  confirm_answer = 2
  vim.cmd('Scanmint revoke')
  vim.cmd('Scanmint logout')
  h.eq(2, #questions, 'questions asked')
  h.ok(questions[1].msg:find('Revoke the active key and any retiring one', 1, true), 'revoke question: ' .. questions[1].msg)
  h.ok(questions[1].choices:find('&Revoke', 1, true), 'revoke choices: ' .. questions[1].choices)
  h.ok(questions[2].msg:find('revoke every key this machine minted', 1, true), 'logout question: ' .. questions[2].msg)
  h.eq(1, #h.notes_with('revoke cancelled', before), 'revoke cancelled notice')
  h.eq(1, #h.notes_with('logout cancelled', before), 'logout cancelled notice')
  vim.wait(300)
  h.eq('active', (h.tenant_key(current.keyId) or {}).state, 'the key is still active at the tenant')
  local r = h.request(client, 'scanmint/status', vim.NIL)
  h.eq(current.keyId, r.key and r.key.keyId, 'the daemon still serves the key')
  h.eq('env', r.storage, 'still logged in')
end)

h.test(':Scanmint revoke revokes the current key; the next request mints a fresh one', function()
  local current = scanmint.status().key
  local before = #h.notes
  confirm_answer = 1
  vim.cmd('Scanmint revoke')
  h.wait(10000, function()
    return #h.notes_with('Revoked', before) + #h.notes_with('revoked', before) > 0
  end, 'the revoke message')
  h.wait(5000, function()
    local r = scanmint.status()
    return r and r.key == nil
  end, 'a status without a key')
  h.eq('scanmint: ready', scanmint.statusline(), 'statusline without a key')
  h.eq('deleted', (h.tenant_key(current.keyId) or {}).state, ('tenant state of key #%d'):format(current.keyId))
  local cred = h.request(client, 'scanmint/credentials', { minValidSecs = 60 })
  h.ok(cred.keyId ~= current.keyId and cred.generation > current.generation, 'a fresh key: ' .. vim.inspect(cred))
  h.eq('active', (h.tenant_key(cred.keyId) or {}).state, 'tenant state of the fresh key')
end)

h.test(':Scanmint doctor lists one line per check in a scratch buffer', function()
  vim.cmd('Scanmint doctor')
  local dbuf
  h.wait(10000, function()
    dbuf = vim.fn.bufnr('scanmint://doctor')
    return dbuf ~= -1 and #vim.api.nvim_buf_get_lines(dbuf, 0, -1, false) > 2
  end, 'the doctor buffer')
  local lines = vim.api.nvim_buf_get_lines(dbuf, 0, -1, false)
  h.eq('nofile', vim.bo[dbuf].buftype, 'buftype')
  h.ok(vim.fn.bufwinid(dbuf) ~= -1, 'the doctor buffer is shown in a window')
  h.ok(lines[1]:match('^scanmint doctor: '), 'header: ' .. lines[1])
  for i = 3, #lines do
    h.ok(lines[i]:match('^PASS ') or lines[i]:match('^WARN ') or lines[i]:match('^FAIL '), 'check line: ' .. lines[i])
  end
  -- Compare with the server's own answer.
  local result = h.request(client, 'workspace/executeCommand', { command = 'scanmint.doctor' })
  h.eq(#result.checks, #lines - 2, 'one line per check')
  for i, c in ipairs(result.checks) do
    h.ok(lines[i + 2]:find(c.name, 1, true), ('line %d names check %q: %s'):format(i + 2, c.name, lines[i + 2]))
  end
end)

h.finish()
