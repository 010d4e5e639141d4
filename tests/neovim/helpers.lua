-- Shared helpers for the headless-Neovim tests (run by tests/neovim/run.sh).
-- Each script: local h = dofile('tests/neovim/helpers.lua'); h.test(...); h.finish()
local H = {}

local passed, failed = 0, 0

-- Straight to stdout: print() goes through Nvim's message area (CRLF, mixed with echoes).
local function say(s)
  io.stdout:write(s, '\n')
  io.stdout:flush()
end

--- Every vim.notify call, in order: { msg = string, level = integer }.
H.notes = {}
vim.notify = function(msg, level)
  table.insert(H.notes, { msg = tostring(msg), level = level or vim.log.levels.INFO })
end

--- The test environment run.sh prepared.
H.env = {
  bin = assert(vim.env.SCANMINT_BIN, 'SCANMINT_BIN not set: run tests/neovim/run.sh'),
  tmp = assert(vim.env.SCANMINT_TEST_TMP, 'SCANMINT_TEST_TMP not set'),
  base_url = vim.env.SCANMINT_TEST_BASE_URL,
  key_id = tonumber(vim.env.SCANMINT_TEST_KEY_ID),
  key = vim.env.SCANMINT_TEST_KEY,
  level = vim.env.SCANMINT_TEST_LEVEL,
  admin_url = vim.env.SCANMINT_TEST_ADMIN_URL,
}

function H.test(name, fn)
  local ok, err = xpcall(fn, debug.traceback)
  if ok then
    passed = passed + 1
    say('ok    ' .. name)
  else
    failed = failed + 1
    say('FAIL  ' .. name .. '\n      ' .. tostring(err):gsub('\n', '\n      '))
  end
end

function H.finish()
  say(('RESULT %d passed, %d failed'):format(passed, failed))
  os.exit(failed == 0 and 0 or 1)
end

--- vim.wait that fails the test (with `what`) on timeout. ms <= 10000.
function H.wait(ms, cond, what)
  if not vim.wait(ms, cond, 20) then
    error(('timed out after %d ms waiting for %s'):format(ms, what), 2)
  end
end

function H.eq(expected, got, what)
  if not vim.deep_equal(expected, got) then
    error(('%s: expected %s, got %s'):format(what, vim.inspect(expected), vim.inspect(got)), 2)
  end
end

function H.ok(v, what)
  if not v then
    error(what, 2)
  end
  return v
end

--- Notifications after index `since` whose text contains `needle` (plain).
function H.notes_with(needle, since)
  local out = {}
  for i = (since or 0) + 1, #H.notes do
    if H.notes[i].msg:find(needle, 1, true) then
      out[#out + 1] = H.notes[i]
    end
  end
  return out
end

function H.all_notes()
  return table.concat(
    vim.tbl_map(function(n)
      return n.msg
    end, H.notes),
    '\n'
  )
end

--- Write `lines` to `path` (making directories) and :edit it; returns the buffer.
function H.open(path, lines)
  vim.fn.mkdir(vim.fs.dirname(path), 'p')
  vim.fn.writefile(lines or {}, path)
  vim.cmd.edit(vim.fn.fnameescape(path))
  return vim.api.nvim_get_current_buf()
end

--- The scanmint client attached to `bufnr`, waiting for it to attach and initialize.
function H.attached(bufnr, ms)
  local client
  H.wait(ms or 10000, function()
    client = vim.lsp.get_clients({ bufnr = bufnr, name = 'scanmint' })[1]
    return client ~= nil and client.initialized == true
  end, 'the scanmint client to attach to buffer ' .. bufnr .. ' (' .. vim.api.nvim_buf_get_name(bufnr) .. ')')
  return client
end

--- Synchronous request through `client`; returns result or raises with the LSP error.
function H.request(client, method, params, ms)
  local resp, err = client:request_sync(method, params, ms or 10000)
  if not resp then
    error(('%s: %s'):format(method, tostring(err)), 2)
  end
  if resp.err then
    error(('%s: %s'):format(method, vim.inspect(resp.err)), 2)
  end
  return resp.result
end

--- Run a :Scanmint subcommand's function and wait for its on_done; returns err, result, extra.
function H.run(fn, ms)
  local out
  fn(function(...)
    out = { ... }
  end)
  H.wait(ms or 10000, function()
    return out ~= nil
  end, 'the command to finish')
  return out[1], out[2], out[3]
end

--- GET the emulator's admin /keys listing (decoded JSON).
function H.admin_keys()
  local get = 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())'
  local res = vim.system({ 'python3', '-c', get, H.env.admin_url .. '/keys' }, { text = true }):wait(5000)
  assert(res.code == 0, 'GET /keys failed: ' .. (res.stderr or ''))
  return vim.json.decode(res.stdout)
end

--- The tenant's view of key `id` ({id, roles, security_level, state, ...}), or nil.
function H.tenant_key(id)
  for _, k in ipairs(H.admin_keys()) do
    if k.id == id then
      return k
    end
  end
end

return H
